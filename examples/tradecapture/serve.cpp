// `tradecapture serve`: the HTTP gateway of spec section 5 on top of the pipeline.
//
//   POST /v1/trades          application/json (an event or an array) or application/x-ndjson
//   GET  /v1/positions       ?account=&book=&security= (optional exact filters)
//   GET  /v1/trades/{id}     the accepted events of one trade id
//   GET  /health/live, /health/ready, /metrics
//
// With `--brokers`, `--topic` and `--group` the same process is also a Kafka consumer-group
// member (`KafkaIngress`, as in `consume`) that feeds the same pipeline.
//
// The gateway itself (routing, authentication, admission, the JSON of every answer) is the
// library's `tradecapture::Gateway` (<tradecapture/gateway.hpp>); this file adapts the Beast
// server (`tradecapture::http`) to it and adds the flags, the metrics and the drain.
//
// Threads: the io_context (--http-threads) reads and writes, and parses and submits small
// POST bodies (up to 4 KiB: a hand-off would cost more); larger bodies, store reads and health
// checks run on a small worker pool (--worker-threads, the gateway's executor); the pipeline
// has its own shards (--threads), which also build the answers of small POSTs; the Kafka
// source, when there is one, its own polling thread. Answers post back to the connection's
// strand.

#include "serve.hpp"

#include "health.hpp"
#include "host.hpp"
#include "host_metrics.hpp"
#include "http_server.hpp"
#include "signals.hpp"

#include <tradecapture/gateway.hpp>
#include <tradecapture/pipeline.hpp>
#ifdef TRADECAPTURE_HAVE_METRICS
#include <tradecapture/prometheus_metrics.hpp>
#endif

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>


namespace tradecapture::host {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Respond = std::function<void(HttpResponse)>;

std::string read_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw HostError("cannot read --auth-token-file '" + path + "': " + std::strerror(errno),
                    exit_noinput);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token = ss.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' ||
                            token.back() == '\t'))
    token.pop_back();
  if (token.empty())
    throw HostError("--auth-token-file '" + path + "' holds no token", exit_usage);
  for (char c : token) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      throw HostError("--auth-token-file '" + path +
                          "': the token must be one line of printable characters without spaces",
                      exit_usage);
  }
  return token;
}


/// Writes `text` to `path` atomically (a temporary file renamed over it).
void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw HostError("cannot write '" + tmp + "': " + std::strerror(errno), exit_cantcreat);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw HostError("cannot write '" + path + "': " + std::strerror(errno), exit_cantcreat);
}

// ---- the HTTP adapter ----------------------------------------------------------------------

/// `tradecapture::Gateway` behind the Beast server: fields in, fields out. The gateway does the
/// routing, authentication, admission and rendering; this class adds the host's metrics.
class HttpGateway final : public HttpHandler {
 public:
  /// `kafka`: the Kafka source that feeds the same pipeline (null: none), for /metrics.
  HttpGateway(Pipeline& pipeline, std::shared_ptr<TradeStore> store,
              std::shared_ptr<PartitionLock> lock, asio::thread_pool& workers,
              std::chrono::milliseconds request_deadline, std::string token,
              std::shared_ptr<spdlog::logger> logger, const KafkaIngress* kafka)
      : pipeline_(pipeline),
        metrics_(pipeline, [this] { return gateway_.stats().rejected_at_parse; }, kafka),
        gateway_(pipeline, std::move(store), std::move(lock),
                 GatewayOptions{.executor = workers.get_executor(),
                                .token = std::move(token),
                                .request_deadline = request_deadline,
                                .draining = [this] { return server_ != nullptr && server_->draining(); },
                                .metrics = [this] { return metrics_response_(); },
                                .logger = std::move(logger)}) {}

  void set_server(const HttpServer* server) { server_ = server; }

  /// The gateway's counters (requests answered, events rejected at parse), for the summary.
  GatewayStats stats() const { return gateway_.stats(); }

  std::optional<HttpResponse> check_header(const HttpRequestHeader& h) override {
    if (auto refusal = gateway_.check(to_gateway_request(h))) return to_http_response(std::move(*refusal));
    return std::nullopt;
  }

  void handle(HttpRequest req, Respond respond) override {
    handle_at(std::move(req), std::chrono::steady_clock::now(), std::move(respond));
  }

  void handle_at(HttpRequest req, std::chrono::steady_clock::time_point arrival,
                 Respond respond) override {
    GatewayRequest g = to_gateway_request(req.base());
    g.body = std::move(req.body());
    g.arrival = arrival;
    gateway_.async_handle(std::move(g), [respond = std::move(respond)](GatewayResponse r) {
      respond(to_http_response(std::move(r)));
    });
  }

 private:
  GatewayResponse metrics_response_() {
#ifdef TRADECAPTURE_HAVE_METRICS
    // One exposition: the pipeline, the HTTP server's and the gateway's counters and gauges,
    // the Kafka source's, and the process.
    GatewayResponse res;
    res.content_type = HostMetrics::content_type();
    res.body = metrics_.text(&server_collector_);
    return res;
#else
    return gateway_error(404, "built without prometheus-cpp (TRADECAPTURE_METRICS=OFF): no "
                              "/metrics");
#endif
  }

#ifdef TRADECAPTURE_HAVE_METRICS
  /// The HTTP server's and the gateway's counters and gauges, read at each scrape.
  std::vector<prometheus::MetricFamily> server_families_() const {
    using prometheus::MetricType;
    std::vector<prometheus::MetricFamily> out;
    auto d = [](std::uint64_t v) { return static_cast<double>(v); };
    if (server_ != nullptr) {
      const HttpStats hs = server_->stats();
      auto requests = metrics::family("tradecapture_http_requests_total",
                                      "HTTP responses sent, by status code.", MetricType::Counter);
      bool has_200 = false;
      for (const auto& [code, n] : hs.responses_by_code) has_200 = has_200 || code == 200;
      if (!has_200) metrics::add_sample(requests, {{"code", "200"}}, 0);
      for (const auto& [code, n] : hs.responses_by_code)
        metrics::add_sample(requests, {{"code", std::to_string(code)}}, d(n));
      out.push_back(std::move(requests));
      out.push_back(metrics::histogram_family(
          "tradecapture_http_request_duration_seconds",
          "Time from the first byte of a request to its response written.",
          hs.request_duration_us, metrics::HistogramUnit::microseconds_as_seconds));
      struct Sample {
        const char* name;
        const char* help;
        MetricType type;  // Counter or Gauge
        double value;
      };
      const Sample samples[] = {
          {"tradecapture_http_connections_active", "Open HTTP connections.", MetricType::Gauge,
           d(hs.connections_active)},
          {"tradecapture_http_connections_accepted_total", "HTTP connections accepted.",
           MetricType::Counter, d(hs.connections_accepted)},
          {"tradecapture_http_connections_refused_total",
           "HTTP connections refused because --max-connections were open.", MetricType::Counter,
           d(hs.connections_refused)},
          {"tradecapture_gateway_draining", "1 while the gateway drains before exiting.",
           MetricType::Gauge, server_->draining() ? 1.0 : 0.0},
          {"tradecapture_gateway_memory_refusals_total",
           "Requests refused with 503 because their body did not fit under --max-bodies-bytes.",
           MetricType::Counter, d(hs.memory_refusals)},
          {"tradecapture_gateway_body_bytes",
           "Bytes of request bodies held now (bounded by --max-bodies-bytes).", MetricType::Gauge,
           d(hs.bodies_bytes)},
      };
      for (const Sample& x : samples)
        out.push_back(x.type == MetricType::Counter
                          ? metrics::counter_family(x.name, x.help, x.value)
                          : metrics::gauge_family(x.name, x.help, x.value));
    }
    const GatewayStats gs = gateway_.stats();
    // The pipeline's own count (admitted events and reserved room): the gateway keeps none.
    out.push_back(metrics::gauge_family(
        "tradecapture_gateway_admitted_events",
        "Events of admitted POST /v1/trades requests not answered yet.",
        d(pipeline_.in_flight())));
    out.push_back(metrics::counter_family(
        "tradecapture_gateway_overload_refusals_total",
        "POST /v1/trades requests refused with 503 by the in-flight limit.",
        d(gs.overload_refusals)));
    out.push_back(metrics::counter_family(
        "tradecapture_gateway_deadline_failures_total",
        "POST /v1/trades requests answered 503 because some event was withdrawn at the "
        "request deadline (--request-deadline-ms, X-Request-Deadline-Ms).",
        d(gs.deadline_failures)));
    return out;
  }

  /// `server_families_` as a collectable.
  class ServerCollector final : public prometheus::Collectable {
   public:
    explicit ServerCollector(const HttpGateway& gateway) : gateway_(gateway) {}
    std::vector<prometheus::MetricFamily> Collect() const override {
      return gateway_.server_families_();
    }

   private:
    const HttpGateway& gateway_;
  };
#endif

  Pipeline& pipeline_;
  const HttpServer* server_ = nullptr;
  // Events answered REJECTED at parse (and Kafka messages the source rejected itself) never
  // reach the pipeline: counted as rejected, so that tradecapture_trades_total counts every
  // outcome. Read only at a scrape, once the gateway below exists.
  HostMetrics metrics_;
  Gateway gateway_;
#ifdef TRADECAPTURE_HAVE_METRICS
  ServerCollector server_collector_{*this};
#endif
};

/// What the main thread waits for: the start of the drain (the first SIGTERM/SIGINT, or a
/// failure of the Kafka source), then its end. A second signal cuts the drain short; a failure
/// of the source followed by one signal does not.
class ShutdownLatch {
 public:
  /// The drain began (a signal, or the Kafka source failed).
  void begin() {
    std::lock_guard lock(mutex_);
    begun_ = true;
    cv_.notify_all();
  }
  /// A SIGTERM/SIGINT came (the drain begins with the first).
  void signalled() {
    std::lock_guard lock(mutex_);
    begun_ = true;
    ++signals_;
    cv_.notify_all();
  }
  void idle() {
    std::lock_guard lock(mutex_);
    idle_ = true;
    cv_.notify_all();
  }
  void wait_begun() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return begun_; });
  }
  /// True when idle; false when the time ran out or a second signal came.
  bool wait_idle_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, d, [&] { return idle_ || signals_ > 1; });
    return idle_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool begun_ = false;
  int signals_ = 0;
  bool idle_ = false;
};

}  // namespace

CLI::App* add_serve_command(CLI::App& app, ServeOptions& o) {
  auto* cmd = app.add_subcommand(
      "serve", "Run the HTTP gateway: POST trades, read positions, health, Prometheus metrics");
  cmd->footer(
      "Endpoints:\n"
      "  POST /v1/trades        Content-Type application/json (one event object, or an array)\n"
      "                         or application/x-ndjson (one event per line); answers 200\n"
      "                         {\"outcomes\": [...]} once every outcome is durable, one object\n"
      "                         per event in request order, as a replay --outcomes line ('line'\n"
      "                         is the 1-based array index, or the NDJSON physical line)\n"
      "  GET  /v1/positions     {\"positions\": [...]}; optional filters "
      "?account=&book=&security=\n"
      "  GET  /v1/trades/ID     {\"trade_id\", \"events\": [...]}: the accepted events, or 404\n"
      "  GET  /health/live      200 while the process runs\n"
      "  GET  /health/ready     200 while the store and the lock answer (503 when not, or "
      "draining)\n"
      "  GET  /metrics          Prometheus text format 0.0.4\n"
      "HEAD is answered on every GET resource (the GET's status and headers, no body). Paths\n"
      "have no trailing slash: /v1/positions/ (and the like) is 404 with a JSON body naming\n"
      "the canonical path in \"canonical_path\" (never a redirect).\n"
      "Status codes: 400 body not JSON at all / malformed HTTP, 401 no valid bearer token,\n"
      "404 unknown path or trade, 405 wrong method (with Allow), 413 body over --max-body-bytes,\n"
      "415 wrong or missing Content-Type, or a Content-Encoding other than identity (no gzip;\n"
      "the answer carries Accept-Encoding: identity), 431 header over --max-header-bytes,\n"
      "503 + Retry-After when overloaded\n"
      "(the whole request is refused), draining, out of connections, request bodies held over\n"
      "--max-bodies-bytes (Connection: close), or when some event got no outcome (withdrawn at\n"
      "the request deadline, store/lock failure past the retry budget): re-sending the same\n"
      "request is safe.\n"
      "Request deadline: every event of a POST /v1/trades must be decided within\n"
      "--request-deadline-ms of the request's arrival; the optional header\n"
      "'X-Request-Deadline-Ms: N' (1..86400000; anything else is 400) shortens it (the smaller\n"
      "wins). An event not decided by then is withdrawn and never decided later by this\n"
      "instance, so a client or proxy may re-send the request elsewhere once the deadline has\n"
      "passed (a proxy's read timeout must exceed the deadline plus one commit).\n"
      "Metrics of refusals: tradecapture_gateway_overload_refusals_total (--max-in-flight),\n"
      "tradecapture_gateway_memory_refusals_total (--max-bodies-bytes),\n"
      "tradecapture_gateway_deadline_failures_total (deadline).\n"
      "With --auth-token-file every path but /health/* needs 'Authorization: Bearer TOKEN'.\n"
      "SIGTERM/SIGINT: stop accepting, finish in-flight requests, drain the pipeline, exit 0\n"
      "(a second signal closes the remaining connections at once). --shutdown-timeout-ms bounds\n"
      "the whole shutdown: events not decided by then are withdrawn (no outcome). SIGHUP is\n"
      "ignored (logged once): the gateway keeps serving.\n"
      "Kafka (optional; the flags of consume): with --brokers, --topic and --group the process\n"
      "is also a consumer-group member feeding the same pipeline (exactly-once effect, offsets\n"
      "in the store, as consume). SIGTERM/SIGINT then also stops fetching and lets the Kafka\n"
      "events in flight reach their outcomes before the pipeline stops (within\n"
      "--shutdown-timeout-ms: events left are withdrawn and read again by the next owner). A\n"
      "failure of the Kafka source (a fatal Kafka error, the store past the retry budget) drains\n"
      "the gateway and exits 69.\n"
      "Every flag but the Kafka ones can also be set by the environment variable shown (flags\n"
      "win).\n" +
      std::string(cli::exit_codes_help));
  cmd->add_option("--listen", o.listen,
                  "HOST:PORT to listen on (port 1..65535, or 0: any free port)")
      ->envname("TRADECAPTURE_LISTEN")
      ->capture_default_str();
  add_pipeline_flags(*cmd, o.pipeline,
                     {.lock = true,
                      .max_in_flight = "events admitted and not yet answered, at most; a request "
                                       "that does not fit is refused whole with 503",
                      .retry_budget_effect = " (503)"});
  cmd->add_option("--http-threads", o.http_threads, "HTTP I/O threads")
      ->envname("TRADECAPTURE_HTTP_THREADS")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--worker-threads", o.worker_threads,
                  "threads for parsing bodies over 4 KiB, store reads and health checks")
      ->envname("TRADECAPTURE_WORKER_THREADS")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--max-connections", o.max_connections,
                  "open connections, at most; more are answered 503 and closed")
      ->envname("TRADECAPTURE_MAX_CONNECTIONS")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-body-bytes", o.max_body_bytes, "request body size, at most (413)")
      ->envname("TRADECAPTURE_MAX_BODY_BYTES")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 34))
      ->capture_default_str();
  cmd->add_option("--max-bodies-bytes", o.max_bodies_bytes,
                  "bytes of request bodies held across all connections, at most (from the "
                  "Content-Length or each chunk, until the response is written); a body that "
                  "does not fit is answered 503 + Retry-After and the connection closed; at "
                  "least --max-body-bytes")
      ->envname("TRADECAPTURE_MAX_BODIES_BYTES")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--request-deadline-ms", o.request_deadline_ms,
                  "every event of a POST /v1/trades not decided within this from the request's "
                  "arrival is withdrawn and the request answered 503 (header "
                  "X-Request-Deadline-Ms may shorten it)")
      ->envname("TRADECAPTURE_REQUEST_DEADLINE_MS")
      ->check(CLI::Range(1LL, 86400LL * 1000))
      ->capture_default_str();
  cmd->add_option("--max-header-bytes", o.max_header_bytes,
                  "request line and header size, at most (431)")
      ->envname("TRADECAPTURE_MAX_HEADER_BYTES")
      ->check(CLI::Range(std::uint32_t{256}, std::uint32_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--idle-timeout-ms", o.idle_timeout_ms,
                  "a keep-alive connection without a new request is closed after this")
      ->envname("TRADECAPTURE_IDLE_TIMEOUT_MS")
      ->check(CLI::Range(1LL, 86400LL * 1000))
      ->capture_default_str();
  cmd->add_option("--read-timeout-ms", o.read_timeout_ms,
                  "one request (header and body) must arrive within this, else the connection "
                  "is closed")
      ->envname("TRADECAPTURE_READ_TIMEOUT_MS")
      ->check(CLI::Range(1LL, 86400LL * 1000))
      ->capture_default_str();
  cmd->add_option("--write-timeout-ms", o.write_timeout_ms,
                  "one response must be written within this, else the connection is closed")
      ->envname("TRADECAPTURE_WRITE_TIMEOUT_MS")
      ->check(CLI::Range(1LL, 86400LL * 1000))
      ->capture_default_str();
  cmd->add_option("--shutdown-timeout-ms", o.shutdown_timeout_ms,
                  "after SIGTERM, connections still busy after this are closed and events "
                  "not decided yet are withdrawn")
      ->envname("TRADECAPTURE_SHUTDOWN_TIMEOUT_MS")
      ->check(CLI::Range(1LL, 86400LL * 1000))
      ->capture_default_str();
  cmd->add_option("--auth-token-file", o.auth_token_file,
                  "require 'Authorization: Bearer TOKEN' (TOKEN: this file's first line) on every "
                  "path but /health/*")
      ->envname("TRADECAPTURE_AUTH_TOKEN_FILE");
  cmd->add_option("--port-file", o.port_file, "write the bound port number to FILE once listening")
      ->envname("TRADECAPTURE_PORT_FILE");
#ifdef TRADECAPTURE_HAVE_KAFKA
  add_kafka_flags(*cmd, o.kafka, /*required=*/false);
#endif
  return cmd;
}

int run_serve(const ServeOptions& o) {
  // A closed terminal or a process manager's reload must not kill the gateway without a drain:
  // SIGHUP is ignored from the start (the signal guard logs the first one once serving).
  ignore_hangups();
  const PipelineFlags& f = o.pipeline;
  auto logger = spdlog::default_logger();

  if (o.max_bodies_bytes < o.max_body_bytes)
    throw HostError("--max-bodies-bytes (" + std::to_string(o.max_bodies_bytes) +
                        ") must be at least --max-body-bytes (" +
                        std::to_string(o.max_body_bytes) +
                        "), or a largest request could never be read",
                    exit_usage);
  const std::string token = o.auth_token_file.empty() ? "" : read_token_file(o.auth_token_file);
  const tcp::endpoint endpoint = resolve_listen("--listen", o.listen);
#ifdef TRADECAPTURE_HAVE_KAFKA
  const bool with_kafka = o.kafka.enabled();
  std::optional<KafkaSourceOptions> kafka_options;
  if (with_kafka) kafka_options = make_kafka_source_options(o.kafka, f, logger);
#else
  const bool with_kafka = false;
#endif

  HttpServerOptions http_options;
  http_options.listen = endpoint;
  http_options.max_connections = o.max_connections;
  http_options.max_body_bytes = o.max_body_bytes;
  http_options.max_bodies_bytes = o.max_bodies_bytes;
  http_options.max_header_bytes = o.max_header_bytes;
  http_options.idle_timeout = std::chrono::milliseconds(o.idle_timeout_ms);
  http_options.read_timeout = std::chrono::milliseconds(o.read_timeout_ms);
  http_options.write_timeout = std::chrono::milliseconds(o.write_timeout_ms);

  // Destroyed in reverse: the server, the io_context (with any connection left), the gateway,
  // the Kafka source (stopped before), the pipeline (stopped explicitly before), the workers
  // (joined before), the latch (which the last connection notifies).
  ShutdownLatch latch;
  asio::thread_pool workers(o.worker_threads);
  // One pipeline for every ingress. The gateway admits whole requests with its own try_reserve
  // (max_in_flight): a request larger than the limit runs alone. Store callers: the shards, the
  // workers, the health checks, and the Kafka source's polling thread.
  HostPipeline host = open_pipeline(f, o.worker_threads + 1 + (with_kafka ? 1 : 0), logger);
  Pipeline& pipeline = *host.pipeline;
  const auto& store = host.store;
  const auto& lock = host.lock;
#ifdef TRADECAPTURE_HAVE_KAFKA
  std::optional<KafkaIngress> kafka;
  if (kafka_options) kafka.emplace(std::move(*kafka_options), f.instance_id, pipeline, store);
  const KafkaIngress* kafka_ingress = kafka ? &*kafka : nullptr;
#else
  const KafkaIngress* kafka_ingress = nullptr;
#endif
  HttpGateway gateway(pipeline, store, lock, workers,
                      std::chrono::milliseconds(o.request_deadline_ms), token, logger,
                      kafka_ingress);
  asio::io_context ioc(static_cast<int>(o.http_threads));
  HttpServer server(ioc, http_options, gateway, logger);
  gateway.set_server(&server);

  const tcp::endpoint bound = listen_or_throw(server);
  std::string address = bound.address().to_string();
  if (bound.address().is_v6()) address = "[" + address + "]";
  const std::string where = address + ":" + std::to_string(bound.port());

  // The socket already listens (connections wait in its backlog): announce it before any thread
  // starts, and write the port file after the line, so a script that sees the file sees the line.
  std::fprintf(stderr, "tradecapture serve: listening on %s\n", where.c_str());
  std::fflush(stderr);
  if (!o.port_file.empty()) write_file_atomically(o.port_file, std::to_string(bound.port()) + "\n");
  logger->info("instance {}: serving {} with lock {} ({} pipeline threads, {} http threads{})",
               f.instance_id, store->describe(), lock->describe(), f.threads, o.http_threads,
               token.empty() ? "" : ", bearer token required");

  // SIGTERM/SIGINT: drain (and stop the Kafka source); a second one closes every connection
  // now. SIGHUP: logged once.
  std::optional<SignalGuard> signals;
  signals.emplace(SignalGuard::Options{
      .on_stop =
          [&](int sig, int count) {
            if (count == 1 && !server.draining()) {
              logger->info(
                  "signal {}: draining (no new connections; in-flight requests are finished)",
                  sig);
              server.shutdown([&latch] { latch.idle(); });
            } else if (count == 1) {
              // The Kafka source failed first and the drain is under way: let it finish.
              logger->info("signal {}: already draining (a second signal closes every "
                           "connection now)",
                           sig);
            } else {
              logger->warn("signal {} again: closing every connection now", sig);
              server.abort();
            }
#ifdef TRADECAPTURE_HAVE_KAFKA
            if (kafka) kafka->stop();
#endif
            latch.signalled();
          },
      .second_is_default = false,
      .hangup_message = "SIGHUP ignored: the gateway keeps serving (SIGTERM or SIGINT stop it "
                        "with a drain; further SIGHUPs are ignored silently)",
      .logger = logger});
  auto work = asio::make_work_guard(ioc);
  server.start();
  std::vector<std::thread> io_threads;
  for (std::size_t i = 0; i < o.http_threads; ++i) io_threads.emplace_back([&ioc] { ioc.run(); });
#ifdef TRADECAPTURE_HAVE_KAFKA
  // A Kafka source that fails (fatal Kafka error, store past the retry budget) ends the process
  // as a signal would, and the exit code says so.
  std::atomic<bool> kafka_failed{false};
  const auto kafka_t0 = std::chrono::steady_clock::now();
  if (kafka) {
    kafka->start([&](boost::system::error_code ec) {
      if (!ec || SignalGuard::first_signal() != 0 || server.draining()) return;
      kafka_failed.store(true);
      logger->error("the Kafka source failed ({}): draining the gateway", ec.message());
      server.shutdown([&latch] { latch.idle(); });
      latch.begin();
    });
  }
#endif

  latch.wait_begun();
  const auto shutdown_deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(o.shutdown_timeout_ms);
  const bool idle = latch.wait_idle_for(std::chrono::milliseconds(o.shutdown_timeout_ms));
  if (!idle) {
    logger->warn("closing {} connections that are still busy", server.stats().connections_active);
    server.abort();
  }
  auto time_left = [&] {
    return std::max(std::chrono::duration_cast<std::chrono::milliseconds>(
                        shutdown_deadline - std::chrono::steady_clock::now()),
                    std::chrono::milliseconds(0));
  };
#ifdef TRADECAPTURE_HAVE_KAFKA
  // The Kafka source stops before the pipeline it shares: its in-flight events reach their
  // outcomes, its final offsets are stored, it leaves the group. Past the shutdown timeout the
  // pipeline's stop below withdraws what is left, which ends the source too.
  bool kafka_forced = false;
  if (kafka) {
    const auto until = std::chrono::steady_clock::now() + time_left();
    while (!kafka->finished() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    kafka_forced = !kafka->finished();
  }
#endif
  // Every admitted event completes before stop returns: decided (durably), or, once the
  // shutdown timeout has passed, withdrawn (no outcome, never decided later; spec section 6,
  // point 2). Then the last responses are built and handed to their connections.
  if (!pipeline.stop(time_left()))
    logger->warn("shutdown timeout: events not decided yet were withdrawn (no outcome)");
#ifdef TRADECAPTURE_HAVE_KAFKA
  result<void> kafka_result = boost::outcome_v2::success();
  if (kafka) kafka_result = kafka->wait();
#endif
  workers.join();
  if (!idle) latch.wait_idle_for(std::chrono::milliseconds(2000));
  signals.reset();
  work.reset();
  ioc.stop();
  for (auto& t : io_threads) t.join();

  const PipelineMetrics m = pipeline.metrics();
  std::fprintf(stderr,
               "tradecapture serve: stopped after %llu trade requests (accepted %llu, duplicate "
               "%llu, stale %llu, rejected %llu, failed %llu)\n",
               static_cast<unsigned long long>(gateway.stats().trade_requests),
               static_cast<unsigned long long>(m.accepted),
               static_cast<unsigned long long>(m.duplicate),
               static_cast<unsigned long long>(m.stale),
               static_cast<unsigned long long>(m.rejected + gateway.stats().rejected_at_parse),
               static_cast<unsigned long long>(m.failed));
#ifdef TRADECAPTURE_HAVE_KAFKA
  if (kafka) {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - kafka_t0).count();
    kafka->print_summary("serve", secs, kafka_result);
    // Events withdrawn by the shutdown timeout are read again by the next owner: not a failure.
    if (kafka_failed.load() || (!kafka_result && !kafka_forced)) return exit_unavailable;
  }
#endif
  return 0;
}

}  // namespace tradecapture::host
