#pragma once
/// \file held_store.hpp
/// A store wrapper whose commits can be held: the writer paused inside its commit.

#include <tradecapture/store_wrapper.hpp>

#include <condition_variable>
#include <future>
#include <mutex>

namespace tctest {

using namespace tradecapture;

/// Every commit waits while the store is held (`hold` until `release`), then goes to the target;
/// `entered` is set when the first commit starts waiting. A derived do_commit_ calls
/// `wait_while_held` itself, or this one.
class HeldStore : public TradeStoreWrapper {
 public:
  using TradeStoreWrapper::TradeStoreWrapper;
  std::promise<void> entered;

  void hold() {
    std::lock_guard lk(mu_);
    held_ = true;
  }
  void release() {
    std::lock_guard lk(mu_);
    held_ = false;
    cv_.notify_all();
  }

 protected:
  void wait_while_held() {
    std::unique_lock lk(mu_);
    if (held_ && !signalled_) {
      signalled_ = true;
      entered.set_value();
    }
    cv_.wait(lk, [&] { return !held_; });
  }
  result<void> do_commit_(const CommitBatch& b) override {
    wait_while_held();
    return TradeStoreWrapper::do_commit_(b);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
  bool signalled_ = false;
};

}  // namespace tctest
