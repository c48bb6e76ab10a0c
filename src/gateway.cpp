// The transport-independent gateway (spec section 5): routing, authentication, the checks of a
// request's header, and the endpoints. Blocking work (body parsing, store reads, health pings)
// runs on the host's executor; a POST's events are admitted whole through the pipeline's own
// `try_reserve` and submitted with `async_submit_batch`, whose completion builds the answer.

#include <tradecapture/gateway.hpp>

#include <tradecapture/detail/validate_once.hpp>
#include <tradecapture/event_codec.hpp>
#include <tradecapture/request_body.hpp>

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace tradecapture {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// ---- small helpers ---------------------------------------------------------------------------

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

GatewayResponse json_response(unsigned status, std::string body) {
  GatewayResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

GatewayResponse unavailable(std::string_view reason) {
  GatewayResponse r = gateway_error(503, reason);
  r.headers.emplace_back("Retry-After", "1");
  return r;
}

constexpr long long max_deadline_ms = 86400LL * 1000;

/// A deadline header value: a decimal number of milliseconds, 1 to one day; nothing otherwise.
std::optional<long long> parse_deadline_ms(std::string_view v) {
  v = trim(v);
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

/// The 404 of an unknown path; with a trailing slash on a resource, it names the canonical path.
GatewayResponse not_found_response(const Target& t) {
  if (t.canonical.empty()) return gateway_error(404, "no such resource");
  std::string body = "{\"error\": ";
  append_json_string(body, "no such resource: paths have no trailing slash; the resource is " +
                               std::string(t.canonical));
  body += ", \"canonical_path\": ";
  append_json_string(body, t.canonical);
  body += "}\n";
  return json_response(404, std::move(body));
}

/// True when every coding of the Content-Encoding fields is `identity` (or there is none): the
/// gateway decodes no content coding (no gzip), so anything else is refused with 415.
bool identity_encoding(const std::vector<std::string>& fields) {
  for (std::string_view v : fields) {
    while (!v.empty()) {
      const auto comma = v.find(',');
      std::string_view coding = trim(v.substr(0, comma));
      v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
      if (!coding.empty() && !iequals(coding, "identity")) return false;
    }
  }
  return true;
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
  std::string_view type = trim(content_type.substr(0, content_type.find(';')));
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

struct PositionFilter {
  std::optional<std::string> account, book, security;
};

/// Parses account=, book=, security= (form encoding); an error message otherwise.
std::optional<std::string> parse_filter(std::string_view query, PositionFilter& f) {
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

}  // namespace

// ---- free functions --------------------------------------------------------------------------

std::optional<std::string_view> GatewayResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return std::string_view(v);
  return std::nullopt;
}

GatewayResponse gateway_error(unsigned status, std::string_view reason) {
  std::string body = "{\"error\": ";
  append_json_string(body, reason);
  body += "}\n";
  return json_response(status, std::move(body));
}

GatewayResponse health_live() { return json_response(200, "{\"status\": \"live\"}\n"); }

GatewayResponse health_ready(TradeStore& store, PartitionLock* lock, bool draining) {
  if (draining) return json_response(503, "{\"status\": \"draining\"}\n");
  auto s = store.ping();
  auto l = lock != nullptr ? lock->ping() : result<void>(boost::outcome_v2::success());
  if (s && l) return json_response(200, "{\"status\": \"ready\"}\n");
  std::string body = "{\"status\": \"unavailable\", \"store\": ";
  append_json_string(body, s ? std::string("ok") : s.error().message());
  if (lock != nullptr) {
    body += ", \"lock\": ";
    append_json_string(body, l ? std::string("ok") : l.error().message());
  }
  body += "}\n";
  GatewayResponse r = json_response(503, std::move(body));
  r.headers.emplace_back("Retry-After", "1");
  return r;
}

// ---- the gateway -----------------------------------------------------------------------------

struct Gateway::Impl {
  Pipeline& pipeline;
  const std::shared_ptr<TradeStore> store;
  const std::shared_ptr<PartitionLock> lock;
  const GatewayOptions opt;
  const std::shared_ptr<spdlog::logger> log;
  std::atomic<std::uint64_t> trade_requests{0}, rejected_at_parse{0}, overload_refusals{0},
      deadline_failures{0};
  std::atomic<Clock::rep> last_warn{0};
  std::atomic<std::uint64_t> suppressed_warns{0};

  Impl(Pipeline& p, std::shared_ptr<TradeStore> s, std::shared_ptr<PartitionLock> l,
       GatewayOptions o)
      : pipeline(p),
        store(std::move(s)),
        lock(std::move(l)),
        opt(std::move(o)),
        log(opt.logger ? opt.logger : spdlog::default_logger()) {}

  /// The events of one POST /v1/trades, from submission to the response.
  struct TradesJob {
    std::vector<BodyEvent> events;    ///< in request order (the TradeEvents moved out)
    std::vector<std::size_t> batch;   ///< per event: its index in the batch, or npos
    std::uint64_t rejected_at_parse = 0;
    std::unique_ptr<detail::GatewayOp> op;
  };
  static constexpr std::size_t not_submitted = static_cast<std::size_t>(-1);
  /// A POST /v1/trades body of at most this many bytes is parsed on the caller's thread, not
  /// handed to the executor (a single event is ~200 bytes).
  static constexpr std::size_t inline_body_bytes = 4096;
  /// The answer of at most this many submitted events is built on the pipeline thread that
  /// completes the last of them, not handed to the executor.
  static constexpr std::size_t inline_answer_events = 16;

  static bool needs_auth(Route r) { return r != Route::live && r != Route::ready; }

  bool authorized(std::string_view v) const {
    if (opt.token.empty()) return true;
    constexpr std::string_view scheme = "bearer";
    if (v.size() <= scheme.size() || !iequals(v.substr(0, scheme.size()), scheme) ||
        (v[scheme.size()] != ' ' && v[scheme.size()] != '\t'))
      return false;
    return constant_time_equal(opt.token, trim(v.substr(scheme.size())));
  }

  std::optional<GatewayResponse> check(const GatewayRequest& req, const Target& t) const {
    if (t.route == Route::not_found) return not_found_response(t);
    if (needs_auth(t.route) && !authorized(req.authorization)) {
      GatewayResponse r = gateway_error(401, "missing or wrong 'Authorization: Bearer' token");
      r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"tradecapture\"");
      return r;
    }
    const std::string_view method = req.method == "HEAD" ? "GET" : std::string_view(req.method);
    if (method != (t.route == Route::trades ? "POST" : "GET")) {
      GatewayResponse r = gateway_error(405, "method not allowed");
      r.headers.emplace_back("Allow", t.route == Route::trades ? "POST" : "GET, HEAD");
      return r;
    }
    if (!identity_encoding(req.content_encoding)) {
      GatewayResponse r =
          gateway_error(415, "Content-Encoding '" + req.content_encoding.front() +
                                 "' is not supported: send the body uncompressed (identity)");
      r.headers.emplace_back("Accept-Encoding", "identity");
      return r;
    }
    if (t.route == Route::trades) {
      if (!body_format(req.content_type))
        return gateway_error(
            415, "POST /v1/trades takes Content-Type application/json or application/x-ndjson");
      if (req.deadline_ms.size() > 1 ||
          (req.deadline_ms.size() == 1 && !parse_deadline_ms(req.deadline_ms.front())))
        return gateway_error(400,
                             "X-Request-Deadline-Ms must appear once, as a number of "
                             "milliseconds from 1 to 86400000");
    }
    return std::nullopt;
  }

  /// Runs `f` (which returns the answer) on the executor and completes `op` with it.
  template <class F>
  void on_executor(std::unique_ptr<detail::GatewayOp> op, F f) {
    asio::post(opt.executor, [op = std::move(op), f = std::move(f)]() mutable {
      op.release()->complete(f());
    });
  }

  void handle(GatewayRequest req, std::unique_ptr<detail::GatewayOp> op) {
    const Clock::time_point arrival = req.arrival.value_or(Clock::now());
    const Target t = parse_target(req.target);
    if (auto refusal = check(req, t)) return op.release()->complete(std::move(*refusal));
    switch (t.route) {
      case Route::live:
        return op.release()->complete(health_live());
      case Route::ready:
        return on_executor(std::move(op), [this] {
          return health_ready(*store, lock.get(), opt.draining && opt.draining());
        });
      case Route::metrics:
        return on_executor(std::move(op), [this] {
          return opt.metrics ? opt.metrics() : gateway_error(404, "no such resource");
        });
      case Route::positions: {
        PositionFilter filter;
        if (auto err = parse_filter(t.query, filter))
          return op.release()->complete(gateway_error(400, *err));
        return on_executor(std::move(op),
                           [this, filter = std::move(filter)] { return positions(filter); });
      }
      case Route::trade: {
        auto id = percent_decode(t.trade_id, false);
        if (!id)
          return op.release()->complete(
              gateway_error(400, "bad percent-encoding in the trade id"));
        return on_executor(std::move(op), [this, id = std::move(*id)] { return trade(id); });
      }
      case Route::trades: {
        const BodyFormat format = *body_format(req.content_type);
        // The request's deadline runs from its arrival: the smaller of the gateway's and the
        // request's own (validated in check).
        auto limit = opt.request_deadline;
        if (!req.deadline_ms.empty())
          limit = std::min(limit, std::chrono::milliseconds(*parse_deadline_ms(req.deadline_ms[0])));
        const auto deadline = arrival + limit;
        // A small body (a single event, a few) is parsed and submitted here, on the caller's
        // thread: a few microseconds, less than what handing it to the executor costs (a
        // thread wake-up and a context switch each way, ~10 us apiece on the machine of
        // BENCHMARKS.md). Nothing here blocks: admission refuses instead of waiting.
        if (req.body.size() <= inline_body_bytes)
          return post_trades(req.body, format, deadline, std::move(op));
        asio::post(opt.executor, [this, op = std::move(op), body = std::move(req.body), format,
                                  deadline]() mutable {
          post_trades(body, format, deadline, std::move(op));
        });
        return;
      }
      case Route::not_found:
        break;
    }
    op.release()->complete(not_found_response(t));
  }

  GatewayResponse positions(const PositionFilter& f) {
    auto rows = store->positions();
    if (!rows) {
      log->warn("GET /v1/positions: {}", rows.error().message());
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
    return json_response(200, std::move(body));
  }

  GatewayResponse trade(const std::string& trade_id) {
    // A full scan of the accepted events: fine for the example host, not for a big store (a real
    // gateway would add an index lookup to TradeStore).
    std::string events;
    std::size_t n = 0;
    auto scanned = store->scan_events([&](const StoredEvent& e) {
      if (e.event.trade_id == trade_id) {
        if (n++ != 0) events += ", ";
        append_event_json(events, e);
        events.pop_back();  // its '\n'
      }
      return true;
    });
    if (!scanned) {
      log->warn("GET /v1/trades/{{id}}: {}", scanned.error().message());
      return unavailable("cannot read events: " + scanned.error().message());
    }
    if (n == 0) return gateway_error(404, "no accepted event of this trade id");
    std::string body = "{\"trade_id\": ";
    append_json_string(body, trade_id);
    body += ", \"events\": [";
    body += events;
    body += "]}\n";
    return json_response(200, std::move(body));
  }

  // Runs on the executor.
  void post_trades(const std::string& raw, BodyFormat format, Clock::time_point deadline,
                   std::unique_ptr<detail::GatewayOp> op) {
    ParsedBody parsed = parse_request_body(raw, format);
    if (!parsed.error.empty()) return op.release()->complete(gateway_error(400, parsed.error));
    auto job = std::make_shared<TradesJob>();
    job->events = std::move(parsed.events);
    job->batch.assign(job->events.size(), not_submitted);
    job->op = std::move(op);
    std::vector<TradeEvent> batch;
    for (std::size_t i = 0; i < job->events.size(); ++i) {
      ParsedEvent& p = job->events[i].parsed;
      if (!p.event) {
        ++job->rejected_at_parse;
        continue;
      }
      job->batch[i] = batch.size();
      batch.push_back(std::move(*p.event));
      p.event.reset();
    }
    if (batch.empty()) return finish_trades(*job, {});
    // Admitted whole or refused whole, on the pipeline's own count. Once the pipeline stops,
    // the batch goes in without room: each event completes `stopped`, the request 503.
    auto room = pipeline.try_reserve(batch.size());
    if (!room && room.error() != make_error_code(errc::stopped)) {
      overload_refusals.fetch_add(1);
      return job->op.release()->complete(unavailable(
          "overloaded: " + std::to_string(pipeline.in_flight()) +
          " events in flight, at most " + std::to_string(pipeline.max_in_flight()) +
          " (the pipeline's max_in_flight); retry later"));
    }
    // Every event carries the request's deadline: one not decided by then is withdrawn by the
    // pipeline (no outcome, never decided later), so the client or a proxy may re-send the
    // request elsewhere once the deadline has passed (spec section 6, point 5).
    SubmitOptions submit_options;
    submit_options.deadline = deadline;
    // Validate once (issue #12): every event of `batch` passed `validate` in `parse_event`
    // (parse_request_body), and only those were submitted; an invalid one is answered here,
    // counted in `rejected_at_parse` and left out of the reservation, so the gateway needs the
    // verdict before it submits. The pipeline's own `validate` would say the same again, so the
    // batch goes in through the internal entry that skips it (detail/validate_once.hpp).
    // The answer of a few events is built where the last of them completes (a pipeline
    // thread): a few hundred bytes of JSON, cheaper than a hand-off to the executor; a larger
    // one on the executor, so that the pipeline's threads do not write long bodies.
    auto room_or_none = room ? std::move(room.value()) : Pipeline::Reservation{};
    auto finish = [this, job](boost::system::error_code, std::vector<result<Outcome>> r) {
      finish_trades(*job, std::move(r));
    };
    if (batch.size() <= inline_answer_events) {
      detail::PrevalidatedSubmit::async_submit_batch(pipeline, std::move(batch),
                                                     std::move(room_or_none), submit_options,
                                                     std::move(finish));
    } else {
      detail::PrevalidatedSubmit::async_submit_batch(pipeline, std::move(batch),
                                                     std::move(room_or_none), submit_options,
                                                     asio::bind_executor(opt.executor,
                                                                         std::move(finish)));
    }
  }

  // Runs once every submitted event has completed: on the executor, or for a few events on
  // the pipeline thread that completed the last of them.
  void finish_trades(TradesJob& job, std::vector<result<Outcome>> results) {
    trade_requests.fetch_add(1);
    std::uint64_t failed = 0;
    bool withdrawn = false;
    std::optional<boost::system::error_code> first;
    for (const auto& r : results) {
      if (!r) {
        ++failed;
        if (!first) first = r.error();
        if (r.error() == make_error_code(errc::deadline_exceeded)) withdrawn = true;
      }
    }
    if (failed > 0) {
      // No outcome for some events (deadline passed, store or lock down past the retry budget,
      // stopping): the whole request fails; the outcomes that were decided are durable, and
      // sending the same request again is safe (DUPLICATE for those).
      if (withdrawn) deadline_failures.fetch_add(1);
      warn_limited(failed, job.events.size(), first->message());
      return job.op.release()->complete(unavailable(
          std::to_string(failed) + " of " + std::to_string(job.events.size()) +
          " events have no outcome (" + first->message() +
          "); re-sending the whole request is safe"));
    }
    rejected_at_parse.fetch_add(job.rejected_at_parse);
    std::string body;
    body.reserve(32 + job.events.size() * 96);
    body += "{\"outcomes\": [";
    for (std::size_t i = 0; i < job.events.size(); ++i) {
      if (i != 0) body += ", ";
      BodyEvent& e = job.events[i];
      const Outcome o = job.batch[i] == not_submitted ? Outcome::rejected(std::move(e.parsed.reason))
                                                      : std::move(results[job.batch[i]].value());
      append_outcome_json(body, e.line, e.parsed.echo_trade_id, e.parsed.echo_version, o);
      body.pop_back();  // its '\n'
    }
    body += "]}\n";
    job.op.release()->complete(json_response(200, std::move(body)));
  }

  /// The warning of a request without every outcome, at most one a second (a persistent fault
  /// fails every request: bounded noise, spec section 6, point 6); the next one says how many
  /// were suppressed.
  void warn_limited(std::uint64_t failed, std::size_t events, const std::string& why) {
    const auto now = Clock::now().time_since_epoch().count();
    auto last = last_warn.load();
    if (last != 0 && now - last < Clock::duration(std::chrono::seconds(1)).count()) {
      suppressed_warns.fetch_add(1);
      return;
    }
    if (!last_warn.compare_exchange_strong(last, now)) {
      suppressed_warns.fetch_add(1);
      return;
    }
    if (const auto n = suppressed_warns.exchange(0); n != 0)
      log->warn("({} similar warnings suppressed in the last second(s))", n);
    log->warn("POST /v1/trades: {} of {} events have no outcome: {}", failed, events, why);
  }
};

Gateway::Gateway(Pipeline& pipeline, std::shared_ptr<TradeStore> store,
                 std::shared_ptr<PartitionLock> lock, GatewayOptions options)
    : impl_(std::make_unique<Impl>(pipeline, std::move(store), std::move(lock),
                                   std::move(options))) {}

Gateway::~Gateway() = default;

std::optional<GatewayResponse> Gateway::check(const GatewayRequest& request) const {
  return impl_->check(request, parse_target(request.target));
}

void Gateway::handle_(GatewayRequest request, std::unique_ptr<detail::GatewayOp> op) {
  impl_->handle(std::move(request), std::move(op));
}

GatewayStats Gateway::stats() const {
  GatewayStats s;
  s.trade_requests = impl_->trade_requests.load();
  s.rejected_at_parse = impl_->rejected_at_parse.load();
  s.overload_refusals = impl_->overload_refusals.load();
  s.deadline_failures = impl_->deadline_failures.load();
  return s;
}

}  // namespace tradecapture
