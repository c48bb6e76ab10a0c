// The example host: `tradecapture replay|positions|events` (spec section 4), `serve` (the HTTP
// gateway, section 5) and `consume` (Kafka ingress).

#include "host.hpp"
#include "serve.hpp"
#ifdef TRADECAPTURE_HAVE_KAFKA
#include "consume.hpp"
#endif

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <unistd.h>
#include <cstdio>
#include <exception>

#ifndef TRADECAPTURE_VERSION
#define TRADECAPTURE_VERSION "unknown"
#endif

namespace {

std::string default_instance_id() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host[0] ? host : "host") + "-" + std::to_string(::getpid());
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tradecapture::host;

  CLI::App app{
      "tradecapture: partition-sequential trade capture (example host)\n"
      "Store URIs: sqlite:PATH (default sqlite:tradecapture.db), memory: (one process),\n"
      "postgresql://user@host:port/db (shared by several hosts).\n"
      "Lock URIs: local: (default, one process), redis://[:password@]host:port[/db] "
      "(shared by several hosts).",
      "tradecapture"};
  app.set_version_flag("--version", TRADECAPTURE_VERSION);
  app.require_subcommand(1);

  ReplayOptions ro;
  ro.instance_id = default_instance_id();
  auto* replay = app.add_subcommand(
      "replay", "Run JSON event lines through the pipeline and report their outcomes");
  replay->footer(
      "Reads INPUT ('-' is standard input) line by line; blank lines are skipped, a bad line is\n"
      "REJECTED and never stops the replay. Exits 0 once every line has its durable outcome\n"
      "(rejected lines included), 2 on a store, lock or I/O failure (outcomes already written\n"
      "stay true; re-sending the input is safe). A summary goes to stderr; live progress too\n"
      "when stderr is a terminal.");
  replay->add_option("INPUT", ro.input, "JSON-lines input file, or '-' for standard input")
      ->required();
  replay->add_option("--store", ro.store, "store URI: sqlite:PATH or memory:")
      ->capture_default_str();
  replay->add_option("--lock", ro.lock, "partition lock URI: local:")->capture_default_str();
  replay->add_option("--outcomes", ro.outcomes,
                     "write one JSON outcome per non-blank input line, in input order, to FILE "
                     "('-' is standard output)");
  replay->add_option("--threads", ro.threads, "pipeline worker shards")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  replay
      ->add_option("--max-in-flight", ro.max_in_flight,
                   "events submitted and not yet completed, at most (back-pressure)")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  replay->add_option("--batch", ro.batch, "events per store transaction, at most")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  replay->add_option("--log-level", ro.log_level, "log level on stderr")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  replay
      ->add_option("--instance-id", ro.instance_id,
                   "name of this host instance in logs (and, with a shared lock, its owner id)")
      ->capture_default_str();
  replay->add_option("--lease-ms", ro.lease_ms, "partition lease length in milliseconds")
      ->check(CLI::Range(1LL, 3600LL * 1000))
      ->capture_default_str();
  replay
      ->add_option("--retry-budget-ms", ro.retry_budget_ms,
                   "how long a batch may retry a failing store, or a partition wait for its lease, "
                   "before its events end without an outcome")
      ->check(CLI::Range(1LL, 24LL * 3600 * 1000))
      ->capture_default_str();

  std::string positions_store = "sqlite:tradecapture.db";
  auto* positions = app.add_subcommand(
      "positions", "Print the position of every partition with an accepted event (JSON lines)");
  positions->footer("Sorted by (account, book, security) bytewise; decimals as JSON strings.");
  positions->add_option("--store", positions_store, "store URI: sqlite:PATH or memory:")
      ->capture_default_str();

  std::string events_store = "sqlite:tradecapture.db";
  auto* events = app.add_subcommand("events", "Print every accepted event (JSON lines)");
  events->footer("Sorted by partition (bytewise) then seq.");
  events->add_option("--store", events_store, "store URI: sqlite:PATH or memory:")
      ->capture_default_str();

  ServeOptions so;
  so.instance_id = default_instance_id();
  auto* serve = add_serve_command(app, so);
#ifdef TRADECAPTURE_HAVE_KAFKA
  ConsumeOptions co;
  co.instance_id = default_instance_id();
  auto* consume = add_consume_command(app, co);
#endif

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : exit_failure;
  }

  try {
    auto logger = std::make_shared<spdlog::logger>(
        "tradecapture", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    logger->set_level(spdlog::level::from_str(replay->parsed() ? ro.log_level : "warn"));
    spdlog::set_default_logger(logger);

    if (replay->parsed()) return run_replay(ro);
    if (positions->parsed()) return run_positions(positions_store);
    if (events->parsed()) return run_events(events_store);
    if (serve->parsed()) return run_serve(so);
#ifdef TRADECAPTURE_HAVE_KAFKA
    if (consume->parsed()) return run_consume(co);
#endif
  } catch (const HostError& e) {
    std::fprintf(stderr, "tradecapture: %s\n", e.what());
    return exit_failure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tradecapture: unexpected error: %s\n", e.what());
    return exit_failure;
  }
  return exit_failure;
}
