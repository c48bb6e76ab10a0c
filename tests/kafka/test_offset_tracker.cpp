// The Kafka source's sans-I/O core (backends/kafka/offset_tracker.hpp), driven directly: tags,
// watermarks, the rows a commit carries, dead slots (abandoned events) and slots lost to another
// member, several Kafka partitions feeding one trade partition. (The source marks and replayed
// events are the pipeline's, through the source hook: tests/test_faults.cpp and test_kafka.cpp.)

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

/// The hook's view of the event of `tag` in a batch (written: ACCEPTED).
SourceEvent decided(std::uint64_t tag, bool written = true) {
  return SourceEvent{tag_slot(tag), tag_offset(tag), written};
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
  // Mark ids are those of the replay markers of schema version 3 (migration 4 moved them):
  // they cannot be trade ids.
  const std::string id = replay_marker_id("g", "t", 3);
  CHECK(!validate(event(id, 1, key("A"))).empty());
  CHECK(id < std::string(" "));
  OffsetTracker t("g");
  CHECK(t.mark_id(t.open("t", 3, 1, 0)) == id);
}

TEST_CASE("offset tracker: the watermark is the smallest undecided offset") {
  OffsetTracker t("g");
  const SlotIndex s = t.open("t", 0, 1, 10);
  CHECK(t.view(s).watermark == 10);
  const auto a = t.submitted(s, 10);
  const auto b = t.submitted(s, 11);
  t.answered(s, 12);  // a malformed message, decided at the source
  const auto c = t.submitted(s, 13);
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
  const auto e3 = event("C1", 1, key("C"));
  const auto t0 = t.submitted(s0, 0);
  const auto t1 = t.submitted(s0, 1);
  const auto t2 = t.submitted(s0, 2);
  const auto t3 = t.submitted(s1, 100);

  SUBCASE("the rows") {
    // The batch decided offsets 0 and 2 of partition 0 (1 is still in flight) and 100 of 1.
    CommitBatch b;
    const SourceEvent events[] = {decided(t2), decided(t0, false), decided(t3)};
    t.add_sources(events, b);
    REQUIRE(b.sources.size() == 2);
    CHECK(b.sources[0] == SourceOffset{"g", "t", 0, 1, 4});
    CHECK(b.sources[1] == SourceOffset{"g", "t", 1, 101, 9});
    // Nothing changed in the tracker: the batch may be refused and decided again.
    CHECK(t.view(s0).watermark == 0);
    CHECK(t.view(s0).in_flight == 3);
    // With offset 1 decided too, the row moves past 2.
    CHECK(t.completed(t1).known);
    CommitBatch again;
    const SourceEvent events2[] = {decided(t0), decided(t2)};
    t.add_sources(events2, again);
    REQUIRE(again.sources.size() == 1);
    CHECK(again.sources[0].next_offset == 3);
    // Rows only: the marks are the pipeline's.
    CommitBatch with_events = accepted({e0});
    t.add_sources(events2, with_events);
    CHECK(with_events.partitions[0].marks.empty());
  }

  SUBCASE("a write of a dead slot carries epoch 0, which every claimed row refuses") {
    // Decided (accepted) while the slot was live; the slot died before the commit.
    t.set_state(s0, SlotState::dead);
    CHECK(t.dead(s0));
    CommitBatch b = accepted({e0});
    const SourceEvent events[] = {decided(t0)};
    t.add_sources(events, b);
    REQUIRE(b.sources.size() == 1);
    CHECK(b.sources[0].epoch == 0);
    auto store = make_memory_store();
    REQUIRE(store->claim_source("g", "t", 0));
    CHECK(store->commit(b).error() == errc::fenced_off);
    CHECK(store->positions().value().empty());
    // Dead slots take no messages and owe no offsets-only commit.
    CHECK(t.check(s0, 5) == Admit::not_live);
    for (const auto& r : t.due_offsets()) CHECK(r.partition != 0);
  }

  SUBCASE("a dead slot whose events the batch does not write needs no row") {
    // Decided again after the slot died: the hook abandons its events (they are not in the
    // batch); the batch goes on with the other slots' events.
    t.set_state(s0, SlotState::dead);
    CHECK(t.dead(s0));
    CHECK(!t.dead(s1));
    CommitBatch b = accepted({e3});
    const SourceEvent events[] = {decided(t3)};
    t.add_sources(events, b);
    REQUIRE(b.sources.size() == 1);
    CHECK(b.sources[0] == SourceOffset{"g", "t", 1, 101, 9});
    const auto c = t.completed(t0);
    CHECK(c.known);
    CHECK(c.state == SlotState::dead);
  }
}

TEST_CASE("offset tracker: a trade partition fed by several Kafka partitions at once") {
  // Two topics carry events of the same trade partitions: nothing is refused at the source,
  // each Kafka partition gets its own row (and, from the pipeline, its own mark).
  OffsetTracker t("g");
  const SlotIndex a = t.open("t1", 0, 3, 0);
  const SlotIndex b = t.open("t2", 0, 7, 40);
  CHECK(t.check(a, 0) == Admit::submit);
  const auto ta0 = t.submitted(a, 0);
  CHECK(t.check(b, 40) == Admit::submit);  // the same trade partition, in flight from t1
  const auto tb0 = t.submitted(b, 40);
  const auto ta1 = t.submitted(a, 1);
  const auto tb1 = t.submitted(b, 41);
  CHECK(t.mark_id(a) != t.mark_id(b));

  SUBCASE("rows") {
    CommitBatch batch;
    const SourceEvent events[] = {decided(ta0), decided(tb0), decided(ta1), decided(tb1)};
    t.add_sources(events, batch);
    REQUIRE(batch.sources.size() == 2);
    CHECK(batch.sources[0] == SourceOffset{"g", "t1", 0, 2, 3});
    CHECK(batch.sources[1] == SourceOffset{"g", "t2", 0, 42, 7});
  }

  SUBCASE("one source dies: its events are abandoned, the other's go on") {
    t.set_state(a, SlotState::dead);
    CHECK(t.dead(a));
    CHECK(!t.dead(b));
    CommitBatch batch;
    const SourceEvent events[] = {decided(tb0), decided(tb1)};
    t.add_sources(events, batch);
    REQUIRE(batch.sources.size() == 1);
    CHECK(batch.sources[0] == SourceOffset{"g", "t2", 0, 42, 7});
    CHECK(t.completed(ta0).known);
    CHECK(t.completed(ta1).known);
    CHECK(t.idle(a));
    t.close(a);
    // A new generation of t1 (claimed again) feeds the same trade partition at once.
    const SlotIndex a2 = t.open("t1", 0, 4, 0);
    CHECK(t.check(a2, 0) == Admit::submit);
    t.submitted(a2, 0);
    CHECK(!t.dead(a2));
  }
}

TEST_CASE("offset tracker: rows a refused commit found stale kill their slots, no others") {
  OffsetTracker t("g");
  const SlotIndex a = t.open("t", 0, 3, 0);
  const SlotIndex b = t.open("t", 1, 5, 0);
  // Another group's row, and a row of an older generation of b: not ours to act on.
  const SourceOffset others[] = {SourceOffset{"h", "t", 0, 9, 3}, SourceOffset{"g", "t", 1, 0, 4}};
  CHECK(t.lost(others).empty());
  CHECK(!t.dead(a));
  CHECK(!t.dead(b));
  const SourceOffset stale[] = {SourceOffset{"g", "t", 0, 7, 3}};
  const auto killed = t.lost(stale);
  REQUIRE(killed.size() == 1);
  CHECK(killed[0].index == a);
  CHECK(t.lost(stale).empty());  // dead already
  CHECK(t.dead(a));
  CHECK(!t.dead(b));
  CHECK(t.check(a, 0) == Admit::not_live);
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
