// The Kafka source's sans-I/O core (backends/kafka/offset_tracker.hpp), driven directly: tags,
// watermarks, the rows and replay markers a commit carries, the replay guard and the lock.

#ifdef TRADECAPTURE_HAVE_KAFKA

#include "offset_tracker.hpp"

#include <tradecapture/kafka_source.hpp>
#include <tradecapture/memory.hpp>

#include <doctest/doctest.h>

using namespace tradecapture;
using namespace tradecapture::kafka_detail;

namespace {

PartitionKey key(const std::string& a) { return PartitionKey{a, "B", "S"}; }

TradeEvent event(const std::string& id, std::int64_t version, const PartitionKey& k) {
  TradeEvent e;
  e.trade_id = id;
  e.version = version;
  e.type = version == 1 ? TradeType::New : TradeType::Amend;
  e.partition = k;
  e.quantity = Decimal::parse("1").value();
  e.price = Decimal::parse("1").value();
  return e;
}

/// A batch that accepted `events` (one partition update per partition, in key order).
CommitBatch accepted(std::vector<TradeEvent> events) {
  CommitBatch b;
  std::sort(events.begin(), events.end(),
            [](const TradeEvent& x, const TradeEvent& y) { return x.partition < y.partition; });
  for (const auto& e : events) {
    if (b.partitions.empty() || b.partitions.back().partition != e.partition) {
      PartitionUpdate u;
      u.partition = e.partition;
      b.partitions.push_back(u);
    }
    auto& u = b.partitions.back();
    u.events.push_back(StoredEvent{e, u.events.size() + 1});
    u.new_seq = u.events.size();
    u.trades.emplace_back(e.trade_id, TradeRecord{e.version});
  }
  return b;
}

}  // namespace

TEST_CASE("kafka: the message key of a trade partition is PartitionKey::encode()") {
  // The example of the README and of `consume --help`.
  CHECK(kafka_message_key(PartitionKey{"ACC1", "EQ-FLOW", "AAPL"}) == "4:ACC17:EQ-FLOW4:AAPL");
  // Byte lengths, unambiguous: ("A_B", "C") and ("A", "B_C") differ.
  CHECK(kafka_message_key(PartitionKey{"A_B", "C", "S"}) !=
        kafka_message_key(PartitionKey{"A", "B_C", "S"}));
  CHECK(kafka_message_key(PartitionKey{"\xc3\xa9", "b", "s"}) == "2:\xc3\xa9" "1:b1:s");
}

TEST_CASE("offset tracker: tags carry slot and offset and are never zero") {
  CHECK(make_tag(1, 0) != 0);
  CHECK(tag_slot(make_tag(7, 123456789)) == 7);
  CHECK(tag_offset(make_tag(7, 123456789)) == 123456789);
  CHECK(tag_offset(make_tag(65535, max_tag_offset)) == max_tag_offset);
  CHECK(tag_slot(make_tag(65535, max_tag_offset)) == 65535);
  // Marker ids cannot be trade ids and sort before every valid one.
  const std::string id = replay_marker_id("g", "t", 3);
  CHECK(!validate(event(id, 1, key("A"))).empty());
  CHECK(id < std::string(" "));
}

TEST_CASE("offset tracker: the watermark is the smallest undecided offset") {
  OffsetTracker t("g");
  const SlotIndex s = t.open("t", 0, 1, 10);
  CHECK(t.view(s).watermark == 10);
  const auto a = t.submitted(s, 10, event("A", 1, key("A")));
  const auto b = t.submitted(s, 11, event("B", 1, key("B")));
  t.answered(s, 12);  // a malformed message, decided at the source
  const auto c = t.submitted(s, 13, event("C", 1, key("C")));
  CHECK(t.view(s).position == 14);
  CHECK(t.view(s).watermark == 10);
  // Out of order completions: nothing moves until offset 10 is decided.
  CHECK(t.completed(b).known);
  CHECK(t.view(s).watermark == 10);
  CHECK(t.completed(a).offset == 10);
  CHECK(t.view(s).watermark == 13);
  CHECK(t.completed(c).known);
  CHECK(t.view(s).watermark == 14);
  CHECK(!t.completed(c).known);  // twice: unknown
  CHECK(t.idle(s));
  // Duplicate deliveries below the position are dropped.
  CHECK(t.check(s, 13, nullptr) == Admit::stale);
  CHECK(t.check(s, 14, nullptr) == Admit::submit);
}

TEST_CASE("offset tracker: a commit carries one row per Kafka partition, its own events decided") {
  OffsetTracker t("g");
  const SlotIndex s0 = t.open("t", 0, 4, 0);
  const SlotIndex s1 = t.open("t", 1, 9, 100);
  const auto e0 = event("A1", 1, key("A"));
  const auto e1 = event("B1", 1, key("B"));
  const auto e2 = event("A2", 1, key("A"));
  const auto e3 = event("C1", 1, key("C"));
  const auto t0 = t.submitted(s0, 0, e0);
  const auto t1 = t.submitted(s0, 1, e1);
  const auto t2 = t.submitted(s0, 2, e2);
  const auto t3 = t.submitted(s1, 100, e3);

  SUBCASE("the rows") {
    // The batch decided offsets 0 and 2 of partition 0 (1 is still in flight) and 100 of 1.
    CommitBatch b = accepted({e0, e2, e3});
    const std::uint64_t tags[] = {t2, t0, t3};
    t.add_sources(tags, b);
    REQUIRE(b.sources.size() == 2);
    CHECK(b.sources[0] == SourceOffset{"g", "t", 0, 1, 4});
    CHECK(b.sources[1] == SourceOffset{"g", "t", 1, 101, 9});
    // Nothing changed in the tracker: the batch may be refused and decided again.
    CHECK(t.view(s0).watermark == 0);
    CHECK(t.view(s0).in_flight == 3);
    // With offset 1 decided too, the row moves past 2.
    CHECK(t.completed(t1).known);
    CommitBatch again = accepted({e0, e2});
    const std::uint64_t tags2[] = {t0, t2};
    t.add_sources(tags2, again);
    REQUIRE(again.sources.size() == 1);
    CHECK(again.sources[0].next_offset == 3);
  }

  SUBCASE("replay markers: the last accepted offset of each trade partition") {
    // A's events at 0 and 2 are accepted; B's event at 1 was decided (not accepted) in the same
    // batch: it gets no marker of its own.
    CommitBatch b = accepted({e0, e2});
    const std::uint64_t tags[] = {t0, t1, t2};
    t.add_sources(tags, b);
    REQUIRE(b.partitions.size() == 1);
    const auto& trades = b.partitions[0].trades;
    REQUIRE(trades.size() == 3);
    CHECK(trades[0].first == replay_marker_id("g", "t", 0));  // first: trades stay sorted
    CHECK(trades[0].second.version == 2);
    CHECK(std::is_sorted(trades.begin(), trades.end(),
                         [](const auto& x, const auto& y) { return x.first < y.first; }));
    CHECK(b.sources[0].next_offset == 3);
  }

  SUBCASE("a dead slot's rows carry epoch 0, which every claimed row refuses") {
    t.set_state(s0, SlotState::dead);
    CommitBatch b = accepted({e0});
    const std::uint64_t tags[] = {t0};
    t.add_sources(tags, b);
    REQUIRE(b.sources.size() == 1);
    CHECK(b.sources[0].epoch == 0);
    auto store = make_memory_store();
    REQUIRE(store->claim_source("g", "t", 0));
    CHECK(store->commit(b).error() == errc::fenced_off);
    CHECK(store->positions().value().empty());
    // Dead slots take no messages and owe no offsets-only commit.
    CHECK(t.check(s0, 5, nullptr) == Admit::not_live);
    for (const auto& r : t.due_offsets()) CHECK(r.partition != 0);
  }
}

TEST_CASE("offset tracker: the replay guard answers re-read events at or below the marker") {
  OffsetTracker t("g");
  const SlotIndex s = t.open("t", 0, 2, 5);
  const PartitionKey k = key("A");
  const auto amend = event("T", 2, k);  // at 5: was REJECTED unknown trade before the crash
  const auto nw = event("T", 1, k);     // at 6: was ACCEPTED, marker 6 stored with it
  const auto later = event("U", 1, k);  // at 7: never decided
  const auto ta = t.submitted(s, 5, amend);
  const auto tn = t.submitted(s, 6, nw);
  const auto tl = t.submitted(s, 7, later);
  PartitionState st;
  st.trades["T"] = TradeRecord{1};
  st.trades[replay_marker_id("g", "t", 0)] = TradeRecord{6};
  CHECK(t.replayed(amend, st));
  CHECK(t.replayed(nw, st));
  CHECK(!t.replayed(later, st));
  // Another partition's marker does not count, nor does another trade partition's event.
  PartitionState other;
  other.trades[replay_marker_id("g", "t", 1)] = TradeRecord{100};
  CHECK(!t.replayed(later, other));
  CHECK(!t.replayed(event("T", 2, key("Z")), st));
  CHECK(t.completed(ta).replayed);
  CHECK(t.completed(tn).replayed);
  CHECK(!t.completed(tl).replayed);
}

TEST_CASE("offset tracker: grants follow the assignment; fences rise with the claim epoch") {
  OffsetTracker t("g", std::chrono::seconds(10));
  const auto now = OffsetTracker::Clock::now();
  const PartitionKey k = key("A");
  // Nothing in flight for the partition: no grant.
  CHECK(t.acquire(k, now).error() == errc::lease_lost);
  const SlotIndex s = t.open("t", 0, 3, 0);
  const auto tag = t.submitted(s, 0, event("A", 1, k));
  auto g1 = t.acquire(k, now);
  REQUIRE(g1);
  CHECK((g1.value().fence >> 32) == 3);
  auto g2 = t.acquire(k, now);
  REQUIRE(g2);
  CHECK(g2.value().fence > g1.value().fence);
  Grant g = g2.value();
  CHECK(t.renew(g, now + std::chrono::seconds(5)));
  CHECK(g.expires == now + std::chrono::seconds(15));
  // A split key: the same trade partition from another Kafka partition is refused.
  const SlotIndex other = t.open("t", 1, 1, 0);
  CHECK(t.check(other, 0, &k) == Admit::split_key);
  // Revoked: renewals and new grants fail.
  t.set_state(s, SlotState::dead);
  CHECK(t.renew(g, now).error() == errc::lease_lost);
  CHECK(t.acquire(k, now).error() == errc::lease_lost);
  CHECK(t.completed(tag).state == SlotState::dead);
  t.close(s);
  // A new generation (a new claim, epoch 4): the old grant stays refused, new fences are higher.
  const SlotIndex s2 = t.open("t", 0, 4, 1);
  t.submitted(s2, 1, event("A", 2, k));
  CHECK(t.renew(g, now).error() == errc::lease_lost);
  auto g3 = t.acquire(k, now);
  REQUIRE(g3);
  CHECK(g3.value().fence > g2.value().fence);
}

TEST_CASE("offset tracker: a clean handover to the same member keeps its grants valid") {
  OffsetTracker t("g", std::chrono::seconds(10));
  const auto now = OffsetTracker::Clock::now();
  const PartitionKey k = key("A");
  const SlotIndex s = t.open("t", 0, 5, 0);
  const auto tag = t.submitted(s, 0, event("A", 1, k));
  Grant g = t.acquire(k, now).value();
  t.completed(tag);
  t.set_state(s, SlotState::draining);
  t.released_cleanly(s);  // drained, final offset stored
  t.set_state(s, SlotState::dead);
  t.close(s);
  SUBCASE("nobody claimed it in between: epoch + 1, the old grant renews") {
    const SlotIndex s2 = t.open("t", 0, 6, 1);
    t.submitted(s2, 1, event("A", 2, k));
    CHECK(t.renew(g, now));
    CHECK((t.acquire(k, now).value().fence >> 32) == 6);
  }
  SUBCASE("another member had it (epoch + 2): the old grant is refused") {
    const SlotIndex s2 = t.open("t", 0, 7, 1);
    t.submitted(s2, 1, event("A", 2, k));
    CHECK(t.renew(g, now).error() == errc::lease_lost);
  }
  SUBCASE("a dirty end (lost, abandoned) leaves nothing to inherit") {
    const SlotIndex s2 = t.open("t", 0, 6, 1);
    t.submitted(s2, 1, event("A", 2, k));
    t.set_state(s2, SlotState::dead);  // lost, not released cleanly
    const auto tag2 = make_tag(s2, 1);
    t.completed(tag2);
    t.close(s2);
    const SlotIndex s3 = t.open("t", 0, 7, 1);
    t.submitted(s3, 1, event("A", 2, k));
    CHECK(t.renew(g, now).error() == errc::lease_lost);
  }
}

TEST_CASE("offset tracker: offsets-only commits owe only what moved") {
  OffsetTracker t("g");
  const SlotIndex a = t.open("t", 1, 1, 0);
  const SlotIndex b = t.open("s", 0, 2, 50);
  CHECK(t.due_offsets().size() == 2);  // never stored yet: both
  auto rows = t.due_offsets();
  CHECK(rows[0].topic == "s");  // sorted by (consumer, topic, partition)
  t.flushed(rows);
  CHECK(t.due_offsets().empty());
  t.answered(a, 0);
  t.answered(a, 1);
  rows = t.due_offsets();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0] == SourceOffset{"g", "t", 1, 2, 1});
  const SlotIndex only[] = {b};
  CHECK(t.due_offsets(only).empty());
  t.set_state(a, SlotState::draining);
  CHECK(t.due_offsets().size() == 1);  // a draining slot still stores its offsets
  t.flushed(t.due_offsets());
  CHECK(t.due_offsets().empty());
  CHECK(t.due_offsets({}, /*all=*/true).size() == 2);  // a final write: moved or not
}

#endif  // TRADECAPTURE_HAVE_KAFKA
