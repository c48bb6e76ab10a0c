// The pipeline's pool of SubmitOp blocks (submit_op.hpp): see OpPool.

#include <tradecapture/detail/submit_op.hpp>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

namespace tradecapture::detail {

/// Fixed-size blocks for SubmitOps, recycled from one submission to the next.
///
/// Submitting threads take blocks, the shards (and submitters completing an op at once) give
/// them back. Giving back is one lock-free push onto `returned_` (a Treiber stack that is only
/// ever pushed to, or emptied whole, so it has no ABA problem); taking is under a mutex, from a
/// private list that is refilled by emptying `returned_` in one exchange, or by a new chunk of
/// blocks when nothing came back. The pool keeps what it allocated until it is destroyed: its
/// size follows the peak of submissions in flight (at most `max_in_flight` blocks per pipeline,
/// plus a chunk). Each chunk is as large as all the earlier ones together (64 blocks at first,
/// 2,048 at most), so a pool that grows to its working size allocates a few dozen times, and a
/// new peak of a few thousand ops allocates once or twice, not once every 64.
class OpPool {
 public:
  OpPool() = default;
  OpPool(const OpPool&) = delete;
  OpPool& operator=(const OpPool&) = delete;

  void* allocate() {
    std::lock_guard lk(mu_);
    if (local_ == nullptr) local_ = returned_.exchange(nullptr, std::memory_order_acquire);
    if (local_ == nullptr) grow_();
    Block* b = local_;
    local_ = b->next;
    return b;
  }

  void free(void* p) noexcept {
    Block* b = ::new (p) Block{returned_.load(std::memory_order_relaxed)};
    while (!returned_.compare_exchange_weak(b->next, b, std::memory_order_release,
                                            std::memory_order_relaxed)) {
    }
  }

 private:
  struct Block {
    Block* next;
  };
  static constexpr std::size_t first_chunk_blocks = 64, max_chunk_blocks = 2048;

  struct alignas(op_block_align) Storage {
    std::byte bytes[op_block_size];
  };

  /// Called with mu_ held and local_ empty.
  void grow_() {
    const std::size_t n = std::clamp(blocks_, first_chunk_blocks, max_chunk_blocks);
    chunks_.reserve(chunks_.size() + 1);  // so that the push_back below cannot throw
    std::unique_ptr<Storage[]> chunk(new Storage[n]);  // default-initialised: not zeroed
    for (std::size_t i = n; i-- > 0;)
      local_ = ::new (static_cast<void*>(chunk[i].bytes)) Block{local_};
    chunks_.push_back(std::move(chunk));
    blocks_ += n;
  }

  std::mutex mu_;
  Block* local_ = nullptr;                          // guarded by mu_
  std::vector<std::unique_ptr<Storage[]>> chunks_;  // guarded by mu_
  std::size_t blocks_ = 0;                          // in all chunks; guarded by mu_
  std::atomic<Block*> returned_{nullptr};
};

OpPool* make_op_pool() { return new OpPool(); }

void destroy_op_pool(OpPool* pool) noexcept { delete pool; }

void* op_pool_allocate(OpPool& pool) { return pool.allocate(); }

void op_pool_free(OpPool& pool, void* block) noexcept { pool.free(block); }

}  // namespace tradecapture::detail
