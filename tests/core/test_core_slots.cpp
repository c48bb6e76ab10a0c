// The shard core's partition cache (issue #12): Slots of evicted partitions are reused for other
// partitions, and a reused Slot must start fresh. Stepped by hand on one thread, with a cache
// limit far below the partitions in use, so that every round evicts and re-caches them.

#include "support/core_driver.hpp"
#include "support/events.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

using namespace tradecapture;
using namespace std::chrono_literals;

namespace {

using SlotOp = tctest::DrivenOp;

/// Housekeeping every 100 ms (lease / 32); a lease idle for 800 ms (lease / 4) is released; at
/// most `max_cached` partitions stay cached.
detail::ShardConfig small_cache(std::size_t max_cached) {
  detail::ShardConfig config;
  config.lease = 3200ms;
  config.max_cached_partitions = max_cached;
  return config;
}

}  // namespace

TEST_CASE("shard core: evicted partitions' slots are reused fresh for other partitions") {
  constexpr int kPartitions = 40;
  tctest::CoreDriver d(small_cache(4), false);
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
