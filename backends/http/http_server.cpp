// The HTTP/1.1 server of tradecapture::http (`tradecapture serve` runs on it): Boost.Beast, one
// strand per connection.

#include <tradecapture/http_server.hpp>

#include <tradecapture/event_codec.hpp>

#include <spdlog/spdlog.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <array>
#include <atomic>
#include <mutex>
#include <string>
#include <system_error>
#include <unordered_map>

namespace tradecapture::http {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

/// How long a closing connection keeps reading (and discarding) what the client still sends,
/// so that the kernel does not reset the connection before the client has read our answer.
constexpr std::chrono::milliseconds linger_time{2000};

}  // namespace

class Session;

struct HttpServer::State {
  State(asio::io_context& io, HttpServerOptions o, HttpHandler& h,
        std::shared_ptr<spdlog::logger> log)
      : ioc(io),
        options(std::move(o)),
        handler(h),
        logger(std::move(log)),
        acceptor(asio::make_strand(io)),
        retry_timer(acceptor.get_executor()) {}

  asio::io_context& ioc;
  const HttpServerOptions options;
  HttpHandler& handler;
  const std::shared_ptr<spdlog::logger> logger;
  tcp::acceptor acceptor;          // used on its own strand
  asio::steady_timer retry_timer;  // re-arms accept after a failure (EMFILE...)
  std::atomic<bool> draining{false};

  std::mutex mutex;  // guards sessions and on_idle
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  std::function<void()> on_idle;

  std::array<std::atomic<std::uint64_t>, 600> responses{};
  std::atomic<std::uint64_t> active{0};
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> refused{0};
  std::atomic<std::uint64_t> memory_refusals{0};
  std::atomic<std::uint64_t> bodies_bytes{0};  // request body bytes held (max_bodies_bytes)
  Histogram duration_us;

  /// Reserves `n` bytes of request bodies; false (nothing reserved) when they do not fit.
  bool reserve_body(std::uint64_t n) noexcept {
    std::uint64_t cur = bodies_bytes.load(std::memory_order_relaxed);
    for (;;) {
      if (n > options.max_bodies_bytes || cur > options.max_bodies_bytes - n) return false;
      if (bodies_bytes.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed)) return true;
    }
  }
  void release_body(std::uint64_t n) noexcept {
    if (n != 0) bodies_bytes.fetch_sub(n, std::memory_order_relaxed);
  }

  void count_response(unsigned code) noexcept {
    if (code < responses.size()) responses[code].fetch_add(1, std::memory_order_relaxed);
  }
};

HttpResponse make_json_response(http::status status, std::string body) {
  HttpResponse res{status, 11};
  res.set(http::field::content_type, "application/json");
  res.body() = std::move(body);
  return res;
}

HttpResponse make_error_response(http::status status, std::string_view reason,
                                 unsigned request_version) {
  HttpResponse res{status, request_version};
  res.set(http::field::content_type, "application/json");
  std::string body = "{\"error\": ";
  append_json_string(body, reason);
  body += "}\n";
  res.body() = std::move(body);
  return res;
}

namespace {

HttpResponse unavailable(std::string_view reason, unsigned retry_after, unsigned version) {
  HttpResponse res = make_error_response(http::status::service_unavailable, reason, version);
  res.set(http::field::retry_after, std::to_string(retry_after));
  return res;
}

}  // namespace

/// One connection: read a request, hand it over, write the response, repeat.
class Session : public std::enable_shared_from_this<Session> {
 public:
  /// `counted`: a real connection (registered, in the connection count); otherwise the
  /// connection is only answered 503 and closed (over the connection limit).
  Session(std::shared_ptr<HttpServer::State> st, tcp::socket&& socket, bool counted)
      : st_(std::move(st)), stream_(std::move(socket)), counted_(counted) {
    if (counted_) st_->active.fetch_add(1, std::memory_order_relaxed);
  }

  ~Session() {
    release_body_();
    if (!counted_) return;
    std::function<void()> idle;
    {
      std::lock_guard lock(st_->mutex);
      st_->sessions.erase(this);
      if (st_->draining.load() && st_->sessions.empty() && st_->on_idle)
        idle = std::exchange(st_->on_idle, nullptr);
    }
    st_->active.fetch_sub(1, std::memory_order_relaxed);
    if (idle) idle();
  }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void run() {
    if (counted_) {
      std::lock_guard lock(st_->mutex);
      st_->sessions.emplace(this, weak_from_this());
    }
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      if (!self->counted_) {
        self->write_(unavailable("too many connections", st_retry(*self), 11), true);
        return;
      }
      self->wait_request_();
    });
  }

  /// The server drains: an idle connection closes now, a busy one after its response.
  void drain() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->phase_ != Phase::idle) return;
      // A request that has already arrived is read and answered 503 (Connection: close);
      // closing now would reset the connection under the client.
      if (!self->input_waiting_()) self->stream_.cancel();
    });
  }

  /// Closes the connection now.
  void abort() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->aborted_ = true;
      self->stream_.close();
    });
  }

 private:
  enum class Phase { starting, idle, reading, handling, writing, closing };

  static unsigned st_retry(const Session& s) { return s.st_->options.retry_after_seconds; }

  /// Counts `n` more bytes of this request's body against max_bodies_bytes; false when they do
  /// not fit (then `memory_refused_` is set).
  bool reserve_body_(std::uint64_t n) {
    if (n == 0) return true;
    if (!st_->reserve_body(n)) {
      memory_refused_ = true;
      return false;
    }
    held_ += n;
    return true;
  }
  void release_body_() noexcept {
    st_->release_body(held_);
    held_ = 0;
  }
  /// The 503 of a body that does not fit under max_bodies_bytes; the connection closes.
  void refuse_memory_() {
    st_->memory_refusals.fetch_add(1, std::memory_order_relaxed);
    st_->logger->warn("{}: request refused: request bodies held would exceed {} bytes "
                      "(--max-bodies-bytes)",
                      peer_(), st_->options.max_bodies_bytes);
    refuse_(unavailable("request bodies held by the server would exceed " +
                            std::to_string(st_->options.max_bodies_bytes) +
                            " bytes; retry later",
                        st_retry(*this), version_));
  }

  /// True when the client has sent bytes we have not read yet.
  bool input_waiting_() {
    beast::error_code ec;
    return stream_.socket().available(ec) > 0 && !ec;
  }

  void wait_request_() {
    if (aborted_) return close_now_();
    // Draining: a request already here is still read (and answered 503), otherwise close.
    if (st_->draining.load() && buffer_.size() == 0 && !input_waiting_()) return close_now_();
    phase_ = Phase::idle;
    if (buffer_.size() > 0) return read_header_();  // a pipelined request is already here
    stream_.expires_after(st_->options.idle_timeout);
    stream_.async_read_some(
        buffer_.prepare(16 * 1024),
        beast::bind_front_handler(&Session::on_first_bytes_, shared_from_this()));
  }

  void on_first_bytes_(beast::error_code ec, std::size_t n) {
    if (ec) {
      if (ec == beast::error::timeout) st_->logger->debug("{}: idle timeout", peer_());
      return close_now_();
    }
    buffer_.commit(n);
    read_header_();
  }

  void read_header_() {
    phase_ = Phase::reading;
    started_ = Clock::now();
    head_ = false;
    parser_.emplace();
    memory_refused_ = false;
    parser_->body_limit(st_->options.max_body_bytes);
    parser_->header_limit(st_->options.max_header_bytes);
    // One deadline for the whole request, header and body.
    stream_.expires_after(st_->options.read_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::on_header_, shared_from_this()));
  }

  /// Handles a read error; true when there was one (the connection is then answered or closed).
  bool read_failed_(beast::error_code ec) {
    if (!ec) return false;
    const unsigned version = 11;
    if (memory_refused_) {
      refuse_memory_();  // a chunk did not fit under max_bodies_bytes
    } else if (ec == beast::error::timeout) {
      st_->logger->info("{}: request not read within {} ms; connection closed", peer_(),
                        st_->options.read_timeout.count());
      close_now_();
    } else if (ec == http::error::header_limit) {
      refuse_(make_error_response(
          http::status::request_header_fields_too_large,
          "request header larger than " + std::to_string(st_->options.max_header_bytes) + " bytes",
          version));
    } else if (ec == http::error::body_limit) {
      refuse_(make_error_response(
          http::status::payload_too_large,
          "request body larger than " + std::to_string(st_->options.max_body_bytes) + " bytes",
          version));
    } else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      refuse_(make_error_response(http::status::bad_request,
                                  "malformed HTTP request: " + ec.message(), version));
    } else {
      close_now_();  // end of stream, reset, aborted: nobody to answer
    }
    return true;
  }

  void on_header_(beast::error_code ec, std::size_t) {
    if (read_failed_(ec)) return;
    // HEAD (RFC 9110 9.3.2): the handler sees a GET; its response goes out without the body
    // (Content-Length stays the GET's). A resource without GET answers HEAD 405 as it would GET.
    if (parser_->get().method() == http::verb::head) {
      head_ = true;
      parser_->get().method(http::verb::get);
    }
    const auto& req = parser_->get();
    if (st_->draining.load())
      return refuse_(unavailable("the server is shutting down", st_retry(*this), req.version()));
    if (auto refusal = st_->handler.check_header(req.base())) {
      // Without a body (a GET, say) the connection stays usable; with an unread body it closes.
      if (parser_->is_done()) {
        keep_alive_ = req.keep_alive();
        version_ = req.version() == 10 ? 10 : 11;
        parser_.reset();
        return write_(std::move(*refusal), false);
      }
      return refuse_(std::move(*refusal));
    }
    // The global bound on request bodies: a known length is reserved whole before the body is
    // read (and before 100-continue), a chunked body chunk by chunk as it arrives.
    version_ = req.version() == 10 ? 10 : 11;
    if (auto len = parser_->content_length(); len && !reserve_body_(*len)) return refuse_memory_();
    if (req.chunked()) {
      chunk_cb_ = [this](std::uint64_t size, beast::string_view, beast::error_code& cec) {
        if (!reserve_body_(size)) cec = asio::error::no_buffer_space;
      };
      parser_->on_chunk_header(chunk_cb_);
    }
    if (beast::iequals(req[http::field::expect], "100-continue") && req.version() >= 11) {
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                     req.version());
      http::async_write(stream_, *cont,
                        [self = shared_from_this(), cont](beast::error_code wec, std::size_t) {
                          if (wec) return self->close_now_();
                          self->read_body_();
                        });
      return;
    }
    read_body_();
  }

  void read_body_() {
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::on_body_, shared_from_this()));
  }

  void on_body_(beast::error_code ec, std::size_t) {
    if (read_failed_(ec)) return;
    HttpRequest req = parser_->release();
    parser_.reset();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    if (st_->draining.load()) {
      return write_(unavailable("the server is shutting down", st_retry(*this), version_), true);
    }
    phase_ = Phase::handling;
    if (st_->logger->should_log(spdlog::level::debug)) {
      method_ = head_ ? std::string("HEAD") : std::string(req.method_string());
      target_ = std::string(req.target());
    }
    st_->handler.handle_at(std::move(req), started_, [self = shared_from_this()](HttpResponse res) {
      asio::post(self->stream_.get_executor(),
                 [self, res = std::move(res)]() mutable { self->write_(std::move(res), false); });
    });
  }

  /// Answers without reading the body, then closes.
  void refuse_(HttpResponse res) {
    keep_alive_ = false;
    if (parser_) version_ = parser_->get().version() == 10 ? 10 : 11;
    write_(std::move(res), true);
  }

  void write_(HttpResponse res, bool close) {
    if (aborted_) return close_now_();
    phase_ = Phase::writing;
    close = close || !keep_alive_ || st_->draining.load();
    res.version(version_);
    res.keep_alive(!close);
    res.prepare_payload();
    if (head_) {
      res.body().clear();  // Content-Length keeps the size of the body a GET would get
      head_ = false;
    }
    close_after_ = close;
    st_->count_response(res.result_int());
    if (!method_.empty()) {
      st_->logger->debug("{}: {} {} -> {} ({} bytes)", peer_(), method_, target_, res.result_int(),
                         res.body().size());
      method_.clear();
    }
    res_ = std::make_shared<HttpResponse>(std::move(res));
    stream_.expires_after(st_->options.write_timeout);
    http::async_write(stream_, *res_,
                      beast::bind_front_handler(&Session::on_write_, shared_from_this()));
  }

  void on_write_(beast::error_code ec, std::size_t) {
    res_.reset();
    release_body_();  // the request's body is no longer held once its response is written
    if (counted_ && started_ != Clock::time_point{}) {
      st_->duration_us.record(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_).count()));
      started_ = {};
    }
    if (ec) {
      if (ec == beast::error::timeout)
        st_->logger->info("{}: response not written within {} ms; connection closed", peer_(),
                          st_->options.write_timeout.count());
      return close_now_();
    }
    if (close_after_) return graceful_close_();
    wait_request_();
  }

  /// Half-closes, then reads and discards what the client still sends until it closes too (or
  /// `linger_time` passes): closing with unread input would make the kernel reset the
  /// connection, which can destroy our answer before the client has read it.
  void graceful_close_() {
    phase_ = Phase::closing;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return close_now_();
    stream_.expires_after(
        std::min<std::chrono::milliseconds>(linger_time, st_->options.read_timeout));
    discard_();
  }

  void discard_() {
    stream_.async_read_some(asio::buffer(scratch_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec || self->aborted_) return self->close_now_();
                              self->discard_();
                            });
  }

  void close_now_() {
    phase_ = Phase::closing;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  std::string peer_() const {
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (ec) return "client";
    return ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  std::shared_ptr<HttpServer::State> st_;
  beast::tcp_stream stream_;
  const bool counted_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<HttpResponse> res_;
  std::array<char, 16 * 1024> scratch_{};
  Phase phase_ = Phase::starting;
  bool keep_alive_ = true;
  bool close_after_ = false;
  bool aborted_ = false;
  bool memory_refused_ = false;  // the current request's body did not fit (max_bodies_bytes)
  bool head_ = false;            // the current request is a HEAD (handled as a GET, no body)
  std::uint64_t held_ = 0;       // bytes of the current request's body counted in bodies_bytes
  std::function<void(std::uint64_t, beast::string_view, beast::error_code&)> chunk_cb_;
  unsigned version_ = 11;
  Clock::time_point started_{};
  std::string method_;  // for the debug log only
  std::string target_;
};

namespace {

void do_accept(const std::shared_ptr<HttpServer::State>& st);

void on_accept(const std::shared_ptr<HttpServer::State>& st, beast::error_code ec,
               tcp::socket socket) {
  if (st->draining.load() || ec == asio::error::operation_aborted) {
    beast::error_code ignored;
    socket.close(ignored);
    return;
  }
  if (ec) {
    // Out of file descriptors and the like: try again shortly instead of spinning.
    st->logger->warn("accept failed: {}", ec.message());
    st->retry_timer.expires_after(std::chrono::milliseconds(100));
    st->retry_timer.async_wait([st](beast::error_code wec) {
      if (!wec) do_accept(st);
    });
    return;
  }
  st->accepted.fetch_add(1, std::memory_order_relaxed);
  const bool over = st->active.load() >= st->options.max_connections;
  if (over) {
    st->refused.fetch_add(1, std::memory_order_relaxed);
    st->logger->warn("connection refused: {} connections open (--max-connections)",
                     st->active.load());
  }
  std::make_shared<Session>(st, std::move(socket), !over)->run();
  do_accept(st);
}

void do_accept(const std::shared_ptr<HttpServer::State>& st) {
  st->acceptor.async_accept(
      asio::make_strand(st->ioc),
      [st](beast::error_code ec, tcp::socket socket) { on_accept(st, ec, std::move(socket)); });
}

}  // namespace

HttpServer::HttpServer(asio::io_context& ioc, HttpServerOptions options, HttpHandler& handler,
                       std::shared_ptr<spdlog::logger> logger)
    : state_(std::make_shared<State>(ioc, std::move(options), handler,
                                     logger ? std::move(logger) : spdlog::default_logger())) {}

HttpServer::~HttpServer() {
  beast::error_code ec;
  state_->acceptor.close(ec);
}

tcp::endpoint HttpServer::listen() {
  auto& a = state_->acceptor;
  const auto& ep = state_->options.listen;
  beast::error_code ec;
  const auto fail = [&](const char* what) {
    throw std::system_error(ec, std::string("cannot listen on ") + ep.address().to_string() +
                                    ":" + std::to_string(ep.port()) + ": " + what);
  };
  a.open(ep.protocol(), ec);
  if (ec) fail("open");
  a.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) fail("SO_REUSEADDR");
  a.bind(ep, ec);
  if (ec) fail("bind");
  a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail("listen");
  auto bound = a.local_endpoint(ec);
  if (ec) fail("local endpoint");
  return bound;
}

void HttpServer::start() {
  asio::dispatch(state_->acceptor.get_executor(), [st = state_] { do_accept(st); });
}

void HttpServer::shutdown(std::function<void()> on_idle) {
  auto& st = *state_;
  if (st.draining.exchange(true)) return;
  asio::post(st.acceptor.get_executor(), [s = state_] {
    beast::error_code ec;
    s->acceptor.close(ec);
    s->retry_timer.cancel();
  });
  std::vector<std::shared_ptr<Session>> live;
  std::function<void()> idle_now;
  {
    std::lock_guard lock(st.mutex);
    for (auto& [p, w] : st.sessions) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
    if (st.sessions.empty()) {
      idle_now = std::move(on_idle);
    } else {
      st.on_idle = std::move(on_idle);
    }
  }
  for (auto& s : live) s->drain();
  live.clear();
  if (idle_now) idle_now();
}

bool HttpServer::draining() const noexcept { return state_->draining.load(); }

void HttpServer::abort() {
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(state_->mutex);
    for (auto& [p, w] : state_->sessions) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) s->abort();
}

HttpStats HttpServer::stats() const {
  const auto& st = *state_;
  HttpStats s;
  for (unsigned code = 0; code < st.responses.size(); ++code) {
    const auto n = st.responses[code].load(std::memory_order_relaxed);
    if (n != 0) s.responses_by_code.emplace_back(code, n);
  }
  s.connections_active = st.active.load(std::memory_order_relaxed);
  s.connections_accepted = st.accepted.load(std::memory_order_relaxed);
  s.connections_refused = st.refused.load(std::memory_order_relaxed);
  s.memory_refusals = st.memory_refusals.load(std::memory_order_relaxed);
  s.bodies_bytes = st.bodies_bytes.load(std::memory_order_relaxed);
  s.request_duration_us = st.duration_us.snapshot();
  return s;
}

}  // namespace tradecapture::http
