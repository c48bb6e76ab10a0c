// `tradecapture consume`: a Kafka consumer-group member feeding the pipeline (issue #5), with
// logs, optional Prometheus metrics over HTTP, and a clean shutdown on SIGTERM/SIGINT.

#ifdef TRADECAPTURE_HAVE_KAFKA

#include "consume.hpp"

#include "health.hpp"
#include "host.hpp"
#include "host_metrics.hpp"
#include "signals.hpp"

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <thread>

namespace tradecapture::host {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

/// GET /metrics, /health/live and /health/ready for a consumer.
class MetricsHandler final : public HttpHandler {
 public:
  MetricsHandler(const Pipeline& pipeline, const KafkaIngress& kafka,
                 std::shared_ptr<TradeStore> store, asio::thread_pool& workers)
      : metrics_(pipeline, {}, &kafka), store_(std::move(store)), workers_(workers) {}

  std::optional<HttpResponse> check_header(const HttpRequestHeader& h) override {
    const auto target = h.target();
    if (target != "/metrics" && target != "/health/live" && target != "/health/ready")
      return make_error_response(http::status::not_found, "no such resource");
#ifndef TRADECAPTURE_HAVE_METRICS
    if (target == "/metrics")
      return make_error_response(http::status::not_found,
                                 "built without prometheus-cpp (TRADECAPTURE_METRICS=OFF): no "
                                 "/metrics");
#endif
    if (h.method() != http::verb::get) {
      HttpResponse res = make_error_response(http::status::method_not_allowed, "GET only");
      res.set(http::field::allow, "GET");
      return res;
    }
    return std::nullopt;
  }

  void handle(HttpRequest req, std::function<void(HttpResponse)> respond) override {
    const std::string target(req.target());
    asio::post(workers_, [this, target, respond = std::move(respond)] {
      HttpResponse res{http::status::ok, 11};
      if (target == "/metrics") {
        res.set(http::field::content_type, HostMetrics::content_type());
        res.body() = metrics_.text();
      } else if (target == "/health/live") {
        res = health_live_response();
      } else {
        res = health_ready_response(*store_, nullptr, false);
      }
      res.prepare_payload();
      respond(std::move(res));
    });
  }

 private:
  // The pipeline's metrics (messages the consumer rejected itself counted as rejected), the
  // source's, the process's.
  HostMetrics metrics_;
  std::shared_ptr<TradeStore> store_;
  asio::thread_pool& workers_;
};

}  // namespace

CLI::App* add_consume_command(CLI::App& app, ConsumeOptions& o) {
  auto* cmd = app.add_subcommand(
      "consume", "Consume trade events from Kafka topics in a consumer group (exactly-once effect)");
  cmd->footer(
      "Message key: the event's partition, PartitionKey::encode() (e.g. 4:ACC17:EQ-FLOW4:AAPL);\n"
      "value: one event JSON object (spec section 1). A malformed message (not JSON, not a valid\n"
      "event, no key, a key that is not the event's partition) is REJECTED with an 'invalid:'\n"
      "reason, counted, logged (or sent to --results-topic) and consumed.\n"
      "Several topics (or Kafka partitions) may carry events of the same trade partition: the\n"
      "events of one Kafka partition are applied in their order, those of different Kafka\n"
      "partitions interleave in whatever order they are consumed, each exactly once.\n"
      "Offsets live in the store (source_offsets, consumer = the group), written in the same\n"
      "transaction as the events they cover; an assignment resumes there, not at Kafka's\n"
      "committed offset (offsets are also committed to Kafka, for monitoring only).\n"
      "--results-topic gets one JSON per message, keyed like it: {\"topic\", \"partition\",\n"
      "\"offset\", \"trade_id\", \"version\", \"outcome\", \"reason\", \"seq\"}.\n"
      "SIGTERM/SIGINT: stop fetching, let in-flight events reach their durable outcomes, store\n"
      "the final offsets, leave the group, exit 0. Exits 69 when the store fails past the retry\n"
      "budget or Kafka reports a fatal error (a restart resumes from the stored offsets).\n"
      "--metrics-listen serves GET /metrics (Prometheus), /health/live and /health/ready.\n"
      "Flags shared with serve read the same TRADECAPTURE_* environment variables (flags win).\n" +
      std::string(cli::exit_codes_help));
  add_kafka_flags(*cmd, o.kafka, /*required=*/true);
  cmd->add_option("--metrics-listen", o.metrics_listen,
                  "serve /metrics, /health/live and /health/ready on HOST:PORT");
  add_pipeline_flags(*cmd, o.pipeline,
                     {.lock = false,
                      .max_in_flight = "messages in the pipeline and not yet completed, at most "
                                       "(back-pressure: fetching waits)",
                      .retry_budget_effect = " (then the member stops: exit 69)"});
  return cmd;
}

int run_consume(const ConsumeOptions& o) {
  // A closed terminal or a reload must not kill a member without its clean leave: ignored.
  ignore_hangups();
  const PipelineFlags& f = o.pipeline;
  auto logger = spdlog::default_logger();

  KafkaSourceOptions options = make_kafka_source_options(o.kafka, f, logger);
  std::optional<tcp::endpoint> endpoint;
  if (!o.metrics_listen.empty()) endpoint = resolve_listen("--metrics-listen", o.metrics_listen);
  // The pipeline's shards, the source's polling thread and the metrics worker call the store.
  HostPipeline host = open_pipeline(f, 2, logger);
  KafkaIngress kafka(std::move(options), f.instance_id, *host.pipeline, host.store);
  // SIGINT/SIGTERM: stop consuming cleanly; a second signal has the default effect.
  SignalGuard signals([&kafka](int, int) { kafka.stop(); });

  // The metrics endpoint, when asked for: one I/O thread and one worker.
  asio::thread_pool workers(1);
  MetricsHandler handler(*host.pipeline, kafka, host.store, workers);
  asio::io_context ioc(1);
  std::optional<HttpServer> server;
  std::thread io_thread;
  auto work = asio::make_work_guard(ioc);
  if (endpoint) {
    HttpServerOptions http_options;
    http_options.listen = *endpoint;
    http_options.max_connections = 64;
    server.emplace(ioc, http_options, handler, logger);
    const tcp::endpoint bound = listen_or_throw(*server);
    server->start();
    io_thread = std::thread([&ioc] { ioc.run(); });
    logger->info("instance {}: metrics on http://{}:{}/metrics", f.instance_id,
                 bound.address().to_string(), bound.port());
  }

  const auto t0 = std::chrono::steady_clock::now();
  // SIGTERM/SIGINT stop the source; it drains before wait() returns. Then the pipeline stops.
  kafka.start();
  const auto r = kafka.wait();
  host.pipeline->stop();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (server) {
    server->shutdown([] {});
    server->abort();
  }
  work.reset();
  ioc.stop();
  if (io_thread.joinable()) io_thread.join();
  workers.join();

  kafka.print_summary("consume", secs, r);
  return r ? 0 : exit_unavailable;
}

}  // namespace tradecapture::host

#endif  // TRADECAPTURE_HAVE_KAFKA
