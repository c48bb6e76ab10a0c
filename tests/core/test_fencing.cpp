// The classic pause, deterministically: a holder decides a batch, is "paused" inside its commit
// until its lease has expired, another holder takes the partition over and commits; when the
// first one resumes, the store refuses its late commit by the fencing token, and its event is
// decided again on the fresh state. Nothing is lost, nothing is applied twice.
//
// And the lock that forgets (spec section 6, point 4): two holders granted the same partition by
// a lock that lost its state, with the same Grant::fence, are told apart by the store's claim
// (TradeStore::claim_partitions), whose fence is the write token; on every store backend.

#include "common/store_conformance.hpp"
#include "support/held_store.hpp"

#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/store_wrapper.hpp>

#include <utility>

#include <boost/asio/use_future.hpp>
#include <doctest/doctest.h>

#include <future>
#include <mutex>
#include <thread>

using namespace tradecapture;
using namespace std::chrono_literals;

namespace {

/// Holds every commit until resumed, then forwards it; records the errors the target gave.
class PausingStore final : public tctest::HeldStore {
 public:
  explicit PausingStore(std::shared_ptr<TradeStore> target) : HeldStore(std::move(target)) {
    hold();
  }
  std::vector<boost::system::error_code> errors;

  void resume() { release(); }

 protected:
  result<void> do_commit_(const CommitBatch& b) override {
    auto r = HeldStore::do_commit_(b);
    if (!r) {
      std::lock_guard lk(mu_);
      errors.push_back(r.error());
    }
    return r;
  }

 private:
  std::mutex mu_;
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

TEST_CASE("a lock that forgets cannot let a stale holder write: the store's claim fences it off") {
  tctest::for_each_store([](tctest::StoreUnderTest& s) {
    const PartitionKey p{"FORGET", "B", "S"};
    const std::vector<PartitionKey> keys{p};
    // Holder A: granted by a lock, then claims the partition in the store.
    auto lock_a = make_local_lock(10s);
    auto grant_a = lock_a->try_acquire(keys);
    REQUIRE(grant_a);
    REQUIRE(grant_a.value()[0]);
    auto claim_a = s->claim_partitions(keys);
    REQUIRE(claim_a);
    const std::uint64_t token_a = claim_a.value()[0].fence;
    REQUIRE(s->commit(tctest::batch({tctest::UpdateBuilder(p, token_a, 0)
                                         .add(tctest::new_trade("T1"))})));

    // The lock server restarts empty (a fresh lock object): holder B is granted the partition
    // while A still holds it, with the very same lock fence.
    auto lock_b = make_local_lock(10s);
    auto grant_b = lock_b->try_acquire(keys);
    REQUIRE(grant_b);
    REQUIRE(grant_b.value()[0]);
    CHECK(grant_b.value()[0].value().fence == grant_a.value()[0].value().fence);
    auto claim_b = s->claim_partitions(keys);
    REQUIRE(claim_b);
    const std::uint64_t token_b = claim_b.value()[0].fence;
    CHECK(token_b > token_a);
    CHECK(claim_b.value()[0].seq == 1);

    // A's next write and A's check-only validation are refused; nothing of them is stored.
    CHECK(tctest::error_of(s->commit(tctest::batch(
              {tctest::UpdateBuilder(p, token_a, 1).add(tctest::new_trade("T2"))}))) ==
          errc::fenced_off);
    CHECK(tctest::error_of(s->commit(tctest::batch({tctest::UpdateBuilder(p, token_a, 1)}))) ==
          errc::fenced_off);
    // B writes on the state it claimed.
    REQUIRE(s->commit(tctest::batch(
        {tctest::UpdateBuilder(p, token_b, 1).add(tctest::new_trade("T3"))})));
    std::vector<std::string> ids;
    REQUIRE(s->scan_events([&](const StoredEvent& e) {
      ids.push_back(e.event.trade_id);
      return true;
    }));
    CHECK(ids == std::vector<std::string>{"T1", "T3"});
  });
}
