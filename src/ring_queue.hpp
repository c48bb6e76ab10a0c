#pragma once
// Internal: a double-ended FIFO in one power-of-two ring that keeps its capacity, for the shard
// core's per-partition queues of ops. A std::deque allocates and frees a 512-byte node every 64
// pointers pushed through it (and two blocks when created); this ring allocates only when it
// grows past the partition's largest backlog so far, so a steady stream allocates nothing.
// Not thread-safe.

#include <cstddef>
#include <iterator>
#include <utility>
#include <vector>

namespace tradecapture::detail {

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
    std::vector<T> bigger(buf_.empty() ? 8 : buf_.size() * 2);
    for (std::size_t i = 0; i < size_; ++i)
      bigger[i] = std::move(buf_[(head_ + i) & (buf_.size() - 1)]);
    buf_.swap(bigger);
    head_ = 0;
  }

  std::vector<T> buf_;
  std::size_t head_ = 0;  ///< index of the front
  std::size_t size_ = 0;
};

}  // namespace tradecapture::detail
