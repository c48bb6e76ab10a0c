#pragma once
// Internal: the type-erased completion of `Pipeline::async_submit_batch`.

#include <tradecapture/error.hpp>
#include <tradecapture/types.hpp>

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/system/error_code.hpp>

#include <vector>

namespace tradecapture::detail {

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
