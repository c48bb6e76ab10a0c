// The Kafka source's sans-I/O core (backends/kafka/offset_tracker.hpp), driven directly: tags,
// watermarks, the rows and replay markers a commit carries, the guard (replayed and abandoned
// events), several Kafka partitions feeding one trade partition.


#include "offset_tracker.hpp"

#include <tradecapture/kafka_source.hpp>
#include <tradecapture/memory.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <map>

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
  std::stable_sort(events.begin(), events.end(), [](const TradeEvent& x, const TradeEvent& y) {
    return x.partition < y.partition;
  });
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
  for (auto& u : b.partitions)
    std::sort(u.trades.begin(), u.trades.end(),
              [](const auto& x, const auto& y) { return x.first < y.first; });
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
  CHECK(t.check(s, 13) == Admit::stale);
  CHECK(t.check(s, 14) == Admit::submit);
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

  SUBCASE("source marks: the last accepted offset of each trade partition") {
    // A's events at 0 and 2 are accepted; B's event at 1 was decided (not accepted) in the same
    // batch: it gets no mark of its own. Marks are not trades.
    CommitBatch b = accepted({e0, e2});
    const std::uint64_t tags[] = {t0, t1, t2};
    t.add_sources(tags, b);
    REQUIRE(b.partitions.size() == 1);
    CHECK(b.partitions[0].trades.size() == 2);
    CHECK(b.partitions[0].marks == std::vector<SourceMark>{{replay_marker_id("g", "t", 0), 2}});
    CHECK(b.sources[0].next_offset == 3);
  }

  SUBCASE("a write of a dead slot carries epoch 0, which every claimed row refuses") {
    // Decided (accepted) while the slot was live; the slot died before the commit.
    t.set_state(s0, SlotState::dead);
    CommitBatch b = accepted({e0});
    const std::uint64_t tags[] = {t0};
    t.add_sources(tags, b);
    REQUIRE(b.sources.size() == 1);
    CHECK(b.sources[0].epoch == 0);
    CHECK(b.partitions[0].marks.empty());  // no mark for it
    auto store = make_memory_store();
    REQUIRE(store->claim_source("g", "t", 0));
    CHECK(store->commit(b).error() == errc::fenced_off);
    CHECK(store->positions().value().empty());
    // Dead slots take no messages and owe no offsets-only commit.
    CHECK(t.check(s0, 5) == Admit::not_live);
    for (const auto& r : t.due_offsets()) CHECK(r.partition != 0);
  }

  SUBCASE("a dead slot whose events the batch does not write needs no row") {
    // Decided again after the slot died: the guard abandons its events; the batch goes on with
    // the other slots' events.
    t.set_state(s0, SlotState::dead);
    PartitionState st;
    CHECK(t.guard(e0, st) == Verdict::abandoned);
    CHECK(t.guard(e3, st) == Verdict::decide);
    CommitBatch b = accepted({e3});
    const std::uint64_t tags[] = {t0, t3};
    t.add_sources(tags, b);
    REQUIRE(b.sources.size() == 1);
    CHECK(b.sources[0] == SourceOffset{"g", "t", 1, 101, 9});
    const auto c = t.completed(t0);
    CHECK(c.abandoned);
    CHECK(!c.replayed);
    CHECK(c.state == SlotState::dead);
    CHECK(!t.completed(t3).abandoned);
  }
}

TEST_CASE("offset tracker: a trade partition fed by several Kafka partitions at once") {
  // Two topics carry events of the same trade partitions: nothing is refused at the source,
  // each Kafka partition gets its own row and its own marker in each trade partition.
  OffsetTracker t("g");
  const SlotIndex a = t.open("t1", 0, 3, 0);
  const SlotIndex b = t.open("t2", 0, 7, 40);
  const PartitionKey k = key("A");
  const PartitionKey other = key("B");
  const auto a0 = event("A-1", 1, k);
  const auto b0 = event("B-1", 1, k);
  const auto a1 = event("A-2", 1, k);
  const auto b1 = event("B-2", 1, other);
  CHECK(t.check(a, 0) == Admit::submit);
  const auto ta0 = t.submitted(a, 0, a0);
  CHECK(t.check(b, 40) == Admit::submit);  // the same trade partition, in flight from t1
  const auto tb0 = t.submitted(b, 40, b0);
  const auto ta1 = t.submitted(a, 1, a1);
  const auto tb1 = t.submitted(b, 41, b1);

  SUBCASE("rows and marks") {
    CommitBatch batch = accepted({a0, b0, a1, b1});
    const std::uint64_t tags[] = {ta0, tb0, ta1, tb1};
    t.add_sources(tags, batch);
    REQUIRE(batch.sources.size() == 2);
    CHECK(batch.sources[0] == SourceOffset{"g", "t1", 0, 2, 3});
    CHECK(batch.sources[1] == SourceOffset{"g", "t2", 0, 42, 7});
    REQUIRE(batch.partitions.size() == 2);
    // k: one mark per Kafka partition, sorted by source id.
    CHECK(batch.partitions[0].marks ==
          std::vector<SourceMark>{{replay_marker_id("g", "t1", 0), 1},
                                  {replay_marker_id("g", "t2", 0), 40}});
    // The other trade partition only got t2's mark.
    CHECK(batch.partitions[1].marks ==
          std::vector<SourceMark>{{replay_marker_id("g", "t2", 0), 41}});
    for (const auto& p : batch.partitions)
      for (const auto& [id, rec] : p.trades) CHECK(id[0] != '\x1f');
  }

  SUBCASE("the replay guard reads the marker of the event's own Kafka partition") {
    // Before a crash t1's event at 0 was accepted in k (marker 0); nothing of t2 was. t2's
    // marker in the other trade partition is far ahead: it says nothing about k.
    PartitionState st;
    st.trades["A-1"] = TradeRecord{1};
    st.source_marks[replay_marker_id("g", "t1", 0)] = 0;
    CHECK(t.guard(a0, st) == Verdict::replayed);
    CHECK(t.guard(b0, st) == Verdict::decide);  // t2 has no marker in k: decided again
    CHECK(t.guard(a1, st) == Verdict::decide);  // above t1's marker
    // A marker of t2 far above does not make t1's later events decided.
    st.source_marks[replay_marker_id("g", "t2", 0)] = 1000;
    CHECK(t.guard(b0, st) == Verdict::replayed);
    CHECK(t.guard(a1, st) == Verdict::decide);
    CHECK(t.completed(ta0).replayed);
    CHECK(t.completed(tb0).replayed);
    CHECK(!t.completed(ta1).replayed);
  }

  SUBCASE("one source dies: its events are abandoned, the other's go on") {
    t.set_state(a, SlotState::dead);
    PartitionState st;
    CHECK(t.guard(a0, st) == Verdict::abandoned);
    CHECK(t.guard(b0, st) == Verdict::decide);
    CHECK(t.guard(a1, st) == Verdict::abandoned);
    CommitBatch batch = accepted({b0, b1});
    const std::uint64_t tags[] = {ta0, tb0, ta1, tb1};
    t.add_sources(tags, batch);
    REQUIRE(batch.sources.size() == 1);
    CHECK(batch.sources[0] == SourceOffset{"g", "t2", 0, 42, 7});
    CHECK(t.completed(ta0).abandoned);
    CHECK(t.completed(ta1).abandoned);
    CHECK(t.idle(a));
    t.close(a);
    // A new generation of t1 (claimed again) feeds the same trade partition at once.
    const SlotIndex a2 = t.open("t1", 0, 4, 0);
    CHECK(t.check(a2, 0) == Admit::submit);
    const auto ta2 = t.submitted(a2, 0, a0);
    CHECK(t.guard(a0, st) == Verdict::decide);
    CHECK(!t.completed(ta2).abandoned);
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
  st.source_marks[replay_marker_id("g", "t", 0)] = 6;
  CHECK(t.guard(amend, st) == Verdict::replayed);
  CHECK(t.guard(nw, st) == Verdict::replayed);
  CHECK(t.guard(later, st) == Verdict::decide);
  // Another partition's marker does not count, nor does another trade partition's event.
  PartitionState other;
  other.source_marks[replay_marker_id("g", "t", 1)] = 100;
  CHECK(t.guard(later, other) == Verdict::decide);
  CHECK(t.guard(event("T", 2, key("Z")), st) == Verdict::decide);
  CHECK(t.completed(ta).replayed);
  CHECK(t.completed(tn).replayed);
  CHECK(!t.completed(tl).replayed);
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
