#pragma once
// Admission of submissions into a pipeline: the in-flight bound (back-pressure or fail-fast),
// whole-batch reservations (`Pipeline::try_reserve`), stop, and waiting for everything admitted
// to complete. Thread-safe.
//
// `in_flight_` counts every admitted event and every reserved slot not used yet; `reserved_` the
// latter only. A reserved slot becomes an admitted event when a batch uses it
// (`use_reserved`), or goes back when its reservation is released (`release_reserved`). An
// admitted event leaves `in_flight_` right before its completion runs and stays in `completing_`
// until it ran. Drain and stop wait for admitted events only (`in_flight_ <= reserved_`, nothing
// completing): a reservation nobody uses never blocks a stop, and a batch submitted after the
// stop began completes with `stopped`.
// `reserved_` changes only under `mu_`, and `in_flight_` >= `reserved_` at every moment the mutex
// is free (reserve adds to `in_flight_` first, release takes from `reserved_` first).

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

  /// Reserves `n` slots whole: when they fit next to those in flight, or nothing is in flight
  /// (a batch larger than the limit then runs alone). Never waits. Fails with overloaded or
  /// stopped.
  boost::system::error_code reserve(std::size_t n) {
    if (stopping_.load()) return errc::stopped;
    if (n == 0) return {};
    std::lock_guard lk(mu_);
    std::size_t cur = in_flight_.load(std::memory_order_acquire);
    for (;;) {
      if (cur != 0 && cur + n > max_) return errc::overloaded;
      if (in_flight_.compare_exchange_weak(cur, cur + n, std::memory_order_acq_rel)) break;
    }
    reserved_ += n;
    return {};
  }

  /// `n` reserved slots now hold admitted events (they complete through `finished`).
  void use_reserved(std::size_t n) {
    if (n == 0) return;
    std::lock_guard lk(mu_);
    reserved_ -= n;
  }

  /// `n` reserved slots were not used: they are free again.
  void release_reserved(std::size_t n) {
    if (n == 0) return;
    std::lock_guard lk(mu_);
    reserved_ -= n;
    in_flight_.fetch_sub(n, std::memory_order_acq_rel);
    cv_.notify_all();
  }

  /// `n` admitted submissions completed.
  void finished(std::size_t n) {
    in_flight_.fetch_sub(n, std::memory_order_acq_rel);
    notify_waiters();
  }

  /// `n` admitted submissions are about to complete: their slots are free from now on, so that a
  /// completion handler (or a client answered by one) that submits again at once finds room,
  /// while `wait_empty` still waits for them until `completed(n)`.
  void completing(std::size_t n) {
    completing_.fetch_add(n);  // first: a drain never sees the events in neither count
    in_flight_.fetch_sub(n);
    notify_waiters();
  }

  /// The `n` submissions of `completing(n)` have completed (their handlers were dispatched).
  void completed(std::size_t n) {
    completing_.fetch_sub(n);
    notify_waiters();
  }

  /// Refuses new submissions from now on and wakes blocked submitters (they get `stopped`).
  void begin_stop() {
    stopping_.store(true);
    std::lock_guard lk(mu_);
    cv_.notify_all();
  }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

  /// Blocks until no admitted event is in flight (unused reserved slots do not count).
  void wait_empty() {
    std::unique_lock lk(mu_);
    waiters_.fetch_add(1);
    cv_.wait(lk, [&] { return empty_locked(); });
    waiters_.fetch_sub(1);
  }

  /// Blocks until no admitted event is in flight or `timeout` passed; true when empty.
  bool wait_empty_for(std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    waiters_.fetch_add(1);
    const bool empty = cv_.wait_for(lk, timeout, [&] { return empty_locked(); });
    waiters_.fetch_sub(1);
    return empty;
  }

  /// Admitted events and reserved slots not used yet.
  std::size_t in_flight() const { return in_flight_.load(std::memory_order_acquire); }
  /// Reserved slots not used yet.
  std::size_t reserved() const {
    std::lock_guard lk(mu_);
    return reserved_;
  }
  std::size_t max_in_flight() const { return max_; }

 private:
  bool empty_locked() const { return in_flight_.load() <= reserved_ && completing_.load() == 0; }

  // Sequentially consistent with the waiter's `waiters_` increment and predicate check, so a
  // waiter either sees the new counts or is counted here.
  void notify_waiters() {
    if (waiters_.load() > 0) {
      std::lock_guard lk(mu_);
      cv_.notify_all();
    }
  }

  std::size_t max_ = 65536;
  OverloadPolicy policy_ = OverloadPolicy::wait;
  std::atomic<std::size_t> in_flight_{0};
  std::atomic<std::size_t> completing_{0};  // between `completing` and `completed`
  std::size_t reserved_ = 0;  // guarded by mu_
  std::atomic<bool> stopping_{false};
  std::atomic<int> waiters_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace tradecapture::detail
