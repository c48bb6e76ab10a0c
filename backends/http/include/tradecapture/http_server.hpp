#pragma once
/// \file http_server.hpp
/// A small HTTP/1.1 server on Boost.Beast (component `tradecapture::http`; the gateway
/// `tradecapture serve` and `consume --metrics-listen` run on it): keep-alive, pipelined requests
/// answered in order, size limits, idle/read/write timeouts, a connection limit, a global bound
/// on request-body memory and a graceful shutdown. It knows nothing of trades: an `HttpHandler`
/// does, so a trading gateway can put its own routes behind it, or the library's transport-free
/// gateway of spec section 5 (`tradecapture::Gateway`, `<tradecapture/gateway.hpp>`: what
/// `tradecapture serve` adapts to this server).

#include <tradecapture/metrics.hpp>

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <spdlog/fwd.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tradecapture::http {

namespace beast_http = boost::beast::http;
/// A request with its whole body.
using HttpRequest = beast_http::request<beast_http::string_body>;
/// A response with its whole body.
using HttpResponse = beast_http::response<beast_http::string_body>;
/// A request's header (what `HttpHandler::check_header` sees).
using HttpRequestHeader = beast_http::request_header<>;

/// Limits and timeouts of the server.
struct HttpServerOptions {
  boost::asio::ip::tcp::endpoint listen;
  /// Open connections, at most; one more is answered 503 and closed.
  std::size_t max_connections = 1024;
  /// Request body size, at most (413 beyond).
  std::uint64_t max_body_bytes = std::uint64_t{64} << 20;
  /// Bytes of request bodies held across all connections, at most: a body counts from the moment
  /// its size is known (Content-Length, or each chunk header of a chunked body) until its
  /// response is written. A request whose body does not fit is answered 503 with `Retry-After`
  /// and the connection is closed (a chunked body may be refused part-way).
  std::uint64_t max_bodies_bytes = std::uint64_t{256} << 20;
  /// Request line and header fields, at most (431 beyond).
  std::uint32_t max_header_bytes = 16 * 1024;
  /// How long a connection may wait for the first byte of its next request.
  std::chrono::milliseconds idle_timeout{60000};
  /// How long reading one request may take, from its first byte to its last.
  std::chrono::milliseconds read_timeout{30000};
  /// How long writing one response may take.
  std::chrono::milliseconds write_timeout{30000};
  /// `Retry-After` seconds of the server's own 503 answers (draining, too many connections).
  unsigned retry_after_seconds = 1;
};

/// The server's counters (for /metrics).
struct HttpStats {
  /// Responses written, by status code (only codes with a non-zero count), ascending.
  std::vector<std::pair<unsigned, std::uint64_t>> responses_by_code;
  std::uint64_t connections_active = 0;     ///< open connections now
  std::uint64_t connections_accepted = 0;   ///< connections accepted since start
  std::uint64_t connections_refused = 0;    ///< connections refused (max_connections)
  std::uint64_t memory_refusals = 0;        ///< requests refused 503 by max_bodies_bytes
  std::uint64_t bodies_bytes = 0;           ///< request body bytes held now (max_bodies_bytes)
  Histogram::Snapshot request_duration_us;  ///< first byte of a request to its response written
};

/// The application behind an `HttpServer`.
///
/// Both methods run on a connection's strand, on an I/O thread: they must not block (post store
/// calls and other slow work elsewhere).
class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  /// Called once a request's header has been read, before its body: a response that refuses the
  /// request (404, 401, 405, 415...; the body is then not read and the connection is closed),
  /// or nothing to read the body and call `handle`.
  virtual std::optional<HttpResponse> check_header(const HttpRequestHeader& header) = 0;
  /// Handles a complete request. `respond` must be called exactly once, from any thread.
  virtual void handle(HttpRequest request, std::function<void(HttpResponse)> respond) = 0;
  /// What the server calls: `handle` with the time the request's first byte arrived (for
  /// per-request deadlines). The default ignores the time and calls `handle`.
  virtual void handle_at(HttpRequest request, std::chrono::steady_clock::time_point arrival,
                         std::function<void(HttpResponse)> respond) {
    (void)arrival;
    handle(std::move(request), std::move(respond));
  }
};

/// A JSON response: `body` with Content-Type application/json.
HttpResponse make_json_response(beast_http::status status, std::string body);

/// A JSON error response `{"error": "<reason>"}` for `request_version` (11 for HTTP/1.1).
HttpResponse make_error_response(beast_http::status status, std::string_view reason,
                                 unsigned request_version = 11);

/// An HTTP/1.1 server.
///
/// Each connection runs on its own strand of the io_context: it reads one request (waiting at
/// most `idle_timeout` for its first byte, then at most `read_timeout` for the whole request),
/// hands it to the handler, writes the response, and only then reads the next one, so pipelined
/// requests are answered in order. Errors the server detects itself are answered and the
/// connection is closed: 400 (malformed HTTP), 413 (body too large), 431 (header too large),
/// 503 (draining, too many connections, request bodies over `max_bodies_bytes`). A `HEAD` request
/// reaches the handler as a `GET`; its response is sent without the body (same status and
/// headers, `Content-Length` included: RFC 9110 section 9.3.2).
///
/// Thread-safety: every method may be called from any thread. The handler must outlive the
/// io_context's threads.
class HttpServer {
 public:
  HttpServer(boost::asio::io_context& ioc, HttpServerOptions options, HttpHandler& handler,
             std::shared_ptr<spdlog::logger> logger);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds and listens; returns the bound endpoint (port 0 picks a free port). Throws
  /// `std::system_error` naming the endpoint and the step (open, bind, listen) that failed.
  boost::asio::ip::tcp::endpoint listen();
  /// Starts accepting connections (after `listen`).
  void start();
  /// Starts the drain: stops accepting, closes idle connections, answers requests read from now
  /// on with 503 (`Connection: close`), and closes every connection after its current response.
  /// `on_idle` runs once no connection is left, on the thread that closes the last one (or here
  /// when there is none); it must be cheap and must not call back into the server.
  void shutdown(std::function<void()> on_idle);
  /// True once `shutdown` was called.
  bool draining() const noexcept;
  /// Closes every connection now, whatever it is doing.
  void abort();
  /// A copy of the counters.
  HttpStats stats() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace tradecapture::http
