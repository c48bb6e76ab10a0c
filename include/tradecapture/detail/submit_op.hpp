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
#include <new>
#include <vector>

namespace tradecapture::detail {

/// The pipeline's recycled memory for SubmitOps (defined in the core library): blocks of
/// `op_block_size` bytes, so that a steady stream of submissions allocates nothing. Any thread
/// may allocate and free.
class OpPool;
inline constexpr std::size_t op_block_size = 512;
inline constexpr std::size_t op_block_align = 16;
OpPool* make_op_pool();
void destroy_op_pool(OpPool* pool) noexcept;
/// A block of `op_block_size` bytes aligned to `op_block_align`; throws std::bad_alloc.
void* op_pool_allocate(OpPool& pool);
/// Gives back a block of `pool` (the object in it destroyed).
void op_pool_free(OpPool& pool, void* block) noexcept;

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
  explicit SubmitOp(TradeEvent&& e);
  virtual ~SubmitOp() = default;
  SubmitOp(const SubmitOp&) = delete;
  SubmitOp& operator=(const SubmitOp&) = delete;
  /// Delivers the result exactly once; consumes the op.
  virtual void complete(boost::system::error_code ec, Outcome outcome) = 0;
  /// Destroys the op without completing it, and frees its memory (wherever it came from).
  virtual void destroy() noexcept { delete this; }
};

/// Destroys a SubmitOp that was never completed (SubmitOp::destroy).
struct SubmitOpDeleter {
  void operator()(SubmitOp* op) const noexcept { op->destroy(); }
};
using SubmitOpPtr = std::unique_ptr<SubmitOp, SubmitOpDeleter>;

/// A SubmitOp holding an Asio completion handler; the handler runs on its associated executor.
template <class Handler>
struct SubmitOpImpl final : SubmitOp {
  using executor_type = boost::asio::associated_executor_t<Handler>;
  using tracked_executor =
      std::decay_t<decltype(boost::asio::prefer(std::declval<executor_type>(),
                                                boost::asio::execution::outstanding_work.tracked))>;
  /// The op for `e` and `h`: in a block of `pool` when it fits (and `pool` is not null), else
  /// on the heap.
  static SubmitOpPtr make(OpPool* pool, TradeEvent&& e, Handler&& h) {
    if constexpr (sizeof(SubmitOpImpl) <= op_block_size &&
                  alignof(SubmitOpImpl) <= op_block_align) {
      if (pool != nullptr) {
        void* block = op_pool_allocate(*pool);
        try {
          return SubmitOpPtr(::new (block) SubmitOpImpl(pool, std::move(e), std::move(h)));
        } catch (...) {
          op_pool_free(*pool, block);
          throw;
        }
      }
    }
    return SubmitOpPtr(new SubmitOpImpl(nullptr, std::move(e), std::move(h)));
  }

  void complete(boost::system::error_code ec, Outcome outcome) override {
    auto work = std::move(work_);
    auto handler = std::move(handler_);
    destroy();
    boost::asio::dispatch(work, [h = std::move(handler), ec, o = std::move(outcome)]() mutable {
      std::move(h)(ec, std::move(o));
    });
  }

  void destroy() noexcept override {
    if (OpPool* pool = pool_) {
      this->~SubmitOpImpl();
      op_pool_free(*pool, this);
    } else {
      delete this;
    }
  }

 private:
  SubmitOpImpl(OpPool* pool, TradeEvent&& e, Handler&& h)
      : SubmitOp(std::move(e)),
        pool_(pool),
        work_(boost::asio::prefer(boost::asio::get_associated_executor(h),
                                  boost::asio::execution::outstanding_work.tracked)),
        handler_(std::move(h)) {}

  OpPool* pool_;  ///< where its memory comes from; null: the heap
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
