#pragma once
// Admission of submissions into a pipeline: the in-flight bound (back-pressure or fail-fast),
// stop, and waiting for everything admitted to complete. Thread-safe.

#include <tradecapture/error.hpp>
#include <tradecapture/pipeline.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>

namespace tradecapture::detail {

class Admission {
 public:
  void configure(std::size_t max_in_flight, OverloadPolicy policy) {
    max_ = max_in_flight == 0 ? 1 : max_in_flight;
    policy_ = policy;
  }

  /// Reserves one in-flight slot; fails with overloaded (fail-fast) or stopped.
  boost::system::error_code admit() {
    if (in_flight_.fetch_add(1, std::memory_order_acq_rel) < max_) return {};
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    if (policy_ == OverloadPolicy::fail_fast) return errc::overloaded;
    std::unique_lock lk(mu_);
    waiters_.fetch_add(1);
    cv_.wait(lk, [&] {
      return stopping_.load() || in_flight_.load(std::memory_order_acquire) < max_;
    });
    waiters_.fetch_sub(1);
    if (stopping_.load()) return errc::stopped;
    in_flight_.fetch_add(1, std::memory_order_acq_rel);
    return {};
  }

  /// `n` admitted submissions completed.
  void finished(std::size_t n) {
    in_flight_.fetch_sub(n, std::memory_order_acq_rel);
    if (waiters_.load(std::memory_order_acquire) > 0) {
      std::lock_guard lk(mu_);
      cv_.notify_all();
    }
  }

  /// Refuses new submissions from now on and wakes blocked submitters (they get `stopped`).
  void begin_stop() {
    stopping_.store(true);
    std::lock_guard lk(mu_);
    cv_.notify_all();
  }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

  /// Blocks until nothing is in flight.
  void wait_empty() {
    std::unique_lock lk(mu_);
    waiters_.fetch_add(1);
    cv_.wait(lk, [&] { return in_flight_.load() == 0; });
    waiters_.fetch_sub(1);
  }

  /// Blocks until nothing is in flight or `timeout` passed; true when empty.
  bool wait_empty_for(std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    waiters_.fetch_add(1);
    const bool empty = cv_.wait_for(lk, timeout, [&] { return in_flight_.load() == 0; });
    waiters_.fetch_sub(1);
    return empty;
  }

  std::size_t in_flight() const { return in_flight_.load(std::memory_order_acquire); }

 private:
  std::size_t max_ = 65536;
  OverloadPolicy policy_ = OverloadPolicy::wait;
  std::atomic<std::size_t> in_flight_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<int> waiters_{0};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace tradecapture::detail
