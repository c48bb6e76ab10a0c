// The classic pause, deterministically: a holder decides a batch, is "paused" inside its commit
// until its lease has expired, another holder takes the partition over and commits; when the
// first one resumes, the store refuses its late commit by the fencing token, and its event is
// decided again on the fresh state. Nothing is lost, nothing is applied twice.

#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/store_wrapper.hpp>

#include <utility>

#include <boost/asio/use_future.hpp>
#include <doctest/doctest.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

using namespace tradecapture;
using namespace std::chrono_literals;

namespace {

/// Holds every commit until released, then forwards it; records the errors the target gave.
class PausingStore final : public TradeStoreWrapper {
 public:
  using TradeStoreWrapper::TradeStoreWrapper;
  std::promise<void> entered;
  std::vector<boost::system::error_code> errors;

  void resume() {
    std::lock_guard lk(mu_);
    paused_ = false;
    cv_.notify_all();
  }

 protected:
  result<void> do_commit_(const CommitBatch& b) override {
    {
      std::unique_lock lk(mu_);
      if (paused_ && !signalled_) {
        signalled_ = true;
        entered.set_value();
      }
      cv_.wait(lk, [&] { return !paused_; });
    }
    auto r = TradeStoreWrapper::do_commit_(b);
    if (!r) {
      std::lock_guard lk(mu_);
      errors.push_back(r.error());
    }
    return r;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool paused_ = true;
  bool signalled_ = false;
};

TradeEvent new_trade(std::string id, std::string account) {
  TradeEvent e;
  e.trade_id = std::move(id);
  e.version = 1;
  e.type = TradeType::New;
  e.partition = {std::move(account), "B", "S"};
  e.quantity = Decimal::from_int(5);
  e.price = Decimal::from_int(2);
  return e;
}

}  // namespace

TEST_CASE("a holder paused past its lease cannot commit: the fence refuses it, nothing is lost") {
  auto inner = make_memory_store();
  auto lock = make_local_lock(150ms);
  auto paused_store = std::make_shared<PausingStore>(inner);
  PipelineOptions o;
  o.threads = 1;
  o.retry.initial_backoff = 5ms;
  o.retry.max_backoff = 40ms;
  Pipeline a(paused_store, lock, make_position_processor(), o);
  Pipeline b(inner, lock, make_position_processor(), o);

  auto entered = paused_store->entered.get_future();
  auto first = a.async_submit(new_trade("T1", "P"), boost::asio::use_future);
  entered.wait();                       // A decided T1 and is inside its commit
  std::this_thread::sleep_for(400ms);   // ... long enough for its lease to expire

  auto second = b.submit(new_trade("T2", "P"));  // B takes the partition over and commits
  REQUIRE(second);
  CHECK(second.value() == Outcome::accepted(1));

  paused_store->resume();
  Outcome late = first.get();
  // A's late commit was refused by the fence, then decided again on B's state.
  REQUIRE_FALSE(paused_store->errors.empty());
  CHECK(paused_store->errors.front() == errc::fenced_off);
  CHECK(late == Outcome::accepted(2));
  CHECK(a.metrics().lease_losses >= 1);

  std::vector<StoredEvent> stored;
  REQUIRE(inner->scan_events([&](const StoredEvent& e) {
    stored.push_back(e);
    return true;
  }));
  REQUIRE(stored.size() == 2);
  CHECK(stored[0].event.trade_id == "T2");
  CHECK(stored[0].seq == 1);
  CHECK(stored[1].event.trade_id == "T1");
  CHECK(stored[1].seq == 2);
}
