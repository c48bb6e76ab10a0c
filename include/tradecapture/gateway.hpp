#pragma once
/// \file gateway.hpp
/// The gateway of spec section 5 without a transport: a neutral request in, a neutral response
/// out. Routing, bearer-token authentication, the body of `POST /v1/trades` parsed into events
/// (`parse_request_body`), whole-request admission (`Pipeline::try_reserve`), submission
/// (`Pipeline::async_submit_batch`) and the JSON of every answer. An HTTP server (the
/// `tradecapture::http` component, or any other) only copies fields in and out; `tradecapture
/// serve` is such an adapter, and tests drive a `Gateway` without a socket.

#include <tradecapture/partition_lock.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/trade_store.hpp>

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <spdlog/fwd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tradecapture {

/// One request as the transport received it. Header fields are their raw values; a field that
/// may repeat is a list of every occurrence, in order.
struct GatewayRequest {
  /// "GET", "POST", ...; "HEAD" is handled as "GET" (the transport sends the answer without its
  /// body, `Content-Length` unchanged).
  std::string method;
  /// The request target in origin form: the path and an optional `?query`, percent-encoded.
  std::string target;
  std::string content_type;                   ///< `Content-Type`; empty when absent
  std::vector<std::string> content_encoding;  ///< every `Content-Encoding` field
  std::string authorization;                  ///< `Authorization`; empty when absent
  std::vector<std::string> deadline_ms;       ///< every `X-Request-Deadline-Ms` field
  std::string body;                           ///< the whole body (empty in `check`)
  /// When the first byte of the request arrived (the request deadline runs from it); unset
  /// means when `async_handle` is called.
  std::optional<std::chrono::steady_clock::time_point> arrival;
};

/// One answer. `headers` are the fields beyond `Content-Type` and the transport's own
/// (`Content-Length`, `Connection`), in order: `Retry-After` on every 503, `Allow` on 405,
/// `WWW-Authenticate` on 401, `Accept-Encoding` on the 415 of a content coding.
struct GatewayResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  /// The value of the extra header `name` (exact spelling), or nothing.
  std::optional<std::string_view> header(std::string_view name) const;
};

/// A JSON error answer `{"error": "<reason>"}` (the error format of every endpoint).
GatewayResponse gateway_error(unsigned status, std::string_view reason);
/// `GET /health/live`: 200 `{"status": "live"}`.
GatewayResponse health_live();
/// `GET /health/ready`: 503 `{"status": "draining"}` while `draining`; else a `ping()` of the
/// store and of the lock (none when null): 200 `{"status": "ready"}` when they answer, else 503
/// with `Retry-After` naming what fails. Blocks for the pings.
GatewayResponse health_ready(TradeStore& store, PartitionLock* lock, bool draining);

/// What a `Gateway` did, since it was built.
struct GatewayStats {
  std::uint64_t trade_requests = 0;      ///< POST /v1/trades answered after submission (200/503)
  std::uint64_t rejected_at_parse = 0;   ///< events answered REJECTED without the pipeline
  std::uint64_t overload_refusals = 0;   ///< POST /v1/trades refused whole by `try_reserve`
  std::uint64_t deadline_failures = 0;   ///< POST /v1/trades answered 503 after a withdrawal
};

/// Configuration of a `Gateway`.
struct GatewayOptions {
  /// Where blocking work runs: store reads, health pings, `metrics`, the parsing of a
  /// `POST /v1/trades` body over 4 KiB and the answer of one over 16 events. Required; never a
  /// transport's I/O threads. (A smaller body is parsed and submitted on the thread that calls
  /// `async_handle`, and a small answer built on the pipeline thread that completes it: each a
  /// few microseconds, less than a hand-off. Neither blocks.)
  boost::asio::any_io_executor executor;
  /// The bearer token every path but `/health/live` and `/health/ready` requires (compared in
  /// constant time); empty means no authentication.
  std::string token;
  /// The deadline of every event of a `POST /v1/trades`, from the request's arrival; the
  /// request's `X-Request-Deadline-Ms` may shorten it.
  std::chrono::milliseconds request_deadline{20000};
  /// True while the host drains (`/health/ready` answers 503 `draining`); none means never.
  std::function<bool()> draining;
  /// The answer of `GET /metrics` (the host's exposition; runs on `executor`); none means 404.
  std::function<GatewayResponse()> metrics;
  /// Where the gateway logs (rate-limited warnings); null means spdlog's default logger.
  std::shared_ptr<spdlog::logger> logger;
};

namespace detail {
/// The type-erased completion of `Gateway::async_handle`.
struct GatewayOp {
  GatewayOp() = default;
  virtual ~GatewayOp() = default;
  GatewayOp(const GatewayOp&) = delete;
  GatewayOp& operator=(const GatewayOp&) = delete;
  /// Delivers the answer exactly once; consumes the op.
  virtual void complete(GatewayResponse response) = 0;
};

template <class Handler>
struct GatewayOpImpl final : GatewayOp {
  using tracked_executor = std::decay_t<decltype(boost::asio::prefer(
      std::declval<boost::asio::associated_executor_t<Handler>>(),
      boost::asio::execution::outstanding_work.tracked))>;
  explicit GatewayOpImpl(Handler h)
      : work_(boost::asio::prefer(boost::asio::get_associated_executor(h),
                                  boost::asio::execution::outstanding_work.tracked)),
        handler_(std::move(h)) {}
  void complete(GatewayResponse response) override {
    auto work = std::move(work_);
    auto handler = std::move(handler_);
    delete this;
    boost::asio::dispatch(work, [h = std::move(handler), r = std::move(response)]() mutable {
      std::move(h)(std::move(r));
    });
  }

 private:
  tracked_executor work_;
  Handler handler_;
};
}  // namespace detail

/// The gateway of spec section 5 over one pipeline and its store, independent of the transport.
///
/// | request | answer |
/// | --- | --- |
/// | `POST /v1/trades` | `200 {"outcomes": [...]}`, one `--outcomes` object per event in request order |
/// | `GET /v1/positions` | `200 {"positions": [...]}`; filters `?account=&book=&security=` |
/// | `GET /v1/trades/{id}` | `200 {"trade_id", "events": [...]}`, or 404 |
/// | `GET /health/live`, `/health/ready` | 200, or 503 (ready: store/lock down, draining) |
/// | `GET /metrics` | `GatewayOptions::metrics` |
///
/// Errors: 400 (a JSON body that is not JSON, a bad query, trade id encoding or deadline header),
/// 401 (token), 404 (unknown path; a trailing slash names the `canonical_path`), 405 (`Allow`),
/// 415 (`Content-Type`, `Content-Encoding`), 503 + `Retry-After` (the request does not fit under
/// the pipeline's `max_in_flight`: refused whole by `try_reserve`; some event got no outcome;
/// the store unreadable). Limits of the transport itself (413, 431, connections, body memory)
/// are the transport's.
///
/// Thread-safety: every method may be called from any thread; the gateway must outlive every
/// request it was given (`async_handle` completes before the pipeline is stopped if the host
/// stops it after its transport).
class Gateway {
 public:
  Gateway(Pipeline& pipeline, std::shared_ptr<TradeStore> store,
          std::shared_ptr<PartitionLock> lock, GatewayOptions options);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  /// The checks that need only the header (no body; never blocks, fit for an I/O thread):
  /// route, authentication, method, content coding and type, the deadline header. An answer
  /// refuses the request (its body need not be read); nothing means read the body and call
  /// `async_handle`.
  std::optional<GatewayResponse> check(const GatewayRequest& request) const;

  /// Handles a whole request (`check` included). The completion signature is
  /// `void(GatewayResponse)`: every request gets exactly one answer; for `POST /v1/trades`
  /// once every event has its durable outcome, or is known to have none. Callbacks,
  /// `use_future` and `use_awaitable` work; the completion runs on its associated executor
  /// (a plain callback: on the gateway's executor or a pipeline thread).
  template <class CompletionToken>
  auto async_handle(GatewayRequest request, CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(GatewayResponse)>(
        [this](auto handler, GatewayRequest req) {
          using H = std::decay_t<decltype(handler)>;
          handle_(std::move(req), std::make_unique<detail::GatewayOpImpl<H>>(std::move(handler)));
        },
        token, std::move(request));
  }

  /// A copy of the counters.
  GatewayStats stats() const;

 private:
  void handle_(GatewayRequest request, std::unique_ptr<detail::GatewayOp> op);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tradecapture
