// `tradecapture serve`: the HTTP gateway of spec section 5 on top of the pipeline.
//
//   POST /v1/trades          application/json (an event or an array) or application/x-ndjson
//   GET  /v1/positions       ?account=&book=&security= (optional exact filters)
//   GET  /v1/trades/{id}     the accepted events of one trade id
//   GET  /health/live, /health/ready, /metrics
//
// Threads: the io_context (--http-threads) only reads and writes; body parsing, admission,
// store reads and health checks run on a small worker pool (--worker-threads); the pipeline has
// its own shards (--threads). Completions post back to the connection's strand.

#include "serve.hpp"

#include "health.hpp"
#include "host.hpp"
#include "http_server.hpp"
#include "signals.hpp"

#include <tradecapture/event_codec.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/processor.hpp>
#include <tradecapture/request_body.hpp>
#ifdef TRADECAPTURE_HAVE_METRICS
#include <tradecapture/prometheus_metrics.hpp>

#include <prometheus/counter.h>
#include <prometheus/registry.h>
#endif

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core/string.hpp>

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
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using Respond = std::function<void(HttpResponse)>;

// ---- small HTTP helpers ------------------------------------------------------------------

/// Beast of Boost 1.74 has its own string_view.
std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

bool iequals(std::string_view a, std::string_view b) {
  return beast::iequals(beast::string_view(a.data(), a.size()),
                        beast::string_view(b.data(), b.size()));
}

HttpResponse unavailable(std::string_view reason) {
  HttpResponse res = make_error_response(http::status::service_unavailable, reason);
  res.set(http::field::retry_after, "1");
  return res;
}

/// The optional request header that shortens --request-deadline-ms for one request.
constexpr std::string_view deadline_header = "X-Request-Deadline-Ms";
constexpr long long max_deadline_ms = 86400LL * 1000;

/// A deadline header value: a decimal number of milliseconds, 1 to one day; nothing otherwise.
std::optional<long long> parse_deadline_ms(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.empty() || v.size() > 12) return std::nullopt;
  long long n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  if (n < 1 || n > max_deadline_ms) return std::nullopt;
  return n;
}

enum class Route { not_found, trades, trade, positions, live, ready, metrics };

struct Target {
  Route route = Route::not_found;
  std::string_view query;     ///< after '?', raw
  std::string_view trade_id;  ///< Route::trade: the raw (percent-encoded) path segment
  /// Route::not_found only: the path without its trailing slashes, when that one is a resource
  /// (the trailing-slash policy: 404 naming the canonical path, never a redirect).
  std::string_view canonical;
};

Target route_path(std::string_view path);

Target parse_target(std::string_view target) {
  std::string_view path = target;
  std::string_view query;
  if (auto q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }
  Target t = route_path(path);
  t.query = query;
  if (t.route == Route::not_found && path.size() > 1 && path.back() == '/') {
    std::string_view bare = path;
    while (bare.size() > 1 && bare.back() == '/') bare.remove_suffix(1);
    if (route_path(bare).route != Route::not_found) t.canonical = bare;
  }
  return t;
}

Target route_path(std::string_view path) {
  Target t;
  constexpr std::string_view trade_prefix = "/v1/trades/";
  if (path == "/v1/trades") {
    t.route = Route::trades;
  } else if (path.substr(0, trade_prefix.size()) == trade_prefix &&
             path.size() > trade_prefix.size() &&
             path.find('/', trade_prefix.size()) == std::string_view::npos) {
    t.route = Route::trade;
    t.trade_id = path.substr(trade_prefix.size());
  } else if (path == "/v1/positions") {
    t.route = Route::positions;
  } else if (path == "/health/live") {
    t.route = Route::live;
  } else if (path == "/health/ready") {
    t.route = Route::ready;
  } else if (path == "/metrics") {
    t.route = Route::metrics;
  }
  return t;
}

/// The 404 of an unknown path; with a trailing slash on a resource, it names the canonical path.
HttpResponse not_found_response(const Target& t) {
  if (t.canonical.empty()) return make_error_response(http::status::not_found, "no such resource");
  HttpResponse res{http::status::not_found, 11};
  res.set(http::field::content_type, "application/json");
  std::string body = "{\"error\": ";
  append_json_string(body, "no such resource: paths have no trailing slash; the resource is " +
                               std::string(t.canonical));
  body += ", \"canonical_path\": ";
  append_json_string(body, t.canonical);
  body += "}\n";
  res.body() = std::move(body);
  return res;
}

/// True when every coding of the Content-Encoding fields is `identity` (or there is none): the
/// gateway decodes no content coding (no gzip), so anything else is refused with 415.
bool identity_encoding(const HttpRequestHeader& h) {
  auto [begin, end] = h.equal_range(http::field::content_encoding);
  for (auto it = begin; it != end; ++it) {
    std::string_view v = sv(it->value());
    while (!v.empty()) {
      const auto comma = v.find(',');
      std::string_view coding = v.substr(0, comma);
      v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
      while (!coding.empty() && (coding.front() == ' ' || coding.front() == '\t'))
        coding.remove_prefix(1);
      while (!coding.empty() && (coding.back() == ' ' || coding.back() == '\t'))
        coding.remove_suffix(1);
      if (!coding.empty() && !iequals(coding, "identity")) return false;
    }
  }
  return true;
}

http::verb allowed_method(Route r) {
  return r == Route::trades ? http::verb::post : http::verb::get;
}

/// Percent-decodes `s` ('+' is a space when `plus_is_space`); nothing on a bad escape.
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

/// The body format of a Content-Type value (its parameters are ignored); nothing otherwise.
std::optional<BodyFormat> body_format(std::string_view content_type) {
  std::string_view type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  if (iequals(type, "application/json")) return BodyFormat::json;
  if (iequals(type, "application/x-ndjson")) return BodyFormat::ndjson;
  return std::nullopt;
}

/// Compares in time that depends only on the length of `expected` (the secret), not on where
/// the first difference is.
bool constant_time_equal(std::string_view expected, std::string_view given) noexcept {
  unsigned char diff = expected.size() == given.size() ? 0 : 1;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= static_cast<unsigned char>(static_cast<unsigned char>(expected[i]) ^ g);
  }
  return diff == 0;
}

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

// ---- the gateway -------------------------------------------------------------------------

/// The events of one POST /v1/trades, from submission to the response.
struct TradesJob {
  std::chrono::steady_clock::time_point deadline;  ///< arrival + the request's deadline
  std::vector<BodyEvent> events;  ///< in request order (parsed; the TradeEvents moved out)
  std::vector<Outcome> outcomes;
  std::vector<boost::system::error_code> errors;  ///< per event; set only by its completion
  std::uint64_t submitted = 0;
  std::uint64_t rejected_at_parse = 0;
  std::atomic<std::uint64_t> remaining{0};
  Respond respond;
};

class Gateway final : public HttpHandler {
 public:
  Gateway(Pipeline& pipeline, std::shared_ptr<TradeStore> store,
          std::shared_ptr<PartitionLock> lock, asio::thread_pool& workers,
          std::size_t max_in_flight, std::chrono::milliseconds request_deadline, std::string token,
          std::shared_ptr<spdlog::logger> logger)
      : pipeline_(pipeline),
        store_(std::move(store)),
        lock_(std::move(lock)),
        workers_(workers),
        max_in_flight_(max_in_flight),
        request_deadline_(request_deadline),
        token_(std::move(token)),
        logger_(std::move(logger)) {}

  void set_server(const HttpServer* server) { server_ = server; }

  /// POST /v1/trades requests whose events all completed (answered 200 or 503), for the summary.
  std::uint64_t trade_requests() const { return trades_requests_.load(); }
  /// Events answered REJECTED at parse, without the pipeline.
  std::uint64_t rejected_at_parse() const { return rejected_before_submit_.load(); }

  std::optional<HttpResponse> check_header(const HttpRequestHeader& h) override {
    const Target t = parse_target(sv(h.target()));
    if (t.route == Route::not_found) return not_found_response(t);
    if (needs_auth_(t.route) && !authorized_(h)) {
      HttpResponse res = make_error_response(http::status::unauthorized,
                                             "missing or wrong 'Authorization: Bearer' token");
      res.set(http::field::www_authenticate, "Bearer realm=\"tradecapture\"");
      return res;
    }
    // HEAD arrives here as GET: the server answers it as a GET without the body.
    if (h.method() != allowed_method(t.route)) {
      HttpResponse res =
          make_error_response(http::status::method_not_allowed, "method not allowed");
      res.set(http::field::allow, t.route == Route::trades ? "POST" : "GET, HEAD");
      return res;
    }
    if (!identity_encoding(h)) {
      HttpResponse res = make_error_response(
          http::status::unsupported_media_type,
          "Content-Encoding '" + std::string(sv(h[http::field::content_encoding])) +
              "' is not supported: send the body uncompressed (identity)");
      res.set(http::field::accept_encoding, "identity");
      return res;
    }
    if (t.route == Route::trades && !body_format(sv(h[http::field::content_type]))) {
      return make_error_response(
          http::status::unsupported_media_type,
          "POST /v1/trades takes Content-Type application/json or application/x-ndjson");
    }
    if (t.route == Route::trades) {
      const auto n = h.count(beast::string_view(deadline_header.data(), deadline_header.size()));
      if (n > 1 || (n == 1 && !parse_deadline_ms(sv(h[beast::string_view(
                                   deadline_header.data(), deadline_header.size())])))) {
        return make_error_response(http::status::bad_request,
                                   std::string(deadline_header) +
                                       " must appear once, as a number of milliseconds from 1 "
                                       "to 86400000");
      }
    }
    return std::nullopt;
  }

  void handle(HttpRequest req, Respond respond) override {
    handle_at(std::move(req), std::chrono::steady_clock::now(), std::move(respond));
  }

  void handle_at(HttpRequest req, std::chrono::steady_clock::time_point arrival,
                 Respond respond) override {
    const Target t = parse_target(sv(req.target()));
    switch (t.route) {
      case Route::live:
        return respond(health_live_response());
      case Route::ready:
        return asio::post(workers_, [this, respond] { respond(ready_()); });
      case Route::metrics:
        return asio::post(workers_, [this, respond] { respond(metrics_()); });
      case Route::positions: {
        PositionFilter filter;
        if (auto err = parse_filter_(t.query, filter))
          return respond(make_error_response(http::status::bad_request, *err));
        return asio::post(
            workers_, [this, respond, filter = std::move(filter)] { respond(positions_(filter)); });
      }
      case Route::trade: {
        auto id = percent_decode(t.trade_id, false);
        if (!id)
          return respond(make_error_response(http::status::bad_request,
                                             "bad percent-encoding in the trade id"));
        return asio::post(workers_, [this, respond, id = std::move(*id)] { respond(trade_(id)); });
      }
      case Route::trades: {
        const BodyFormat format = *body_format(sv(req[http::field::content_type]));
        // The request's deadline runs from the arrival of its first byte: the smaller of
        // --request-deadline-ms and X-Request-Deadline-Ms (validated in check_header).
        auto limit = request_deadline_;
        if (auto h = parse_deadline_ms(sv(req[beast::string_view(deadline_header.data(),
                                                                 deadline_header.size())])))
          limit = std::min(limit, std::chrono::milliseconds(*h));
        const auto deadline = arrival + limit;
        auto body = std::make_shared<std::string>(std::move(req.body()));
        return asio::post(workers_, [this, respond, format, body, deadline] {
          post_trades_(*body, format, deadline, respond);
        });
      }
      case Route::not_found:
        break;
    }
    respond(not_found_response(t));
  }

 private:
  struct PositionFilter {
    std::optional<std::string> account, book, security;
  };

  static bool needs_auth_(Route r) { return r != Route::live && r != Route::ready; }

  bool authorized_(const HttpRequestHeader& h) const {
    if (token_.empty()) return true;
    std::string_view v = sv(h[http::field::authorization]);
    constexpr std::string_view scheme = "bearer";
    if (v.size() <= scheme.size() || !iequals(v.substr(0, scheme.size()), scheme) ||
        (v[scheme.size()] != ' ' && v[scheme.size()] != '\t'))
      return false;
    v.remove_prefix(scheme.size());
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return constant_time_equal(token_, v);
  }

  /// Parses account=, book=, security= (form encoding); an error message otherwise.
  static std::optional<std::string> parse_filter_(std::string_view query, PositionFilter& f) {
    while (!query.empty()) {
      const auto amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (pair.empty()) continue;
      const auto eq = pair.find('=');
      auto key = percent_decode(pair.substr(0, eq), true);
      auto value = percent_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
      if (!key || !value) return "bad percent-encoding in the query";
      std::optional<std::string>* slot = nullptr;
      if (*key == "account") slot = &f.account;
      if (*key == "book") slot = &f.book;
      if (*key == "security") slot = &f.security;
      if (slot == nullptr)
        return "unknown query parameter '" + *key + "' (filters: account, book, security)";
      if (*slot) return "query parameter '" + *key + "' given twice";
      *slot = std::move(*value);
    }
    return std::nullopt;
  }

  HttpResponse ready_() {
    return health_ready_response(*store_, lock_.get(), server_ != nullptr && server_->draining());
  }

  HttpResponse metrics_() {
#ifdef TRADECAPTURE_HAVE_METRICS
    // One exposition: the gateway's registry (its own counters), the pipeline, the HTTP
    // server's and the gateway's gauges, and the process.
    HttpResponse res{http::status::ok, 11};
    res.set(http::field::content_type, std::string(metrics::content_type));
    res.body() = metrics::serialize(
        {&registry_, &pipeline_collector_, &server_collector_, &process_collector_});
    return res;
#else
    return make_error_response(http::status::not_found,
                               "built without prometheus-cpp (TRADECAPTURE_METRICS=OFF): no "
                               "/metrics");
#endif
  }

#ifdef TRADECAPTURE_HAVE_METRICS
  /// The HTTP server's counters and the gateway's gauges, read at each scrape.
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
    out.push_back(metrics::gauge_family(
        "tradecapture_gateway_admitted_events",
        "Events of admitted POST /v1/trades requests not answered yet.", d(admitted_.load())));
    return out;
  }

  /// `server_families_` as a collectable.
  class ServerCollector final : public prometheus::Collectable {
   public:
    explicit ServerCollector(const Gateway& gateway) : gateway_(gateway) {}
    std::vector<prometheus::MetricFamily> Collect() const override {
      return gateway_.server_families_();
    }

   private:
    const Gateway& gateway_;
  };
#endif

  HttpResponse positions_(const PositionFilter& f) {
    auto rows = store_->positions();
    if (!rows) {
      logger_->warn("GET /v1/positions: {}", rows.error().message());
      return unavailable("cannot read positions: " + rows.error().message());
    }
    std::string body = "{\"positions\": [";
    bool first = true;
    for (const PositionRow& row : rows.value()) {
      if ((f.account && *f.account != row.partition.account) ||
          (f.book && *f.book != row.partition.book) ||
          (f.security && *f.security != row.partition.security))
        continue;
      if (!first) body += ", ";
      first = false;
      append_position_json(body, row);
      body.pop_back();  // its '\n'
    }
    body += "]}\n";
    return make_json_response(http::status::ok, std::move(body));
  }

  HttpResponse trade_(const std::string& trade_id) {
    // A full scan of the accepted events: fine for the example host, not for a big store (a real
    // gateway would add an index lookup to TradeStore).
    std::string events;
    std::size_t n = 0;
    auto scanned = store_->scan_events([&](const StoredEvent& e) {
      if (e.event.trade_id == trade_id) {
        if (n++ != 0) events += ", ";
        append_event_json(events, e);
        events.pop_back();  // its '\n'
      }
      return true;
    });
    if (!scanned) {
      logger_->warn("GET /v1/trades/{{id}}: {}", scanned.error().message());
      return unavailable("cannot read events: " + scanned.error().message());
    }
    if (n == 0)
      return make_error_response(http::status::not_found, "no accepted event of this trade id");
    std::string body = "{\"trade_id\": ";
    append_json_string(body, trade_id);
    body += ", \"events\": [";
    body += events;
    body += "]}\n";
    return make_json_response(http::status::ok, std::move(body));
  }

  /// Admits `n` events whole, or refuses them whole: room for all of them under the in-flight
  /// limit, or nothing else in flight (a request bigger than the limit then runs alone, the
  /// pipeline's own back-pressure pacing its submission).
  bool admit_(std::uint64_t n) {
    std::uint64_t cur = admitted_.load();
    for (;;) {
      if (cur != 0 && cur + n > max_in_flight_) return false;
      if (admitted_.compare_exchange_weak(cur, cur + n)) return true;
    }
  }

  // Runs on a worker thread.
  void post_trades_(const std::string& raw, BodyFormat format,
                    std::chrono::steady_clock::time_point deadline, const Respond& respond) {
    ParsedBody parsed = parse_request_body(raw, format);
    if (!parsed.error.empty())
      return respond(make_error_response(http::status::bad_request, parsed.error));
    auto job = std::make_shared<TradesJob>();
    job->deadline = deadline;
    job->events = std::move(parsed.events);
    job->outcomes.resize(job->events.size());
    job->errors.resize(job->events.size());
    job->respond = respond;
    for (const BodyEvent& e : job->events) {
      if (e.parsed.event) {
        ++job->submitted;
      } else {
        ++job->rejected_at_parse;
      }
    }
    if (job->submitted > 0 && !admit_(job->submitted)) {
#ifdef TRADECAPTURE_HAVE_METRICS
      overload_refusals_.Increment();
#endif
      return respond(unavailable("overloaded: " + std::to_string(admitted_.load()) +
                                 " events in flight, --max-in-flight " +
                                 std::to_string(max_in_flight_) + "; retry later"));
    }
    job->remaining.store(job->submitted);
    // Every event carries the request's deadline: one not decided by then is withdrawn by the
    // pipeline (no outcome, never decided later), so the client or a proxy may re-send the
    // request elsewhere once the deadline has passed (spec section 6, point 5).
    SubmitOptions submit_options;
    submit_options.deadline = job->deadline;
    for (std::size_t i = 0; i < job->events.size(); ++i) {
      BodyEvent& e = job->events[i];
      if (!e.parsed.event) {
        job->outcomes[i] = Outcome::rejected(std::move(e.parsed.reason));
        continue;
      }
      TradeEvent ev = std::move(*e.parsed.event);
      e.parsed.event.reset();
      pipeline_.async_submit(std::move(ev), submit_options,
                             [this, job, i](boost::system::error_code ec, Outcome o) {
                               if (ec) {
                                 job->errors[i] = ec;
                               } else {
                                 job->outcomes[i] = std::move(o);
                               }
                               if (job->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1)
                                 asio::post(workers_, [this, job] { finish_trades_(*job); });
                             });
    }
    if (job->submitted == 0) finish_trades_(*job);
  }

  // Runs on a worker thread once every submitted event has completed.
  void finish_trades_(TradesJob& job) {
    admitted_.fetch_sub(job.submitted);
    trades_requests_.fetch_add(1);
    std::uint64_t failed = 0;
    bool withdrawn = false;
    const boost::system::error_code* first = nullptr;
    for (const auto& ec : job.errors) {
      if (ec) {
        ++failed;
        if (first == nullptr) first = &ec;
        if (ec == make_error_code(errc::deadline_exceeded)) withdrawn = true;
      }
    }
    if (failed > 0) {
      // No outcome for some events (deadline passed, store or lock down past the retry budget,
      // stopping): the whole request fails; the outcomes that were decided are durable, and
      // sending the same request again is safe (DUPLICATE for those).
#ifdef TRADECAPTURE_HAVE_METRICS
      if (withdrawn) deadline_failures_.Increment();
#else
      (void)withdrawn;
#endif
      warn_limited_("POST /v1/trades: {} of {} events have no outcome: {}", failed,
                    job.events.size(), first->message());
      job.respond(unavailable(std::to_string(failed) + " of " + std::to_string(job.events.size()) +
                              " events have no outcome (" + first->message() +
                              "); re-sending the whole request is safe"));
      return;
    }
    rejected_before_submit_.fetch_add(job.rejected_at_parse);
    std::string body;
    body.reserve(32 + job.events.size() * 96);
    body += "{\"outcomes\": [";
    for (std::size_t i = 0; i < job.events.size(); ++i) {
      if (i != 0) body += ", ";
      const BodyEvent& e = job.events[i];
      append_outcome_json(body, e.line, e.parsed.echo_trade_id, e.parsed.echo_version,
                          job.outcomes[i]);
      body.pop_back();  // its '\n'
    }
    body += "]}\n";
    job.respond(make_json_response(http::status::ok, std::move(body)));
  }

  /// A warning, at most one a second (a persistent fault fails every request: bounded noise,
  /// spec section 6, point 6); the next one says how many were suppressed.
  template <typename... Args>
  void warn_limited_(spdlog::format_string_t<Args...> fmt, Args&&... args) {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto last = last_warn_.load();
    if (last != 0 && now - last < std::chrono::steady_clock::duration(std::chrono::seconds(1)).count()) {
      suppressed_warns_.fetch_add(1);
      return;
    }
    if (!last_warn_.compare_exchange_strong(last, now)) {
      suppressed_warns_.fetch_add(1);
      return;
    }
    if (const auto n = suppressed_warns_.exchange(0); n != 0)
      logger_->warn("({} similar warnings suppressed in the last second(s))", n);
    logger_->warn(fmt, std::forward<Args>(args)...);
  }

  Pipeline& pipeline_;
  const std::shared_ptr<TradeStore> store_;
  const std::shared_ptr<PartitionLock> lock_;
  asio::thread_pool& workers_;
  const std::uint64_t max_in_flight_;
  const std::chrono::milliseconds request_deadline_;
  const std::string token_;
  const std::shared_ptr<spdlog::logger> logger_;
  const HttpServer* server_ = nullptr;
  std::atomic<std::uint64_t> admitted_{0};
  std::atomic<std::uint64_t> rejected_before_submit_{0};
  std::atomic<std::uint64_t> trades_requests_{0};
  std::atomic<std::chrono::steady_clock::rep> last_warn_{0};
  std::atomic<std::uint64_t> suppressed_warns_{0};
#ifdef TRADECAPTURE_HAVE_METRICS
  // The gateway's own events are counted where they happen, in its registry (what a host that
  // uses prometheus-cpp does); what already lives elsewhere is read at each scrape by the
  // collectors next to it.
  prometheus::Registry registry_;
  prometheus::Counter& overload_refusals_ =
      prometheus::BuildCounter()
          .Name("tradecapture_gateway_overload_refusals_total")
          .Help("POST /v1/trades requests refused with 503 by the in-flight limit.")
          .Register(registry_)
          .Add({});
  prometheus::Counter& deadline_failures_ =
      prometheus::BuildCounter()
          .Name("tradecapture_gateway_deadline_failures_total")
          .Help("POST /v1/trades requests answered 503 because some event was withdrawn at the "
                "request deadline (--request-deadline-ms, X-Request-Deadline-Ms).")
          .Register(registry_)
          .Add({});
  // Events answered REJECTED at parse never reach the pipeline: added to its `rejected`, so
  // that tradecapture_trades_total counts every outcome.
  metrics::PipelineCollector pipeline_collector_{[this] {
    PipelineMetrics m = pipeline_.metrics();
    m.rejected += rejected_before_submit_.load();
    return m;
  }};
  ServerCollector server_collector_{*this};
  metrics::ProcessCollector process_collector_;
#endif
};

/// What the main thread waits for: the first signal, then the end of the drain.
class ShutdownLatch {
 public:
  void signalled() {
    std::lock_guard lock(mutex_);
    ++signals_;
    cv_.notify_all();
  }
  void idle() {
    std::lock_guard lock(mutex_);
    idle_ = true;
    cv_.notify_all();
  }
  void wait_signal() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return signals_ > 0; });
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
      "Every flag can also be set by the environment variable shown (flags win).\n" +
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
                  "threads for body parsing, store reads and health checks")
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
  auto store =
      open_store(f.store, {.concurrency = f.threads + o.worker_threads + 1, .must_exist = false});
  auto lock = open_lock(f);

  // The gateway admits whole requests within max_in_flight, so the pipeline's own wait only
  // paces a single request larger than the limit (on a worker thread, never an I/O thread).
  const PipelineOptions options = make_pipeline_options(f, logger);

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
  // the pipeline (stopped explicitly before), the workers (joined before), the latch (which the
  // last connection notifies).
  ShutdownLatch latch;
  asio::thread_pool workers(o.worker_threads);
  Pipeline pipeline(store, lock, make_position_processor(), options);
  Gateway gateway(pipeline, store, lock, workers, f.max_in_flight,
                  std::chrono::milliseconds(o.request_deadline_ms), token, logger);
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

  // SIGTERM/SIGINT: drain; a second one closes every connection now. SIGHUP: logged once.
  std::optional<SignalGuard> signals;
  signals.emplace(SignalGuard::Options{
      .on_stop =
          [&server, &latch, &logger](int sig, int) {
            if (!server.draining()) {
              logger->info(
                  "signal {}: draining (no new connections; in-flight requests are finished)",
                  sig);
              server.shutdown([&latch] { latch.idle(); });
            } else {
              logger->warn("signal {} again: closing every connection now", sig);
              server.abort();
            }
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

  latch.wait_signal();
  const auto shutdown_deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(o.shutdown_timeout_ms);
  const bool idle = latch.wait_idle_for(std::chrono::milliseconds(o.shutdown_timeout_ms));
  if (!idle) {
    logger->warn("closing {} connections that are still busy", server.stats().connections_active);
    server.abort();
  }
  // Every admitted event completes before stop returns: decided (durably), or, once the
  // shutdown timeout has passed, withdrawn (no outcome, never decided later; spec section 6,
  // point 2). Then the last responses are built and handed to their connections.
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      shutdown_deadline - std::chrono::steady_clock::now());
  if (!pipeline.stop(std::max(left, std::chrono::milliseconds(0))))
    logger->warn("shutdown timeout: events not decided yet were withdrawn (no outcome)");
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
               static_cast<unsigned long long>(gateway.trade_requests()),
               static_cast<unsigned long long>(m.accepted),
               static_cast<unsigned long long>(m.duplicate),
               static_cast<unsigned long long>(m.stale),
               static_cast<unsigned long long>(m.rejected + gateway.rejected_at_parse()),
               static_cast<unsigned long long>(m.failed));
  return 0;
}

}  // namespace tradecapture::host
