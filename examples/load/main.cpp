// tradecapture-load: an HTTP load generator for `tradecapture serve` (spec section 5).
//
// Drives `POST /v1/trades` over keep-alive connections, closed loop (as fast as the server
// answers) or open loop at a target rate. In open loop every request has an intended send time
// (start + k * batch / rate) and its latency runs from that time to the complete response, so
// a server (or a client) that falls behind shows up in the figures instead of silently
// slowing the generator down (no coordinated omission). 5xx answers and connection errors are
// retried with backoff by re-sending the very same events: the server's idempotency key
// (trade_id, version) makes that safe, and an event applied by an earlier attempt then comes
// back DUPLICATE.
//
// Each client thread (--threads) runs its own io_context with its own connections, event
// generator and statistics; they are merged at the end.

#include "workload.hpp"

#include "../tradecapture/conventions.hpp"

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/version.hpp>
#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace tradecapture::load {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using error_code = boost::system::error_code;

constexpr int exit_usage = tradecapture::cli::exit_usage;  // 64 (EX_USAGE)

std::atomic<bool> g_stop{false};   // first SIGINT/SIGTERM: stop sending, finish what is in flight
std::atomic<bool> g_abort{false};  // second one: give up on what is in flight

extern "C" void on_signal(int) {
  if (g_stop.exchange(true)) g_abort = true;
}

struct Options {
  std::vector<std::string> urls;
  std::size_t connections = 4;
  double rate = 0;
  std::size_t batch = 1;
  std::uint32_t partitions = 1000;
  std::string skew = "0";
  double duration = -1;  ///< -1: 10 s unless --events is given
  std::uint64_t events = 0;
  std::uint64_t seed = 1;
  std::string trade_prefix;
  std::string mix = "85:10:5";
  std::string format = "json";
  std::size_t threads = 1;
  int max_retries = 30;
  double timeout = 30;
  double max_backoff = 1.0;
  double drain_timeout = 60;
  double progress = -1;
  std::string accepted_log;
  bool json = false;
  std::size_t dump = 0;
  std::uint32_t route_groups = 0;
  std::string route_header = "X-Route-Key";
};

/// One server: `http://host:port[/base]`, resolved once.
struct Target {
  std::string url;
  std::string host_header;
  std::string path;  ///< request target of POST /v1/trades
  tcp::resolver::results_type endpoints;
};

Target parse_target(const std::string& url, asio::io_context& ioc) {
  std::string rest = url;
  if (rest.rfind("http://", 0) == 0) {
    rest = rest.substr(7);
  } else if (rest.find("://") != std::string::npos) {
    throw std::invalid_argument("only http:// URLs are supported: " + url);
  }
  std::string hostport = rest.substr(0, rest.find('/'));
  std::string base = rest.size() > hostport.size() ? rest.substr(hostport.size()) : "";
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string host = hostport, port = "80";
  if (!hostport.empty() && hostport.front() == '[') {  // [::1]:8080
    auto close = hostport.find(']');
    if (close == std::string::npos) throw std::invalid_argument("bad URL: " + url);
    host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size() && hostport[close + 1] == ':')
      port = hostport.substr(close + 2);
  } else if (auto colon = hostport.rfind(':'); colon != std::string::npos) {
    host = hostport.substr(0, colon);
    port = hostport.substr(colon + 1);
  }
  if (host.empty() || port.empty()) throw std::invalid_argument("bad URL: " + url);
  if (!tradecapture::cli::parse_port(port, false))
    throw std::invalid_argument("bad URL: " + url + ": the port must be a number from 1 to 65535");
  Target t;
  t.url = url;
  t.host_header = hostport;
  const std::string suffix = "/v1/trades";
  t.path = base.size() >= suffix.size() && base.ends_with(suffix) ? base : base + suffix;
  tcp::resolver resolver(ioc);
  error_code ec;
  t.endpoints = resolver.resolve(host, port, ec);
  if (ec) throw std::invalid_argument("cannot resolve " + url + ": " + ec.message());
  return t;
}

Workload::Mix parse_mix(const std::string& s) {
  Workload::Mix m;
  unsigned v[3];
  char tail;
  if (std::sscanf(s.c_str(), "%u:%u:%u%c", &v[0], &v[1], &v[2], &tail) != 3)
    throw std::invalid_argument("--mix wants NEW:AMEND:CANCEL weights, e.g. 85:10:5");
  m.new_trade = v[0];
  m.amend = v[1];
  m.cancel = v[2];
  if (m.new_trade == 0) throw std::invalid_argument("--mix needs a NEW weight above 0");
  return m;
}

/// Everything one client thread measured.
struct Stats {
  std::uint64_t requests_sent = 0;  ///< distinct requests (a retry is not a new request)
  std::uint64_t events_sent = 0;
  std::uint64_t requests_ok = 0;
  std::uint64_t events_ok = 0;  ///< events with an outcome
  std::uint64_t attempts = 0;
  std::uint64_t retries = 0;
  std::uint64_t failed_requests = 0;  ///< gave up: the events' outcomes are unknown
  std::uint64_t failed_events = 0;
  std::uint64_t unsent_requests = 0;  ///< open loop: still queued in the client at the end
  std::uint64_t unsent_events = 0;
  std::map<std::string, std::uint64_t> outcomes;
  std::map<std::string, std::uint64_t> errors;  ///< by kind, every failed attempt
  std::vector<std::uint64_t> latency_ns;
  Clock::time_point last_completion{};

  void merge(Stats&& o) {
    requests_sent += o.requests_sent;
    events_sent += o.events_sent;
    requests_ok += o.requests_ok;
    events_ok += o.events_ok;
    attempts += o.attempts;
    retries += o.retries;
    failed_requests += o.failed_requests;
    failed_events += o.failed_events;
    unsent_requests += o.unsent_requests;
    unsent_events += o.unsent_events;
    for (auto& [k, v] : o.outcomes) outcomes[k] += v;
    for (auto& [k, v] : o.errors) errors[k] += v;
    latency_ns.insert(latency_ns.end(), o.latency_ns.begin(), o.latency_ns.end());
    last_completion = std::max(last_completion, o.last_completion);
  }
};

/// Shared counters for the progress line.
struct Progress {
  std::atomic<std::uint64_t> events_ok{0}, requests_ok{0}, retries{0}, failed_events{0},
      in_flight{0};
};

/// `--accepted-log`: one JSON line per event that the client saw ACCEPTED. Thread-safe.
class AcceptedLog {
 public:
  explicit AcceptedLog(const std::string& path) : f_(std::fopen(path.c_str(), "w")) {
    if (!f_) throw std::invalid_argument("cannot open --accepted-log " + path);
  }
  ~AcceptedLog() { std::fclose(f_); }
  AcceptedLog(const AcceptedLog&) = delete;
  AcceptedLog& operator=(const AcceptedLog&) = delete;
  void write(std::string& buf) {
    std::lock_guard lock(mu_);
    if (!buf.empty() && std::fwrite(buf.data(), 1, buf.size(), f_) != buf.size()) ok_ = false;
    buf.clear();
  }
  bool close() {
    std::lock_guard lock(mu_);
    return std::fflush(f_) == 0 && ok_;
  }

 private:
  std::mutex mu_;
  std::FILE* f_;
  bool ok_ = true;
};

struct Request {
  std::vector<Event> events;
  std::uint32_t group = 0;  ///< --route-groups: the routing key sent in --route-header
  std::string body;
  Clock::time_point intended;  ///< latency runs from here (the schedule, not the actual send)
  Clock::time_point first_attempt;
};

struct Connection {
  explicit Connection(asio::io_context& ioc, std::size_t target)
      : stream(ioc), timer(ioc), target(target) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  asio::steady_timer timer;  ///< retry backoff
  std::size_t target;        ///< index into the targets; moves on after a connection error
};

/// What one attempt of a request came to.
struct Attempt {
  enum class Result { ok, retry, fatal } result;
  std::string kind;                   ///< error kind for the counts ("" when ok)
  std::optional<double> retry_after;  ///< seconds, from a Retry-After header
};

class Worker {
 public:
  Worker(const Options& o, const std::vector<Target>& targets, const PartitionChooser& chooser,
         Workload::Mix mix, unsigned index, std::size_t connections, double rate,
         std::uint64_t quota, Progress& progress, AcceptedLog* log)
      : o_(o),
        targets_(targets),
        workload_(o.trade_prefix + std::to_string(index) + "-", chooser, mix,
                  o.seed * 0x9E3779B97F4A7C15ull + index, o.partitions, o.route_groups),
        rate_(rate),
        quota_(quota),
        progress_(progress),
        log_(log),
        jitter_(o.seed + 7919ull * index) {
    for (std::size_t i = 0; i < connections; ++i) {
      conns_.push_back(std::make_unique<Connection>(ioc_, (index + i) % targets.size()));
      idle_.push_back(conns_.back().get());
    }
    content_type_ = o.format == "ndjson" ? "application/x-ndjson" : "application/json";
  }

  void run(Clock::time_point start) {
    start_ = start;
    end_of_sending_ = o_.duration > 0 ? start + std::chrono::duration_cast<Clock::duration>(
                                                    std::chrono::duration<double>(o_.duration))
                                      : Clock::time_point::max();
    asio::co_spawn(ioc_, tick(), asio::detached);
    if (rate_ > 0) {
      asio::co_spawn(ioc_, schedule(), asio::detached);
    } else {
      dispatch();
    }
    ioc_.run();
    if (log_) log_->write(log_buf_);
  }

  Stats& stats() { return stats_; }

 private:
  bool sending_over() const {
    return g_stop || Clock::now() >= end_of_sending_ || (quota_ > 0 && issued_ >= quota_);
  }

  // Open loop: request k is due at start + k * batch / rate; due requests queue here until a
  // connection is free.
  asio::awaitable<void> schedule() {
    asio::steady_timer timer(ioc_);
    const double period_s = static_cast<double>(o_.batch) / rate_;
    std::uint64_t scheduled_events = 0;
    for (std::uint64_t k = 0;; ++k) {
      auto due = start_ + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(period_s * static_cast<double>(k)));
      if (due >= end_of_sending_ || g_stop || (quota_ > 0 && scheduled_events >= quota_)) break;
      if (Clock::now() < due) {
        timer.expires_at(due);
        error_code ec;
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (g_stop) break;
      }
      std::size_t n = o_.batch;
      if (quota_ > 0)
        n = static_cast<std::size_t>(std::min<std::uint64_t>(n, quota_ - scheduled_events));
      scheduled_events += n;
      pending_.push_back({due, n});
      dispatch();
    }
    schedule_done_ = true;
    // Requests still queued in the client when the run ends are not sent: the server did not
    // keep up with the offered load (counted as unsent).
    if (!pending_.empty() && (g_stop || o_.duration > 0)) {
      for (auto& p : pending_) {
        ++stats_.unsent_requests;
        stats_.unsent_events += p.second;
      }
      pending_.clear();
    }
    maybe_finish();
  }

  // Hands work to idle connections.
  void dispatch() {
    while (!idle_.empty() && !aborted_) {
      Clock::time_point intended;
      std::size_t n;
      if (rate_ > 0) {
        if (pending_.empty()) break;
        intended = pending_.front().first;
        n = pending_.front().second;
        pending_.pop_front();
      } else {
        if (sending_over()) break;
        intended = Clock::now();
        n = o_.batch;
        if (quota_ > 0) n = static_cast<std::size_t>(std::min<std::uint64_t>(n, quota_ - issued_));
      }
      issued_ += n;
      auto req = std::make_unique<Request>();
      req->intended = intended;
      req->events.reserve(n);
      req->group = workload_.pick_group();
      for (std::size_t i = 0; i < n; ++i) req->events.push_back(workload_.next(req->group));
      build_body(*req);
      Connection* c = idle_.back();
      idle_.pop_back();
      ++in_flight_;
      ++progress_.in_flight;
      ++stats_.requests_sent;
      stats_.events_sent += n;
      asio::co_spawn(ioc_, run_request(*c, std::move(req)), asio::detached);
    }
    maybe_finish();
  }

  void maybe_finish() {
    bool issuing_done = rate_ > 0 ? schedule_done_ && pending_.empty() : sending_over();
    if ((issuing_done || aborted_) && in_flight_ == 0 && !finished_) {
      finished_ = true;
      for (auto& c : conns_) {
        error_code ec;
        c->stream.socket().shutdown(tcp::socket::shutdown_both, ec);
        c->stream.close();
      }
      ioc_.stop();
    }
  }

  // Every 100 ms: notices a signal, and gives up on what is still in flight once the drain
  // time after the end of sending has passed.
  asio::awaitable<void> tick() {
    asio::steady_timer timer(ioc_);
    std::optional<Clock::time_point> drain_deadline;
    while (!finished_) {
      timer.expires_after(std::chrono::milliseconds(100));
      error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (finished_) break;
      if (!drain_deadline && sending_over()) {
        drain_deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(o_.drain_timeout));
        if (rate_ == 0) dispatch();  // closed loop with every connection busy: re-check the end
      }
      if (g_abort || (drain_deadline && Clock::now() > *drain_deadline)) abort_all();
    }
  }

  void abort_all() {
    if (aborted_) return;
    aborted_ = true;
    pending_.clear();
    for (auto& c : conns_) {
      c->stream.cancel();
      c->timer.cancel();
    }
    maybe_finish();
  }

  void build_body(Request& r) {
    bool ndjson = o_.format == "ndjson";
    bool array = !ndjson && r.events.size() != 1;
    r.body.reserve(r.events.size() * 220 + 2);
    if (array) r.body += '[';
    for (std::size_t i = 0; i < r.events.size(); ++i) {
      if (i > 0 && array) r.body += ',';
      append_event_json(r.body, r.events[i]);
      if (ndjson) r.body += '\n';
    }
    if (array) r.body += ']';
  }

  asio::awaitable<void> run_request(Connection& c, std::unique_ptr<Request> r) {
    r->first_attempt = Clock::now();
    bool done = false;
    for (int attempt = 0; !done; ++attempt) {
      Attempt a{Attempt::Result::fatal, "internal", {}};
      try {
        a = co_await attempt_once(c, *r);
      } catch (const std::exception&) {
        close(c);
      }
      ++stats_.attempts;
      if (a.result == Attempt::Result::ok) {
        done = true;
        break;
      }
      ++stats_.errors[a.kind];
      if (a.result == Attempt::Result::fatal || aborted_ || attempt >= o_.max_retries) {
        ++stats_.failed_requests;
        stats_.failed_events += r->events.size();
        progress_.failed_events += r->events.size();
        break;
      }
      ++stats_.retries;
      ++progress_.retries;
      // Full jitter around an exponential step (5 ms, 10 ms, ... up to --max-backoff); a
      // Retry-After from the server is honoured up to --max-backoff.
      double step =
          std::min(o_.max_backoff, 0.005 * static_cast<double>(1u << std::min(attempt, 16)));
      if (a.retry_after) step = std::min(o_.max_backoff, std::max(step, *a.retry_after));
      double wait = step * (0.5 + 0.5 * PartitionChooser::unit(jitter_));
      c.timer.expires_after(
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(wait)));
      error_code ec;
      co_await c.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (aborted_) {
        ++stats_.failed_requests;
        stats_.failed_events += r->events.size();
        progress_.failed_events += r->events.size();
        break;
      }
    }
    --in_flight_;
    --progress_.in_flight;
    idle_.push_back(&c);
    if (!aborted_) dispatch();
    maybe_finish();
  }

  void close(Connection& c) {
    error_code ec;
    c.stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    c.stream.close();
    c.buffer.consume(c.buffer.size());
  }

  static std::string io_kind(const error_code& ec) {
    if (ec == beast::error::timeout) return "timeout";
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
        ec == http::error::partial_message)
      return "connection_closed";
    if (ec == asio::error::operation_aborted) return "aborted";
    return "io";
  }

  asio::awaitable<Attempt> attempt_once(Connection& c, Request& r) {
    using R = Attempt::Result;
    auto timeout =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.timeout));
    error_code ec;
    if (!c.stream.socket().is_open()) {
      c.buffer.consume(c.buffer.size());
      c.stream.expires_after(std::min<Clock::duration>(timeout, std::chrono::seconds(5)));
      co_await c.stream.async_connect(targets_[c.target].endpoints,
                                      asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        close(c);
        c.target = (c.target + 1) % targets_.size();  // try the next server next time
        co_return Attempt{aborted_ ? R::fatal : R::retry, "connect", {}};
      }
      c.stream.socket().set_option(tcp::no_delay(true), ec);
    }
    const Target& t = targets_[c.target];
    http::request<http::string_body> req{http::verb::post, t.path, 11};
    req.set(http::field::host, t.host_header);
    req.set(http::field::user_agent, "tradecapture-load");
    req.set(http::field::content_type, content_type_);
    if (o_.route_groups > 0) req.set(o_.route_header, std::to_string(r.group));
    req.keep_alive(true);
    req.body() = std::move(r.body);
    req.prepare_payload();
    c.stream.expires_after(timeout);
    co_await http::async_write(c.stream, req, asio::redirect_error(asio::use_awaitable, ec));
    r.body = std::move(req.body());
    if (ec) {
      close(c);
      if (targets_.size() > 1 && io_kind(ec) != "timeout")
        c.target = (c.target + 1) % targets_.size();
      co_return Attempt{R::retry, io_kind(ec), {}};
    }
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::uint64_t{1} << 28);
    co_await http::async_read(c.stream, c.buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      close(c);
      if (targets_.size() > 1 && io_kind(ec) != "timeout")
        c.target = (c.target + 1) % targets_.size();
      co_return Attempt{R::retry, io_kind(ec), {}};
    }
    c.stream.expires_never();
    auto res = parser.release();
    if (!res.keep_alive()) close(c);
    unsigned status = res.result_int();
    if (status == 200) co_return complete(r, res.body());
    Attempt a{R::fatal, "http_" + std::to_string(status), {}};
    // 503: back-pressure or draining; 502/504: a proxy lost or timed out on a server; 500 and
    // 429 are also transient. Re-sending the same events is safe (idempotent).
    if (status == 503 || status == 502 || status == 504 || status == 500 || status == 429) {
      a.result = R::retry;
      auto it = res.find(http::field::retry_after);
      if (it != res.end()) {
        try {
          a.retry_after = std::stod(std::string(it->value()));
        } catch (const std::exception&) {
        }
      }
    }
    co_return a;
  }

  // A 200 answer: one outcome per event, in request order.
  Attempt complete(Request& r, const std::string& body) {
    using R = Attempt::Result;
    auto doc = nlohmann::json::parse(body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("outcomes") ||
        !doc["outcomes"].is_array() || doc["outcomes"].size() != r.events.size())
      return {R::fatal, "bad_response", {}};
    const auto& outs = doc["outcomes"];
    for (std::size_t i = 0; i < r.events.size(); ++i) {
      const auto& o = outs[i];
      const Event& e = r.events[i];
      if (!o.is_object() || !o.contains("outcome") || !o["outcome"].is_string() ||
          o.value("trade_id", nlohmann::json()) != e.trade_id ||
          o.value("version", nlohmann::json()) != e.version)
        return {R::fatal, "bad_response", {}};
    }
    auto now = Clock::now();
    stats_.latency_ns.push_back(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - r.intended).count()));
    stats_.last_completion = now;
    ++stats_.requests_ok;
    stats_.events_ok += r.events.size();
    ++progress_.requests_ok;
    progress_.events_ok += r.events.size();
    for (std::size_t i = 0; i < r.events.size(); ++i) {
      const auto& o = outs[i];
      const std::string& outcome = o["outcome"].get_ref<const std::string&>();
      ++stats_.outcomes[outcome];
      Event& e = r.events[i];
      bool accepted = outcome == "ACCEPTED";
      if (accepted && log_) {
        append_event_head(log_buf_, e);
        log_buf_ += ",\"seq\":" + o.value("seq", nlohmann::json()).dump() + "}\n";
        if (log_buf_.size() > (1u << 18)) log_->write(log_buf_);
      }
      if (accepted || outcome == "DUPLICATE") workload_.confirmed(std::move(e));
    }
    return {R::ok, "", {}};
  }

  const Options& o_;
  const std::vector<Target>& targets_;
  asio::io_context ioc_{1};
  Workload workload_;
  double rate_;
  std::uint64_t quota_;
  Progress& progress_;
  AcceptedLog* log_;
  std::mt19937_64 jitter_;
  std::string content_type_;
  std::vector<std::unique_ptr<Connection>> conns_;
  std::vector<Connection*> idle_;
  std::deque<std::pair<Clock::time_point, std::size_t>> pending_;  // open loop: due, events
  std::uint64_t issued_ = 0;
  std::size_t in_flight_ = 0;
  bool schedule_done_ = false;
  bool aborted_ = false;
  bool finished_ = false;
  Clock::time_point start_;
  Clock::time_point end_of_sending_;
  std::string log_buf_;
  Stats stats_;
};

std::string with_commas(double v) {
  auto n = static_cast<long long>(v + 0.5);
  std::string s = std::to_string(n < 0 ? -n : n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3)
    s.insert(static_cast<std::size_t>(i), ",");
  return n < 0 ? "-" + s : s;
}

double percentile_ms(const std::vector<std::uint64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) / 1e6;
}

std::string default_prefix() {
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  char buf[64];
  std::snprintf(buf, sizeof buf, "L%llx-%d-", static_cast<unsigned long long>(now),
                static_cast<int>(::getpid()));
  return buf;
}

int dump_events(const Options& o, const PartitionChooser& chooser, Workload::Mix mix) {
  Workload w(o.trade_prefix + "0-", chooser, mix, o.seed * 0x9E3779B97F4A7C15ull, o.partitions,
             o.route_groups);
  std::string out;
  for (std::size_t i = 0; i < o.dump; ++i) {
    Event e = w.next(w.pick_group());
    append_event_json(out, e);
    out += '\n';
    w.confirmed(std::move(e));  // as if the server accepted everything
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int run(Options& o) {
  if (o.trade_prefix.empty()) o.trade_prefix = default_prefix();
  if (o.trade_prefix.size() > 40) throw std::invalid_argument("--trade-prefix: at most 40 bytes");
  PartitionChooser chooser(o.partitions, o.skew);
  Workload::Mix mix = parse_mix(o.mix);
  if (o.dump > 0) return dump_events(o, chooser, mix);
  if (o.urls.empty()) throw std::invalid_argument("--url is required");
  if (o.duration < 0) o.duration = o.events > 0 ? 0 : 10;
  if (o.duration == 0 && o.events == 0)
    throw std::invalid_argument("give --duration S or --events N (or both)");
  if (o.connections < o.threads) throw std::invalid_argument("--connections must be >= --threads");

  std::vector<Target> targets;
  {
    asio::io_context ioc;
    for (const auto& u : o.urls) targets.push_back(parse_target(u, ioc));
  }
  std::unique_ptr<AcceptedLog> log;
  if (!o.accepted_log.empty()) log = std::make_unique<AcceptedLog>(o.accepted_log);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);

  Progress progress;
  std::vector<std::unique_ptr<Worker>> workers;
  for (std::size_t i = 0; i < o.threads; ++i) {
    std::size_t conns = o.connections / o.threads + (i < o.connections % o.threads ? 1 : 0);
    std::uint64_t quota = 0;
    if (o.events > 0) quota = o.events / o.threads + (i < o.events % o.threads ? 1 : 0);
    if (o.events > 0 && quota == 0) continue;
    workers.push_back(std::make_unique<Worker>(o, targets, chooser, mix, static_cast<unsigned>(i),
                                               conns, o.rate / static_cast<double>(o.threads),
                                               quota, progress, log.get()));
  }

  const bool tty = ::isatty(2) != 0;
  double every = o.progress >= 0 ? o.progress : (tty ? 1.0 : 10.0);
  auto start = Clock::now() + std::chrono::milliseconds(5);
  std::vector<std::thread> threads;
  std::mutex mu;
  std::condition_variable cv;
  std::size_t running = workers.size();
  for (auto& w : workers) {
    threads.emplace_back([&, w = w.get()] {
      w->run(start);
      std::lock_guard lock(mu);
      --running;
      cv.notify_all();
    });
  }
  {
    std::unique_lock lock(mu);
    std::uint64_t last_events = 0;
    auto last = start;
    while (running > 0) {
      if (every <= 0) {
        cv.wait(lock, [&] { return running == 0; });
        break;
      }
      auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(every));
      if (cv.wait_until(lock, deadline, [&] { return running == 0; })) break;
      auto now = Clock::now();
      std::uint64_t ev = progress.events_ok.load();
      double dt = std::chrono::duration<double>(now - last).count();
      double total = std::chrono::duration<double>(now - start).count();
      std::fprintf(stderr,
                   "%s[%6.1fs] %s events (%s/s now), %s requests, %llu in flight, %llu retries, "
                   "%llu failed events%s",
                   tty ? "\r" : "", total, with_commas(static_cast<double>(ev)).c_str(),
                   with_commas(static_cast<double>(ev - last_events) / dt).c_str(),
                   with_commas(static_cast<double>(progress.requests_ok.load())).c_str(),
                   static_cast<unsigned long long>(progress.in_flight.load()),
                   static_cast<unsigned long long>(progress.retries.load()),
                   static_cast<unsigned long long>(progress.failed_events.load()),
                   tty ? "   " : "\n");
      last_events = ev;
      last = now;
    }
  }
  for (auto& t : threads) t.join();
  if (tty && every > 0) std::fprintf(stderr, "\n");

  Stats s;
  for (auto& w : workers) s.merge(std::move(w->stats()));
  bool log_ok = !log || log->close();
  std::sort(s.latency_ns.begin(), s.latency_ns.end());
  auto end = s.last_completion > start ? s.last_completion : Clock::now();
  double elapsed = std::max(1e-9, std::chrono::duration<double>(end - start).count());
  double mean = 0;
  for (auto v : s.latency_ns) mean += static_cast<double>(v);
  mean = s.latency_ns.empty() ? 0 : mean / static_cast<double>(s.latency_ns.size()) / 1e6;

  nlohmann::json j;
  j["urls"] = o.urls;
  j["connections"] = o.connections;
  j["threads"] = o.threads;
  j["batch"] = o.batch;
  j["format"] = o.format;
  j["offered_rate"] = o.rate;
  j["mode"] = o.rate > 0 ? "open" : "closed";
  j["partitions"] = o.partitions;
  j["skew"] = o.skew;
  j["mix"] = o.mix;
  j["route_groups"] = o.route_groups;
  j["trade_prefix"] = o.trade_prefix;
  j["elapsed_s"] = elapsed;
  j["requests_sent"] = s.requests_sent;
  j["events_sent"] = s.events_sent;
  j["requests_ok"] = s.requests_ok;
  j["events_ok"] = s.events_ok;
  j["events_failed"] = s.failed_events;
  j["requests_failed"] = s.failed_requests;
  j["unsent_requests"] = s.unsent_requests;
  j["unsent_events"] = s.unsent_events;
  j["attempts"] = s.attempts;
  j["retries"] = s.retries;
  j["events_per_s"] = static_cast<double>(s.events_ok) / elapsed;
  j["requests_per_s"] = static_cast<double>(s.requests_ok) / elapsed;
  // The latency figures, computed once for the JSON and the human summary.
  const double p50 = percentile_ms(s.latency_ns, 0.50), p90 = percentile_ms(s.latency_ns, 0.90),
               p99 = percentile_ms(s.latency_ns, 0.99), p99_9 = percentile_ms(s.latency_ns, 0.999),
               max = s.latency_ns.empty() ? 0.0 : static_cast<double>(s.latency_ns.back()) / 1e6;
  j["latency_ms"] = {{"p50", p50}, {"p90", p90},   {"p99", p99},
                     {"p99_9", p99_9}, {"max", max}, {"mean", mean}};
  j["outcomes"] = s.outcomes;
  j["errors"] = s.errors;
  j["accepted_log_ok"] = log_ok;
  // The client's own CPU time, to tell whether the generator limited the run.
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  const double client_cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                            static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  j["client_cpu_s"] = client_cpu;

  std::FILE* human = o.json ? stderr : stdout;
  std::string outcomes, errors;
  for (auto& [k, v] : s.outcomes) outcomes += " " + k + " " + with_commas(static_cast<double>(v));
  for (auto& [k, v] : s.errors) errors += " " + k + " " + with_commas(static_cast<double>(v));
  std::fprintf(
      human,
      "tradecapture-load: %zu server(s), %zu connection(s), %zu thread(s), batch %zu (%s), "
      "%s\n",
      targets.size(), o.connections, o.threads, o.batch, o.format.c_str(),
      o.rate > 0 ? ("open loop at " + with_commas(o.rate) + " events/s").c_str() : "closed loop");
  std::fprintf(human, "  events:     %s sent, %s with an outcome, %s failed (outcome unknown)",
               with_commas(static_cast<double>(s.events_sent)).c_str(),
               with_commas(static_cast<double>(s.events_ok)).c_str(),
               with_commas(static_cast<double>(s.failed_events)).c_str());
  if (s.unsent_events > 0)
    std::fprintf(human, ", %s never sent (the server fell behind the offered rate)",
                 with_commas(static_cast<double>(s.unsent_events)).c_str());
  std::fprintf(human, "\n  outcomes:  %s\n", outcomes.empty() ? " none" : outcomes.c_str());
  std::fprintf(human, "  throughput: %s events/s, %s requests/s over %.2f s\n",
               with_commas(static_cast<double>(s.events_ok) / elapsed).c_str(),
               with_commas(static_cast<double>(s.requests_ok) / elapsed).c_str(), elapsed);
  std::fprintf(human,
               "  latency per request (%s): p50 %.2f ms, p90 %.2f, p99 %.2f, p99.9 %.2f, max "
               "%.2f, mean %.2f\n",
               o.rate > 0 ? "from the intended send time" : "from the send",
               p50, p90, p99, p99_9, max, mean);
  std::fprintf(human, "  client CPU: %.2f s (%.0f%% of one core)\n", client_cpu,
               100.0 * client_cpu / elapsed);
  std::fprintf(human, "  retries: %s; failed attempts by kind:%s\n",
               with_commas(static_cast<double>(s.retries)).c_str(),
               errors.empty() ? " none" : errors.c_str());
  if (!log_ok) std::fprintf(stderr, "tradecapture-load: writing --accepted-log failed\n");
  if (o.json) std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
  bool ok = s.failed_events == 0 && s.events_ok > 0 && log_ok && !g_abort;
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace tradecapture::load

int main(int argc, char** argv) {
  using namespace tradecapture::load;
  Options o;
  CLI::App app{
      "tradecapture-load: HTTP load generator for `tradecapture serve` (POST /v1/trades)\n"
      "Sends generated trade events over keep-alive connections and reports throughput,\n"
      "per-request latency percentiles, outcomes and errors.",
      "tradecapture-load"};
  app.set_version_flag(
      "--version",
      tradecapture::cli::version_line("tradecapture-load") + "\nlibraries: Boost " +
          std::to_string(BOOST_VERSION / 100000) + "." + std::to_string(BOOST_VERSION / 100 % 1000) +
          " (Beast), CLI11 " CLI11_VERSION,
      "print the version and exit");
  app.add_option("--url", o.urls,
                 "server base URL, http://HOST:PORT (repeat it or give a comma-separated list; "
                 "connections are spread round-robin and move to the next URL after a "
                 "connection error)")
      ->delimiter(',');
  app.add_option("-c,--connections", o.connections,
                 "keep-alive connections (one request in "
                 "flight on each)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("-r,--rate", o.rate,
                 "offered load in events/s; 0 = closed loop, each connection sends its next "
                 "request as soon as it has the answer. With a rate, requests follow a fixed "
                 "schedule (open loop) and latency runs from each request's intended send time")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("-b,--batch", o.batch, "events per POST (1 = a single JSON object per POST)")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("-p,--partitions", o.partitions, "distinct (account, book, security) partitions")
      ->check(CLI::Range(1, 10000000))
      ->capture_default_str();
  app.add_option("--skew", o.skew,
                 "partition skew: S or zipf:S (weight of the k-th partition 1/k^S; 0 = "
                 "uniform), or hot:F:W (a fraction F of the partitions gets a share W of the "
                 "events)")
      ->capture_default_str();
  app.add_option("-d,--duration", o.duration,
                 "seconds of sending (default 10, or no limit when --events is given)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("-n,--events", o.events,
                 "events to send in all (0 = no limit); with --duration, whichever comes first")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the event generator")->capture_default_str();
  app.add_option("--trade-prefix", o.trade_prefix,
                 "trade_id prefix, so that runs never collide (default: L<ms-clock-hex>-<pid>-); "
                 "trade ids are PREFIX<thread>-<n>");
  app.add_option("--mix", o.mix,
                 "NEW:AMEND:CANCEL weights. AMEND/CANCEL only target live trades whose last "
                 "event the server confirmed, so a correct server accepts them")
      ->capture_default_str();
  app.add_option("--format", o.format, "request body: json (an object or an array) or ndjson")
      ->check(CLI::IsMember({"json", "ndjson"}))
      ->capture_default_str();
  app.add_option("-t,--threads", o.threads, "client I/O threads (each with its own connections)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--max-retries", o.max_retries,
                 "re-sends of one request (after a 5xx/429 answer or a connection error) "
                 "before its events count as failed")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  app.add_option("--timeout", o.timeout, "seconds to wait for one answer before retrying")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max-backoff", o.max_backoff,
                 "longest pause between retries in seconds (exponential from 5 ms, jittered; "
                 "Retry-After honoured up to this)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--drain-timeout", o.drain_timeout,
                 "seconds to wait for requests in flight after sending stops")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--progress", o.progress,
                 "seconds between progress lines on stderr (0 = none; default 1 on a terminal, "
                 "10 otherwise)");
  app.add_option("--accepted-log", o.accepted_log,
                 "write one JSON line per event the client saw ACCEPTED: trade_id, version, "
                 "type, account, book, security, seq");
  app.add_flag("--json", o.json,
               "print the summary as one JSON object on stdout (the human summary goes to "
               "stderr)");
  app.add_option("--route-groups", o.route_groups,
                 "0 = off. G > 0: partition p belongs to group p % G, every request carries the "
                 "events of one group only and names it in --route-header, so that a load "
                 "balancer can send a group always to the same server (partition affinity, e.g. "
                 "nginx 'hash $http_x_route_key consistent')")
      ->capture_default_str();
  app.add_option("--route-header", o.route_header, "header that carries the group")
      ->capture_default_str();
  app.add_option("--dump", o.dump,
                 "print the first N generated events as JSON lines (as if all were accepted) "
                 "and exit, without a server");
  app.footer(
      "Decimals are written in plain notation from integers (quantity 0.01..10000, price "
      "1..1000).\n"
      "Exit status: 0 when every event sent got an outcome, 1 when some did not (gave up after "
      "retries,\nbad answers, or interrupted twice), 64 (EX_USAGE) on a usage error (bad flag, "
      "URL or port).\nCtrl-C stops sending and waits for the requests in flight; a second "
      "Ctrl-C gives up on them.\n"
      "Example: tradecapture-load --url http://127.0.0.1:8080 -c 8 -b 100 -r 20000 -d 30");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : exit_usage;
  }
  try {
    return run(o);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "tradecapture-load: %s\n", e.what());
    return exit_usage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tradecapture-load: %s\n", e.what());
    return 1;
  }
}
