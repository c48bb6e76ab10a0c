// The example host: `tradecapture replay|positions|events` (spec section 4), `serve` (the HTTP
// gateway, section 5) and `consume` (Kafka ingress).

#include "host.hpp"
#include "log_format.hpp"
#include "serve.hpp"
#ifdef TRADECAPTURE_HAVE_KAFKA
#include "consume.hpp"
#endif

#include <spdlog/spdlog.h>
#include <spdlog/version.h>
#include <CLI/CLI.hpp>
#include <boost/version.hpp>
#ifdef TRADECAPTURE_HAVE_SOCI
#if __has_include(<soci/version.h>)
#include <soci/version.h>
#endif
#if __has_include(<sqlite3.h>)
#include <sqlite3.h>
#endif
#if __has_include(<pg_config.h>)
#include <pg_config.h>
#elif __has_include(<postgresql/pg_config.h>)
#include <postgresql/pg_config.h>
#endif
#endif
#if defined(TRADECAPTURE_HAVE_REDIS) && __has_include(<hiredis/hiredis.h>)
#include <hiredis/hiredis.h>
#endif
#ifdef TRADECAPTURE_HAVE_KAFKA
#include <librdkafka/rdkafka.h>
#endif

#include <cstdio>
#include <exception>

namespace {

/// `tradecapture --version`: the version, then the backends compiled in with the versions of
/// their client libraries (headers at build time; librdkafka's at run time).
std::string version_text() {
  using std::to_string;
  std::string soci;
#if defined(TRADECAPTURE_HAVE_SOCI) && defined(SOCI_VERSION)
  soci = "SOCI " + to_string(SOCI_VERSION / 100000) + "." + to_string(SOCI_VERSION / 100 % 1000) +
         "." + to_string(SOCI_VERSION % 100);
#endif
  std::string stores = "memory";
#ifdef TRADECAPTURE_HAVE_SOCI
  stores += ", sqlite (" + soci;
#ifdef SQLITE_VERSION
  stores += std::string(soci.empty() ? "" : ", ") + "SQLite " SQLITE_VERSION;
#endif
  stores += "), postgresql (" + soci;
#ifdef PG_MAJORVERSION
  stores += std::string(soci.empty() ? "" : ", ") + "libpq " PG_MAJORVERSION;
#endif
  stores += ")";
#endif
  std::string locks = "local";
#ifdef TRADECAPTURE_HAVE_REDIS
  locks += ", redis";
#ifdef HIREDIS_MAJOR
  locks += " (hiredis " + to_string(HIREDIS_MAJOR) + "." + to_string(HIREDIS_MINOR) + "." +
           to_string(HIREDIS_PATCH) + ")";
#endif
#endif
  std::string ingress = "replay, http (serve)";
#ifdef TRADECAPTURE_HAVE_KAFKA
  ingress += ", kafka (consume; librdkafka " + std::string(rd_kafka_version_str()) + ")";
#endif
#ifdef TRADECAPTURE_HAVE_METRICS
  const std::string metrics = "prometheus-cpp " TRADECAPTURE_PROMETHEUS_CPP_VERSION " (/metrics)";
#else
  const std::string metrics = "none (built without prometheus-cpp: /metrics answers 404)";
#endif
  std::string boost = BOOST_LIB_VERSION;
  for (char& c : boost)
    if (c == '_') c = '.';
  return tradecapture::cli::version_line("tradecapture") + "\nstores: " + stores +
         "\nlocks: " + locks + "\ningress: " + ingress + "\nmetrics: " + metrics + "\nlibraries: Boost " + boost +
         ", spdlog " + to_string(SPDLOG_VER_MAJOR) + "." + to_string(SPDLOG_VER_MINOR) + "." +
         to_string(SPDLOG_VER_PATCH) + ", CLI11 " CLI11_VERSION;
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
  app.set_version_flag("--version", version_text, "print the version and the backends compiled in");
  std::string log_format = "text";
  app.add_option("--log-format", log_format,
                 "log line format on stderr for every command: text, or json (one object per "
                 "line: time, level, logger, msg); give it before the command")
      ->envname("TRADECAPTURE_LOG_FORMAT")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.require_subcommand(1);
  app.footer(std::string(tradecapture::cli::exit_codes_help) +
             "\nFlags shared with serve read the same TRADECAPTURE_* environment variables in\n"
             "every command (TRADECAPTURE_STORE, TRADECAPTURE_LOCK, TRADECAPTURE_THREADS, ...;\n"
             "flags win). The default log level is info in every command.");

  ReplayOptions ro;
  auto* replay = app.add_subcommand(
      "replay", "Run JSON event lines through the pipeline and report their outcomes");
  replay->footer(
      "Reads INPUT ('-' is standard input) line by line; blank lines are skipped, a bad line is\n"
      "REJECTED and never stops the replay. Exits 0 once every line has its durable outcome\n"
      "(rejected lines included), 69 when the store or lock fails past the retry budget\n"
      "(outcomes already written stay true; re-sending the input is safe), 66 when INPUT cannot\n"
      "be read, 73/74 when --outcomes cannot be created/written, 128+N on signal N (every line\n"
      "read has its outcome; the message says where to resume). A summary goes to stderr; live\n"
      "progress too when stderr is a terminal.\n" +
      std::string(tradecapture::cli::exit_codes_help));
  replay->add_option("INPUT", ro.input, "JSON-lines input file, or '-' for standard input")
      ->required();
  replay->add_option("--outcomes", ro.outcomes,
                     "write one JSON outcome per non-blank input line, in input order, to FILE "
                     "('-' is standard output)");
  add_pipeline_flags(
      *replay, ro.pipeline,
      {.lock = true,
       .max_in_flight = "events submitted and not yet completed, at most (back-pressure)",
       .retry_budget_effect = ""});

  std::string positions_store = default_store_uri;
  auto* positions = app.add_subcommand(
      "positions", "Print the position of every partition with an accepted event (JSON lines)");
  positions->footer(
      "Sorted by (account, book, security) bytewise; decimals as JSON strings. Read-only: a\n"
      "sqlite:PATH that does not exist is an error (exit 66), never created.\n" +
      std::string(tradecapture::cli::exit_codes_help));
  add_store_flag(*positions, positions_store);

  std::string events_store = default_store_uri;
  auto* events = app.add_subcommand("events", "Print every accepted event (JSON lines)");
  events->footer(
      "Sorted by partition (bytewise) then seq. Read-only: a sqlite:PATH that does not exist\n"
      "is an error (exit 66), never created.\n" +
      std::string(tradecapture::cli::exit_codes_help));
  add_store_flag(*events, events_store);

  ServeOptions so;
  auto* serve = add_serve_command(app, so);
#ifdef TRADECAPTURE_HAVE_KAFKA
  ConsumeOptions co;
  auto* consume = add_consume_command(app, co);
#endif

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : exit_usage;
  }

  try {
    // One default level for every command (info); positions and events have no flag.
    const PipelineFlags* flags = replay->parsed()  ? &ro.pipeline
                                 : serve->parsed() ? &so.pipeline
                                                   : nullptr;
#ifdef TRADECAPTURE_HAVE_KAFKA
    if (consume->parsed()) flags = &co.pipeline;
#endif
    spdlog::set_default_logger(make_logger(flags ? flags->log_level : "info", log_format));

    if (replay->parsed()) return run_replay(ro);
    if (positions->parsed()) return run_positions(positions_store);
    if (events->parsed()) return run_events(events_store);
    if (serve->parsed()) return run_serve(so);
#ifdef TRADECAPTURE_HAVE_KAFKA
    if (consume->parsed()) return run_consume(co);
#endif
  } catch (const HostError& e) {
    std::fprintf(stderr, "tradecapture: %s\n", e.what());
    return e.code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tradecapture: unexpected error: %s\n", e.what());
    return EX_SOFTWARE;
  }
  return EX_SOFTWARE;
}
