// `tradecapture consume`: a Kafka consumer-group member feeding the pipeline (issue #5), with
// logs, optional Prometheus metrics over HTTP, and a clean shutdown on SIGTERM/SIGINT.

#ifdef TRADECAPTURE_HAVE_KAFKA

#include "consume.hpp"

#include "health.hpp"
#include "host.hpp"
#include "http_server.hpp"
#include "signals.hpp"

#include <tradecapture/kafka_source.hpp>
#include <tradecapture/processor.hpp>
#ifdef TRADECAPTURE_HAVE_METRICS
#include <tradecapture/prometheus_metrics.hpp>
#endif

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <thread>

namespace tradecapture::host {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

#ifdef TRADECAPTURE_HAVE_METRICS
/// The Kafka source's own metrics (`tradecapture_kafka_*`), read at each scrape.
class KafkaCollector final : public prometheus::Collectable {
 public:
  explicit KafkaCollector(const KafkaSource& source) : source_(source) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    using metrics::counter_family;
    using metrics::gauge_family;
    const KafkaSourceMetrics k = source_.metrics();
    struct Sample {
      const char* name;
      const char* help;
      std::uint64_t value;
    };
    const Sample counters[] = {
        {"tradecapture_kafka_messages_total", "Kafka messages received.", k.messages},
        {"tradecapture_kafka_invalid_total",
         "Messages rejected by the consumer itself (not JSON, not an event, bad key).", k.invalid},
        {"tradecapture_kafka_replayed_total",
         "Re-read messages found decided before a restart (not reported again; the pipeline "
         "counts them as rejected).",
         k.replayed},
        {"tradecapture_kafka_failed_total", "Messages without an outcome.", k.failed},
        {"tradecapture_kafka_offset_commits_total", "Offsets-only store commits.",
         k.offset_commits},
        {"tradecapture_kafka_offset_commit_failures_total",
         "Offsets-only store commits that failed.", k.offset_commit_failures},
        {"tradecapture_kafka_fenced_total",
         "Partitions given up because another member claimed them.", k.fenced},
        {"tradecapture_kafka_assignments_total", "Partitions assigned (and claimed).",
         k.assignments},
        {"tradecapture_kafka_revocations_total", "Partitions revoked or lost.", k.revocations},
        {"tradecapture_kafka_results_produced_total",
         "Outcome messages delivered to the results topic.", k.results_produced},
        {"tradecapture_kafka_results_failed_total", "Outcome messages that could not be delivered.",
         k.results_failed},
    };
    const Sample gauges[] = {
        {"tradecapture_kafka_partitions_assigned", "Partitions assigned now.", k.partitions},
        {"tradecapture_kafka_in_flight", "Messages in the pipeline now.", k.in_flight},
        {"tradecapture_kafka_lag_messages",
         "Messages between the consumed positions and the partitions' high watermarks.", k.lag},
    };
    std::vector<prometheus::MetricFamily> out;
    for (const Sample& c : counters)
      out.push_back(counter_family(c.name, c.help, static_cast<double>(c.value)));
    for (const Sample& g : gauges)
      out.push_back(gauge_family(g.name, g.help, static_cast<double>(g.value)));
    out.push_back(metrics::histogram_family(
        "tradecapture_kafka_end_to_end_latency_seconds", "Message timestamp to durable outcome.",
        k.end_to_end_us, metrics::HistogramUnit::microseconds_as_seconds));
    return out;
  }

 private:
  const KafkaSource& source_;
};
#endif

/// GET /metrics, /health/live and /health/ready for a consumer.
class MetricsHandler final : public HttpHandler {
 public:
  MetricsHandler(const KafkaSource& source, std::shared_ptr<TradeStore> store,
                 asio::thread_pool& workers)
      : source_(source), store_(std::move(store)), workers_(workers) {}

  /// The body of GET /metrics: the pipeline's metrics (messages the consumer rejected itself
  /// counted as rejected, so that trades_total counts every outcome), the source's, the
  /// process's.
  std::string metrics_text() const {
#ifdef TRADECAPTURE_HAVE_METRICS
    return metrics::serialize({&pipeline_collector_, &kafka_collector_, &process_collector_});
#else
    return {};
#endif
  }

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
#ifdef TRADECAPTURE_HAVE_METRICS
        res.set(http::field::content_type, std::string(metrics::content_type));
#endif
        res.body() = metrics_text();
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
  const KafkaSource& source_;
  std::shared_ptr<TradeStore> store_;
  asio::thread_pool& workers_;
#ifdef TRADECAPTURE_HAVE_METRICS
  metrics::PipelineCollector pipeline_collector_{[&source = source_] {
    PipelineMetrics m = source.pipeline_metrics();
    m.rejected += source.metrics().invalid;
    return m;
  }};
  KafkaCollector kafka_collector_{source_};
  metrics::ProcessCollector process_collector_;
#endif
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
  auto store = open_store(f.store, {.concurrency = f.threads + 2, .must_exist = false});
  KafkaSource source(store, make_position_processor(), std::move(options));
  // SIGINT/SIGTERM: stop consuming cleanly; a second signal has the default effect.
  SignalGuard signals([&source](int, int) { source.stop(); });

  // The metrics endpoint, when asked for: one I/O thread and one worker.
  asio::thread_pool workers(1);
  MetricsHandler handler(source, store, workers);
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

  logger->info("instance {}: consuming {} topic(s) in group {} from {} into {}", f.instance_id,
               o.kafka.topics.size(), o.kafka.group, o.kafka.brokers, store->describe());
  const auto t0 = std::chrono::steady_clock::now();
  // Consumes on the source's own thread; SIGTERM/SIGINT stop it, and it drains before wait()
  // returns.
  auto r = source.start();
  if (r) r = source.wait();
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

  const KafkaSourceMetrics m = source.metrics();
  std::fprintf(stderr,
               "tradecapture consume: %llu messages (accepted %llu, duplicate %llu, stale %llu, "
               "rejected %llu of which invalid %llu), %llu replayed after a restart, %llu "
               "failed, in %.3f s\n",
               static_cast<unsigned long long>(m.messages),
               static_cast<unsigned long long>(m.accepted),
               static_cast<unsigned long long>(m.duplicate),
               static_cast<unsigned long long>(m.stale),
               static_cast<unsigned long long>(m.rejected),
               static_cast<unsigned long long>(m.invalid),
               static_cast<unsigned long long>(m.replayed),
               static_cast<unsigned long long>(m.failed), secs);
  if (!r) {
    std::fprintf(stderr, "tradecapture consume: failed: %s (%s)\n", r.error().message().c_str(),
                 source.last_error().c_str());
    return exit_unavailable;
  }
  return 0;
}

}  // namespace tradecapture::host

#endif  // TRADECAPTURE_HAVE_KAFKA
