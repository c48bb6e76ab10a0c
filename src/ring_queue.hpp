#pragma once
// Internal: a double-ended FIFO in one power-of-two ring that keeps its capacity, for the shard
// core's per-partition queues of ops. A std::deque allocates and frees a 512-byte node every 64
// pointers pushed through it (and two blocks when created); this ring allocates only when it
// grows past the partition's largest backlog so far, so a steady stream allocates nothing.
// Not thread-safe.

#include <array>
#include <bit>
#include <cstddef>
#include <iterator>
#include <utility>
#include <vector>

namespace tradecapture::detail {

/// Spare ring buffers shared by the queues of one owner (RingQueue::use_pool). A queue that
/// empties gives its buffer back (release); a queue that starts or grows takes the smallest spare
/// that is large enough, else allocates. So the buffers follow the backlog of all the queues
/// together, instead of each queue keeping the largest it ever needed and growing at each new
/// largest backlog of its own. Not thread-safe.
template <class T>
class RingPool {
 public:
  /// A buffer of at least `n` slots (`n` a power of two); its slots hold T{}.
  std::vector<T> take(std::size_t n) {
    for (std::size_t k = std::bit_width(n) - 1; k < spares_.size(); ++k) {
      if (spares_[k].empty()) continue;
      std::vector<T> b = std::move(spares_[k].back());
      spares_[k].pop_back();
      return b;
    }
    return std::vector<T>(n);
  }
  /// Keeps `b` (a power of two of slots, each T{}) for a later take.
  void give(std::vector<T>&& b) {
    if (b.empty()) return;
    const std::size_t k = std::bit_width(b.size()) - 1;
    if (k < spares_.size()) spares_[k].push_back(std::move(b));
  }

 private:
  std::array<std::vector<std::vector<T>>, 48> spares_;  // by log2 of the size
};

template <class T>
class RingQueue {
 public:
  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = const T*;
    using reference = const T&;
    const_iterator() = default;
    reference operator*() const noexcept { return q_->at_(i_); }
    pointer operator->() const noexcept { return &q_->at_(i_); }
    const_iterator& operator++() noexcept {
      ++i_;
      return *this;
    }
    const_iterator operator++(int) noexcept {
      const_iterator old = *this;
      ++i_;
      return old;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) noexcept {
      return a.i_ == b.i_;
    }

   private:
    friend class RingQueue;
    const_iterator(const RingQueue* q, std::size_t i) : q_(q), i_(i) {}
    const RingQueue* q_ = nullptr;
    std::size_t i_ = 0;  ///< position from the front
  };

  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }
  /// Slots allocated (0 or a power of two).
  std::size_t capacity() const noexcept { return buf_.size(); }

  T& front() noexcept { return buf_[head_]; }
  const T& front() const noexcept { return buf_[head_]; }

  void push_back(T v) {
    if (size_ == buf_.size()) grow_();
    buf_[(head_ + size_) & (buf_.size() - 1)] = std::move(v);
    ++size_;
  }

  void push_front(T v) {
    if (size_ == buf_.size()) grow_();
    head_ = (head_ + buf_.size() - 1) & (buf_.size() - 1);
    buf_[head_] = std::move(v);
    ++size_;
  }

  void pop_front() noexcept {
    buf_[head_] = T{};
    head_ = (head_ + 1) & (buf_.size() - 1);
    --size_;
  }

  /// Empties the queue; the capacity stays.
  void clear() noexcept {
    while (size_ != 0) pop_front();
    head_ = 0;
  }

  /// Takes its buffers from `pool` and gives them back to it (null: allocates and keeps its
  /// own). The pool must outlive the queue's use of it.
  void use_pool(RingPool<T>* pool) noexcept { pool_ = pool; }

  /// When empty, gives the buffer back to the pool (without a pool, keeps it).
  void release() {
    if (pool_ == nullptr || size_ != 0 || buf_.empty()) return;
    pool_->give(std::move(buf_));
    buf_ = std::vector<T>();
    head_ = 0;
  }

  /// Swaps the contents (not the pools).
  void swap(RingQueue& other) noexcept {
    buf_.swap(other.buf_);
    std::swap(head_, other.head_);
    std::swap(size_, other.size_);
  }

  const_iterator begin() const noexcept { return const_iterator(this, 0); }
  const_iterator end() const noexcept { return const_iterator(this, size_); }

 private:
  const T& at_(std::size_t i) const noexcept { return buf_[(head_ + i) & (buf_.size() - 1)]; }

  void grow_() {
    const std::size_t n = buf_.empty() ? 8 : buf_.size() * 2;
    std::vector<T> bigger = pool_ != nullptr ? pool_->take(n) : std::vector<T>(n);
    for (std::size_t i = 0; i < size_; ++i) {
      bigger[i] = std::move(buf_[(head_ + i) & (buf_.size() - 1)]);
      buf_[(head_ + i) & (buf_.size() - 1)] = T{};  // a buffer given back holds T{} only
    }
    buf_.swap(bigger);
    head_ = 0;
    if (pool_ != nullptr) pool_->give(std::move(bigger));  // the old buffer
  }

  // size_ first: the shard core reads a queue's emptiness in its walk over every partition,
  // with the other fields of the first cache line of a Slot.
  std::size_t size_ = 0;
  std::size_t head_ = 0;  ///< index of the front
  RingPool<T>* pool_ = nullptr;
  std::vector<T> buf_;
};

}  // namespace tradecapture::detail
