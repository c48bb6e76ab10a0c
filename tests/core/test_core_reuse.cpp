// The shard core's memory in steady state (issue #12: no heap allocation per event, nor per
// batch): batch after batch over the same partitions, the key lookup's keys and result and the
// partitions' updates are the same vectors, never reallocated. Pointer identity, stepped by hand
// on one thread: deterministic, unlike counting allocations around a threaded pipeline.

#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>

#include "../src/op_state.hpp"
#include "../src/shard_core.hpp"
#include "support/events.hpp"

#include <doctest/doctest.h>

#include <set>
#include <memory>
#include <string>
#include <vector>

using namespace tradecapture;
using Clock = std::chrono::steady_clock;
using Kind = detail::Action::Kind;

namespace {

struct ReuseOp final : detail::SubmitOp {
  using SubmitOp::SubmitOp;
  bool done = false;
  void complete(boost::system::error_code, Outcome) override { done = true; }
};

/// Where one batch's vectors were: the lookup's keys and result, each partition's update.
struct BatchMemory {
  const void* keys = nullptr;
  const void* key_data = nullptr;
  const void* found_data = nullptr;
  std::set<const void*> events, trades;  // of the partitions' updates
};

}  // namespace

TEST_CASE("shard core: steady-state batches reuse their lookup keys, result and updates") {
  // Leases of an hour and steps of a millisecond: the partitions stay leased and cached from
  // one batch to the next, as under a steady load (an idle partition lets its memory go).
  detail::ShardConfig config;
  config.lease = std::chrono::hours(1);
  detail::Counters counters;
  detail::ShardCore core{config, make_position_processor(), counters, nullptr};
  auto store = make_memory_store();
  auto lock = make_local_lock(config.lease);
  const Clock::time_point t0{std::chrono::hours(1000)};
  const PartitionKey p1{"P1", "B", "S"}, p2{"P2", "B", "S"};
  std::uint64_t stamp = 1;
  int step = 0;

  // One batch: `n1` NEW events of P1 and `n2` of P2, stepped until the core idles.
  const auto run_batch = [&](int round, int n1, int n2) {
    std::vector<std::unique_ptr<ReuseOp>> ops;
    for (int i = 0; i < n1 + n2; ++i) {
      const std::string id = "R" + std::to_string(round) + "_" + std::to_string(i);
      ops.push_back(std::make_unique<ReuseOp>(tctest::ev(id, 1, TradeType::New, i < n1 ? p1 : p2)));
      detail::state_of(ops.back().get()).gate_head = true;
      detail::state_of(ops.back().get()).stamp = stamp++;
    }
    core.set_stamp_now(stamp);
    for (auto& op : ops) core.add(op.get(), t0 + std::chrono::milliseconds(step));
    const auto all_done = [&] {
      for (auto& op : ops)
        if (!op->done) return false;
      return true;
    };
    BatchMemory m;
    for (int i = 0; i < 40; ++i) {
      const auto now = t0 + std::chrono::milliseconds(++step);
      auto act = core.next(now);
      if (act.kind == Kind::idle || (act.kind == Kind::wait && all_done())) break;
      switch (act.kind) {
        case Kind::acquire: core.on_acquired(lock->try_acquire(act.keys), now); break;
        case Kind::renew: {
          auto r = lock->renew(act.grants);
          core.on_renewed(std::move(act.grants), std::move(r), now);
          break;
        }
        case Kind::release: lock->release(act.grants); break;
        case Kind::claim: core.on_claimed(store->claim_partitions(act.keys), now); break;
        case Kind::find: {
          // As the pipeline's shell does it: into the core's buffer, handed back.
          m.keys = act.idem_keys.get();
          m.key_data = act.idem_keys->data();
          auto found = core.take_found_buffer();
          REQUIRE(store->find_events_into(*act.idem_keys, found));
          m.found_data = found.data();
          act.idem_keys.reset();  // the shell drops its action before the next one
          core.on_found(std::move(found), now);
          break;
        }
        case Kind::commit: {
          for (const auto& u : act.batch->partitions) {
            m.events.insert(u.events.data());
            m.trades.insert(u.trades.data());
          }
          auto batch = std::move(act.batch);
          auto r = store->commit(*batch);
          batch.reset();  // let go before the result is fed, as the shell does
          core.on_committed(std::move(r), now);
          break;
        }
        case Kind::wait: break;
        default: FAIL("unexpected action");
      }
      for (auto& c : core.take_completions()) c.op->complete(c.ec, c.outcome);
    }
    REQUIRE(all_done());
    return m;
  };

  // The sizes alternate between the partitions (4 and 1, then 1 and 4): the updates must go to
  // the partitions by size, the large one to the partition with 4 events.
  std::vector<BatchMemory> rounds;
  for (int round = 0; round < 6; ++round)
    rounds.push_back(round % 2 == 0 ? run_batch(round, 4, 1) : run_batch(round, 1, 4));
  for (std::size_t r = 2; r < rounds.size(); ++r) {
    CAPTURE(r);
    const BatchMemory& a = rounds[r - 1];
    const BatchMemory& b = rounds[r];
    CHECK(b.keys == a.keys);
    CHECK(b.key_data == a.key_data);
    CHECK(b.found_data == a.found_data);
    CHECK(b.events.size() == 2);
    CHECK(b.events == a.events);
    CHECK(b.trades == a.trades);
  }
}
