#pragma once
// Internal: the type-erased submission that carries an event and its completion handler, and
// the completion of a batch (`Pipeline::async_submit_batch`).

#include <tradecapture/error.hpp>
#include <tradecapture/source_hook.hpp>
#include <tradecapture/types.hpp>

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/system/error_code.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace tradecapture::detail {

/// One submitted event waiting for its outcome. Owned by the pipeline until completed.
struct SubmitOp {
  TradeEvent event;
  std::chrono::steady_clock::time_point submitted;
  SourceRef source;  ///< where it comes from (SubmitOptions::source)
  /// Withdrawn when not decided by then (SubmitOptions::deadline); max() means none.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  /// The pipeline's own bookkeeping of the op (key gate links, order stamp, retries; defined in
  /// src/op_state.hpp), kept in place so that a submission is one allocation. Opaque here.
  alignas(8) std::byte scheduler_state[40];
  /// Takes the event; sets up the pipeline's bookkeeping (defined in the core library).
  explicit SubmitOp(TradeEvent e);
  virtual ~SubmitOp() = default;
  SubmitOp(const SubmitOp&) = delete;
  SubmitOp& operator=(const SubmitOp&) = delete;
  /// Delivers the result exactly once; consumes the op.
  virtual void complete(boost::system::error_code ec, Outcome outcome) = 0;
};

/// A SubmitOp holding an Asio completion handler; the handler runs on its associated executor.
template <class Handler>
struct SubmitOpImpl final : SubmitOp {
  using executor_type = boost::asio::associated_executor_t<Handler>;
  using tracked_executor =
      std::decay_t<decltype(boost::asio::prefer(std::declval<executor_type>(),
                                                boost::asio::execution::outstanding_work.tracked))>;
  SubmitOpImpl(TradeEvent e, Handler h)
      : SubmitOp(std::move(e)),
        work_(boost::asio::prefer(boost::asio::get_associated_executor(h),
                                  boost::asio::execution::outstanding_work.tracked)),
        handler_(std::move(h)) {}

  void complete(boost::system::error_code ec, Outcome outcome) override {
    auto work = std::move(work_);
    auto handler = std::move(handler_);
    delete this;
    boost::asio::dispatch(work, [h = std::move(handler), ec, o = std::move(outcome)]() mutable {
      std::move(h)(ec, std::move(o));
    });
  }

 private:
  tracked_executor work_;
  Handler handler_;
};

/// The completion of one submitted batch; called once, when its last event completed.
struct BatchOp {
  BatchOp() = default;
  virtual ~BatchOp() = default;
  BatchOp(const BatchOp&) = delete;
  BatchOp& operator=(const BatchOp&) = delete;
  /// Delivers the result exactly once; consumes the op.
  virtual void complete(boost::system::error_code ec, std::vector<result<Outcome>> results) = 0;
};

/// A BatchOp holding an Asio completion handler; the handler runs on its associated executor.
template <class Handler>
struct BatchOpImpl final : BatchOp {
  using executor_type = boost::asio::associated_executor_t<Handler>;
  using tracked_executor =
      std::decay_t<decltype(boost::asio::prefer(std::declval<executor_type>(),
                                                boost::asio::execution::outstanding_work.tracked))>;
  explicit BatchOpImpl(Handler h)
      : work_(boost::asio::prefer(boost::asio::get_associated_executor(h),
                                  boost::asio::execution::outstanding_work.tracked)),
        handler_(std::move(h)) {}

  void complete(boost::system::error_code ec, std::vector<result<Outcome>> results) override {
    auto work = std::move(work_);
    auto handler = std::move(handler_);
    delete this;
    boost::asio::dispatch(work, [h = std::move(handler), ec, r = std::move(results)]() mutable {
      std::move(h)(ec, std::move(r));
    });
  }

 private:
  tracked_executor work_;
  Handler handler_;
};

}  // namespace tradecapture::detail
