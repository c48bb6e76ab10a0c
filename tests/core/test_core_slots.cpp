// The shard core's partition cache (issue #12): Slots of evicted partitions are reused for other
// partitions, and a reused Slot must start fresh. Stepped by hand on one thread, with a cache
// limit far below the partitions in use, so that every round evicts and re-caches them.

#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>

#include "../src/op_state.hpp"
#include "../src/shard_core.hpp"
#include "support/events.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

using namespace tradecapture;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Kind = detail::Action::Kind;

namespace {

struct SlotOp final : detail::SubmitOp {
  using SubmitOp::SubmitOp;
  bool added = false;  // given to the core
  bool done = false;
  boost::system::error_code ec;
  Outcome outcome;
  void complete(boost::system::error_code e, Outcome o) override {
    done = true;
    ec = e;
    outcome = std::move(o);
  }
};

/// One shard core on a memory store and the local lock, driven by hand on a simulated clock.
struct Driver {
  detail::ShardConfig config;
  detail::Counters counters;
  std::unique_ptr<detail::ShardCore> core;
  std::shared_ptr<TradeStore> store = make_memory_store();
  std::shared_ptr<PartitionLock> lock;
  Clock::time_point now{std::chrono::hours(1000)};
  std::uint64_t next_stamp = 1;
  std::vector<std::unique_ptr<SlotOp>> ops;

  explicit Driver(std::size_t max_cached) {
    // Housekeeping every 100 ms (lease / 32); a lease idle for 800 ms (lease / 4) is released.
    config.lease = 3200ms;
    config.max_cached_partitions = max_cached;
    lock = make_local_lock(config.lease);
    core = std::make_unique<detail::ShardCore>(config, make_position_processor(), counters,
                                               nullptr);
  }

  /// A new op of `e`, stamped now (submitted) but not added to the core yet.
  SlotOp* stamp(TradeEvent e) {
    ops.push_back(std::make_unique<SlotOp>(std::move(e)));
    SlotOp* op = ops.back().get();
    detail::state_of(op).gate_head = true;
    detail::state_of(op).stamp = next_stamp++;
    core->set_stamp_now(next_stamp);
    return op;
  }

  void add(SlotOp* op) {
    op->added = true;
    core->add(op, now);
  }

  bool all_done() const {
    for (const auto& op : ops)
      if (op->added && !op->done) return false;
    return true;
  }

  /// Steps the core, 1 ms a step (or to the end of a wait), until every op added is done.
  void run() {
    bool more = true;
    for (int i = 0; more && i < 100000; ++i) {
      now += 1ms;
      auto act = core->next(now);
      switch (act.kind) {
        case Kind::idle: more = false; break;
        case Kind::wait:
          more = !all_done();
          if (act.until > now) now = act.until - 1ms;
          break;
        case Kind::acquire: core->on_acquired(lock->try_acquire(act.keys), now); break;
        case Kind::renew: {
          auto r = lock->renew(act.grants);
          core->on_renewed(std::move(act.grants), std::move(r), now);
          break;
        }
        case Kind::release: lock->release(act.grants); break;
        case Kind::claim: core->on_claimed(store->claim_partitions(act.keys), now); break;
        case Kind::find: core->on_found(store->find_events(*act.idem_keys), now); break;
        case Kind::commit: {
          auto batch = std::move(act.batch);
          auto r = store->commit(*batch);
          batch.reset();
          core->on_committed(std::move(r), now);
          break;
        }
        default: FAIL("unexpected action");
      }
      for (auto& c : core->take_completions()) c.op->complete(c.ec, c.outcome);
    }
  }

  /// Lets the clock run `d` with nothing arriving: idle leases are released and, over the cache
  /// limit, quiet partitions evicted.
  void idle_for(std::chrono::milliseconds d) {
    const Clock::time_point until = now + d;
    while (now < until) {
      now += 50ms;
      auto act = core->next(now);
      if (act.kind == Kind::release) lock->release(act.grants);
      REQUIRE((act.kind == Kind::idle || act.kind == Kind::wait || act.kind == Kind::release));
    }
  }
};

}  // namespace

TEST_CASE("shard core: evicted partitions' slots are reused fresh for other partitions") {
  constexpr int kPartitions = 40;
  Driver d(4);
  const auto part = [](int i) { return tctest::pk("A" + std::to_string(i)); };

  // Round 1: a NEW in each of 40 partitions, 10 times the cache limit.
  std::vector<SlotOp*> news;
  for (int i = 0; i < kPartitions; ++i)
    news.push_back(d.stamp(tctest::ev("T" + std::to_string(i), 1, TradeType::New, part(i))));
  for (SlotOp* op : news) d.add(op);
  d.run();
  for (SlotOp* op : news) {
    REQUIRE(op->done);
    CHECK_FALSE(op->ec);
    CHECK(op->outcome == Outcome::accepted(1));
  }
  CHECK(d.core->cached() == kPartitions);

  // Amendments of all 40, and a NEW in a 41st partition G, are submitted now (stamped), and
  // reach the core only later.
  std::vector<SlotOp*> amends;
  for (int i = 0; i < kPartitions; ++i)
    amends.push_back(d.stamp(tctest::ev("T" + std::to_string(i), 2, TradeType::Amend, part(i))));
  SlotOp* g = d.stamp(tctest::ev("G1", 1, TradeType::New, tctest::pk("G")));

  // Meanwhile partition F fails: its NEW passes its deadline, so F's barrier is the stamp of the
  // next submission, above the stamps of the 41 ops waiting (they are F's predecessors, not
  // F's). Then the leases are released and all 41 partitions evicted (over the limit of 4): the
  // 41 ops arriving next get the 41 free Slots, F's among them, and a Slot reused with F's
  // barrier would fail the op that gets it.
  SlotOp* f = d.stamp(tctest::ev("F1", 1, TradeType::New, tctest::pk("F")));
  f->deadline = d.now + 1ms;
  d.add(f);
  d.now += 5ms;
  d.run();
  REQUIRE(f->done);
  CHECK(f->ec == errc::deadline_exceeded);
  d.idle_for(2s);
  CHECK(d.core->cached() == 0);
  CHECK(d.core->leases() == 0);

  // The amendments arrive, for partitions evicted long ago: each is cached again in a Slot
  // another partition (or F) had, claims its state from the store again, and is decided on it.
  for (SlotOp* op : amends) d.add(op);
  d.add(g);
  d.run();
  REQUIRE(g->done);
  CHECK_FALSE(g->ec);
  CHECK(g->outcome == Outcome::accepted(1));
  for (int i = 0; i < kPartitions; ++i) {
    CAPTURE(i);
    REQUIRE(amends[i]->done);
    CHECK_FALSE(amends[i]->ec);
    CHECK(amends[i]->outcome == Outcome::accepted(2));
  }

  // Round 3: a new trade in each partition, in the opposite order, after another eviction.
  d.idle_for(2s);
  std::vector<SlotOp*> more;
  for (int i = kPartitions; i-- > 0;)
    more.push_back(d.stamp(tctest::ev("U" + std::to_string(i), 1, TradeType::New, part(i))));
  for (SlotOp* op : more) d.add(op);
  d.run();
  for (SlotOp* op : more) {
    REQUIRE(op->done);
    CHECK_FALSE(op->ec);
    CHECK(op->outcome == Outcome::accepted(3));
  }

  // The store holds every partition's three events, G's one, F's none.
  auto rows = d.store->positions();
  REQUIRE(rows);
  CHECK(rows.value().size() == kPartitions + 1);
  for (const auto& row : rows.value()) {
    CAPTURE(row.partition.account);
    CHECK(row.seq == (row.partition.account == "G" ? 1u : 3u));
  }
  CHECK(d.core->empty());
}
