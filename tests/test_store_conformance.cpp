// The TradeStore conformance suite: every test runs against every backend of
// store_conformance.hpp. SQLite-only checks (reopening, the schema, plain-SQL columns) follow, then
// PostgreSQL-only ones (two hosts on one database, restarts, lock waits, statement counts).

#include "store_conformance.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#ifdef TRADECAPTURE_HAVE_SOCI
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include "../backends/soci/sql_faults.hpp"  // the SQLSTATE classification (a private header)
#endif

using namespace tradecapture;
using namespace tctest;

namespace {

/// Loads one partition.
PartitionState load(StoreUnderTest& s, const PartitionKey& k) {
  auto r = s->load_partitions(std::span<const PartitionKey>(&k, 1));
  REQUIRE(r.has_value());
  REQUIRE(r.value().size() == 1);
  return r.value()[0];
}

/// Looks up one idempotency key.
std::optional<StoredEvent> find(StoreUnderTest& s, std::string trade_id, std::int64_t version) {
  IdempotencyKey k{std::move(trade_id), version};
  auto r = s->find_events(std::span<const IdempotencyKey>(&k, 1));
  REQUIRE(r.has_value());
  REQUIRE(r.value().size() == 1);
  return r.value()[0];
}

/// Every event, in scan order.
std::vector<StoredEvent> scan(StoreUnderTest& s) {
  std::vector<StoredEvent> out;
  auto r = s->scan_events([&](const StoredEvent& e) {
    out.push_back(e);
    return true;
  });
  REQUIRE(r.has_value());
  return out;
}

std::vector<PositionRow> positions(StoreUnderTest& s) {
  auto r = s->positions();
  REQUIRE(r.has_value());
  return r.value();
}

void require_commit(StoreUnderTest& s, const CommitBatch& b) {
  auto r = s->commit(b);
  REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? std::string() : r.error().message()));
}

bool same_event(const StoredEvent& a, const StoredEvent& b) {
  return a.seq == b.seq && a.event.trade_id == b.event.trade_id &&
         a.event.version == b.event.version && a.event.type == b.event.type &&
         a.event.partition == b.event.partition &&
         (a.event.type == TradeType::Cancel ||
          (a.event.side == b.event.side && a.event.quantity == b.event.quantity &&
           a.event.price == b.event.price));
}

Position sample_position() {
  Position p;
  p.net_quantity = dec("-12.5");
  p.bought_quantity = dec("100");
  p.sold_quantity = dec("112.5");
  p.bought_notional = dec("18725.123456789");
  p.sold_notional = dec("0.00000000000001");
  p.live_trades = 2;
  return p;
}

/// Nothing of partition `k` is stored.
void require_untouched(StoreUnderTest& s, const PartitionKey& k) {
  const PartitionState st = load(s, k);
  CHECK(st.seq == 0);
  CHECK(st.fence == 0);
  CHECK(st.trades.empty());
  CHECK(st.position == Position{});
}

/// Commits `b`, which must be refused with `want` and write nothing: the partitions `untouched`
/// stay unstored, and so does version 1 of the trades `absent`.
void require_refused(StoreUnderTest& s, const CommitBatch& b, errc want,
                     std::initializer_list<PartitionKey> untouched = {},
                     std::initializer_list<const char*> absent = {}) {
  CHECK(error_of(s->commit(b)) == want);
  for (const auto& k : untouched) require_untouched(s, k);
  for (const char* id : absent) CHECK_FALSE(find(s, id, 1).has_value());
}

}  // namespace

TEST_CASE("store: a never-written partition loads as an empty state") {
  for_each_store([](StoreUnderTest& s) {
    const std::vector<PartitionKey> keys{key("A"), key("B")};
    auto r = s->load_partitions(keys);
    REQUIRE(r.has_value());
    REQUIRE(r.value().size() == 2);
    for (const auto& st : r.value()) {
      CHECK(st.seq == 0);
      CHECK(st.fence == 0);
      CHECK(st.position == Position{});
      CHECK(st.trades.empty());
    }
    CHECK(positions(s).empty());
    CHECK(scan(s).empty());
    CHECK_FALSE(find(s, "T1", 1).has_value());
    CHECK(s->load_partitions({}).value().empty());
    CHECK(s->find_events({}).value().empty());
  });
}

TEST_CASE("store: commit then load gives position, seq, fence and trades") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey k = key("ACC");
    UpdateBuilder u(k, 7, 0);
    u.add(new_trade("T1", Side::Buy, "100", "187.25"))
        .add(new_trade("T2", Side::Sell, "112.5", "3"))
        .add(event("T2", 2, TradeType::Amend, Side::Sell, "112.5", "3.5"))
        .add(new_trade("T3", Side::Buy, "1", "1"))
        .add(event("T3", 2, TradeType::Cancel))
        .position(sample_position());
    require_commit(s, batch({u}));

    const PartitionState st = load(s, k);
    CHECK(st.seq == 5);
    CHECK(st.fence == 7);
    CHECK(st.position == sample_position());
    REQUIRE(st.trades.size() == 3);
    CHECK(st.trades.at("T1") == TradeRecord{1, Side::Buy, dec("100"), dec("187.25"), false});
    CHECK(st.trades.at("T2") == TradeRecord{2, Side::Sell, dec("112.5"), dec("3.5"), false});
    CHECK(st.trades.at("T3") == TradeRecord{2, Side::Buy, dec("1"), dec("1"), true});

    // A second batch continues the sequence and replaces trade records.
    UpdateBuilder u2(k, 7, 5);
    u2.add(event("T1", 2, TradeType::Amend, Side::Sell, "5", "6")).position(Position{});
    require_commit(s, batch({u2}));
    const PartitionState st2 = load(s, k);
    CHECK(st2.seq == 6);
    CHECK(st2.position == Position{});
    CHECK(st2.trades.size() == 3);
    CHECK(st2.trades.at("T1") == TradeRecord{2, Side::Sell, dec("5"), dec("6"), false});
    CHECK(st2.trades.at("T2").version == 2);
  });
}

TEST_CASE("store: find_events returns the stored event or nothing, in the order asked") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey k = key("A", "B_C", "S:1");
    UpdateBuilder u(k, 1, 0);
    u.add(new_trade("T1", Side::Sell, "0.000001", "999999999.99999999"))
        .add(event("T1", 2, TradeType::Amend, Side::Buy, "1000000000000", "0"))
        .add(event("T1", 3, TradeType::Cancel));
    const PartitionUpdate built = u;
    require_commit(s, batch({built}));

    const std::vector<IdempotencyKey> keys{{"T1", 3}, {"T9", 1}, {"T1", 1},
                                           {"T1", 4}, {"T1", 2}, {"t1", 1}};
    auto r = s->find_events(keys);
    REQUIRE(r.has_value());
    const auto& found = r.value();
    REQUIRE(found.size() == keys.size());
    REQUIRE(found[0].has_value());
    CHECK(same_event(*found[0], built.events[2]));
    CHECK(found[0]->event.type == TradeType::Cancel);
    CHECK(found[0]->seq == 3);
    CHECK_FALSE(found[1].has_value());
    REQUIRE(found[2].has_value());
    CHECK(same_event(*found[2], built.events[0]));
    CHECK(found[2]->event.side == Side::Sell);
    CHECK(found[2]->event.quantity == dec("0.000001"));
    CHECK(found[2]->event.price == dec("999999999.99999999"));
    CHECK(found[2]->event.partition == k);
    CHECK_FALSE(found[3].has_value());
    REQUIRE(found[4].has_value());
    CHECK(same_event(*found[4], built.events[1]));
    CHECK(found[4]->event.quantity == dec("1000000000000"));
    CHECK_FALSE(found[5].has_value());  // trade ids are compared exactly
  });
}

TEST_CASE("store: find_events names the fence of the commit that stored each event") {
  for_each_store([](StoreUnderTest& s) {
    // A lost acknowledgement is told apart from another claimant's identical commit by this.
    const PartitionKey k = key("A"), j = key("B");
    require_commit(s, batch({UpdateBuilder(k, 1, 0).add(new_trade("T1")).add(new_trade("T2")),
                             UpdateBuilder(j, 6, 0).add(new_trade("U1"))}));
    require_commit(s, batch({UpdateBuilder(k, 3, 2).add(event("T1", 2, TradeType::Cancel))}));
    const std::vector<IdempotencyKey> keys{{"T1", 1}, {"T2", 1}, {"U1", 1}, {"T1", 2}};
    auto r = s->find_events(keys);
    REQUIRE(r.has_value());
    REQUIRE(r.value().size() == keys.size());
    for (const auto& f : r.value()) REQUIRE(f.has_value());
    CHECK(r.value()[0]->fence == 1);
    CHECK(r.value()[1]->fence == 1);
    CHECK(r.value()[2]->fence == 6);
    CHECK(r.value()[3]->fence == 3);
  });
}

TEST_CASE("store: a sequence conflict writes nothing of the batch") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("A"), b = key("B");
    require_commit(s, batch({UpdateBuilder(b, 1, 0).add(new_trade("T1"))}));

    // A (new, valid) comes first and is written before B's stale expected_seq is found.
    require_refused(s,
                    batch({UpdateBuilder(a, 1, 0).add(new_trade("TA")),
                           UpdateBuilder(b, 1, 0).add(new_trade("TB"))}),
                    errc::sequence_conflict, {a}, {"TA", "TB"});
    CHECK(load(s, b).seq == 1);

    // expected_seq ahead of the stored one, and a never-written partition expected at seq 3.
    CHECK(error_of(s->commit(batch({UpdateBuilder(b, 1, 2).add(new_trade("TB"))}))) ==
          errc::sequence_conflict);
    CHECK(error_of(s->commit(batch({UpdateBuilder(key("C"), 1, 3).add(new_trade("TC"))}))) ==
          errc::sequence_conflict);
    require_untouched(s, key("C"));
    CHECK(positions(s).size() == 1);

    // The store is usable after the refusals.
    require_commit(s, batch({UpdateBuilder(a, 1, 0).add(new_trade("TA")),
                             UpdateBuilder(b, 1, 1).add(new_trade("TB"))}));
    CHECK(load(s, a).seq == 1);
    CHECK(load(s, b).seq == 2);
  });
}

TEST_CASE("store: a stale fencing token is fenced off and writes nothing") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("A"), p = key("P");
    require_commit(s, batch({UpdateBuilder(p, 5, 0).add(new_trade("T1"))}));

    require_refused(s,
                    batch({UpdateBuilder(a, 3, 0).add(new_trade("TA")),
                           UpdateBuilder(p, 3, 1).add(new_trade("T2"))}),
                    errc::fenced_off, {a}, {"TA", "T2"});
    const PartitionState st = load(s, p);
    CHECK(st.seq == 1);
    CHECK(st.fence == 5);

    // A stale token wins over a wrong sequence number: the writer has lost the partition.
    CHECK(error_of(s->commit(batch({UpdateBuilder(p, 4, 0).add(new_trade("T2"))}))) ==
          errc::fenced_off);
  });
}

TEST_CASE("store: an equal or higher fencing token writes and is stored") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey p = key("P");
    require_commit(s, batch({UpdateBuilder(p, 5, 0).add(new_trade("T1"))}));
    require_commit(s, batch({UpdateBuilder(p, 5, 1).add(new_trade("T2"))}));
    CHECK(load(s, p).fence == 5);
    require_commit(s, batch({UpdateBuilder(p, 9, 2).add(new_trade("T3"))}));
    PartitionState st = load(s, p);
    CHECK(st.fence == 9);
    CHECK(st.seq == 3);
    CHECK(error_of(s->commit(batch({UpdateBuilder(p, 8, 3).add(new_trade("T4"))}))) ==
          errc::fenced_off);
    CHECK(load(s, p).seq == 3);
  });
}

TEST_CASE("store: an idempotency key taken in another partition is a key conflict") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("A"), x = key("X"), y = key("Y");
    require_commit(s, batch({UpdateBuilder(x, 1, 0).add(new_trade("T1"))}));

    require_refused(s,
                    batch({UpdateBuilder(a, 1, 0).add(new_trade("T2")),
                           UpdateBuilder(y, 1, 0).add(new_trade("T1"))}),
                    errc::key_conflict, {a, y}, {"T2"});
    REQUIRE(find(s, "T1", 1).has_value());
    CHECK(find(s, "T1", 1)->event.partition == x);

    // The same key twice within one batch.
    require_refused(s,
                    batch({UpdateBuilder(a, 1, 0).add(new_trade("T5")),
                           UpdateBuilder(y, 1, 0).add(new_trade("T5"))}),
                    errc::key_conflict, {a, y});

    // Another version of the same trade id is another key.
    require_commit(s, batch({UpdateBuilder(y, 1, 0).add(event("T1", 2, TradeType::Cancel))}));
    CHECK(load(s, y).seq == 1);
    CHECK(positions(s).size() == 2);
  });
}

TEST_CASE("store: positions are sorted bytewise and omit partitions without events") {
  for_each_store([](StoreUnderTest& s) {
    // The expected order, written out by hand (bytewise on account, then book, then security).
    const std::vector<PartitionKey> expected{
        key("A", "B", "C"),
        key("A", "B", "C "),
        key("A", "B_C", "S"),
        key("A_B", "C", "S"),
        key("a'b\"c\\d:e", "x/y", "%_*"),
        key("z", "b", "s"),
        key("\xC3\xA9", "b", "s"),  // U+00E9 sorts after every ASCII byte
    };
    std::vector<PartitionKey> sorted = expected;
    std::sort(sorted.begin(), sorted.end());
    REQUIRE(sorted == expected);

    std::vector<PartitionUpdate> updates;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      UpdateBuilder u(expected[i], 1, 0);
      for (std::size_t n = 0; n <= i; ++n) {
        u.add(new_trade("T" + std::to_string(i) + "." + std::to_string(n)));
      }
      Position p;
      p.net_quantity = dec(std::to_string(i));
      p.live_trades = static_cast<std::int64_t>(i + 1);
      updates.push_back(u.position(p));
    }
    // Committed in two batches in reverse halves, so insertion order is not key order.
    require_commit(s, batch({updates.begin() + 4, updates.end()}));
    require_commit(s, batch({updates.begin(), updates.begin() + 4}));
    // A partition row without events (seq 0) is not a position.
    require_commit(s, batch({UpdateBuilder(key("0"), 1, 0)}));

    const auto rows = positions(s);
    REQUIRE(rows.size() == expected.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
      CAPTURE(i);
      CHECK(rows[i].partition == expected[i]);
      CHECK(rows[i].seq == i + 1);
      CHECK(rows[i].position.net_quantity == dec(std::to_string(i)));
      CHECK(rows[i].position.live_trades == static_cast<std::int64_t>(i + 1));
    }
  });
}

TEST_CASE("store: scan_events is sorted by partition then seq and stops early") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("a"), b = key("b"), c = key("a", "B_");
    require_commit(s, batch({UpdateBuilder(b, 1, 0).add(new_trade("B1")).add(new_trade("B2"))}));
    require_commit(s, batch({UpdateBuilder(c, 1, 0).add(new_trade("C1"))}));
    require_commit(s, batch({UpdateBuilder(a, 1, 0).add(new_trade("A1"))}));
    require_commit(s, batch({UpdateBuilder(a, 1, 1)
                                 .add(event("A1", 2, TradeType::Cancel))
                                 .add(new_trade("A2", Side::Sell, "2", "3")),
                             UpdateBuilder(b, 1, 2).add(new_trade("B3"))}));
    const auto events = scan(s);
    std::vector<std::pair<std::string, std::uint64_t>> got;
    for (const auto& e : events) got.emplace_back(e.event.trade_id, e.seq);
    const std::vector<std::pair<std::string, std::uint64_t>> want{
        {"A1", 1}, {"A1", 2}, {"A2", 3}, {"C1", 1}, {"B1", 1}, {"B2", 2}, {"B3", 3}};
    CHECK(got == want);
    REQUIRE(events.size() == want.size());
    CHECK(events[0].event.partition == a);
    CHECK(events[1].event.type == TradeType::Cancel);
    CHECK(events[2].event.side == Side::Sell);
    CHECK(events[2].event.quantity == dec("2"));
    CHECK(events[3].event.partition == c);

    int calls = 0;
    auto r = s->scan_events([&](const StoredEvent&) { return ++calls < 3; });
    CHECK(r.has_value());
    CHECK(calls == 3);
    // The store is usable after an early stop.
    require_commit(s, batch({UpdateBuilder(key("d"), 1, 0).add(new_trade("D1"))}));
    CHECK(scan(s).size() == want.size() + 1);
  });
}

TEST_CASE("store: decimals round-trip exactly") {
  for_each_store([](StoreUnderTest& s) {
    const std::vector<std::string> values{"1000000000000000000000000",
                                          "-1000000000000000000000000",
                                          "0.00000000000001",
                                          "-0.00000000000001",
                                          "123456789012.123456",
                                          "999999999999999999999999.99999999999999",
                                          "0",
                                          "-0.00000001",
                                          "42"};
    const PartitionKey k = key("D");
    UpdateBuilder u(k, 1, 0);
    u.add(new_trade("Q1", Side::Buy, "1000000000000", "1000000000"))
        .add(new_trade("Q2", Side::Sell, "0.000001", "0.00000001"))
        .add(new_trade("Q3", Side::Buy, "123456.654321", "0"));
    for (std::size_t i = 0; i < values.size(); ++i) {
      u.set_trade("R" + std::to_string(i),
                  TradeRecord{1, Side::Buy, dec(values[i]), dec(values[(i + 1) % values.size()]),
                              i % 2 == 0});
    }
    Position p;
    p.net_quantity = dec(values[0]);
    p.bought_quantity = dec(values[1]);
    p.sold_quantity = dec(values[2]);
    p.bought_notional = dec(values[4]);
    p.sold_notional = dec(values[5]);
    p.live_trades = -3;
    require_commit(s, batch({u.position(p)}));

    const PartitionState st = load(s, k);
    CHECK(st.position == p);
    const PartitionUpdate built = u;
    for (const auto& [id, record] : built.trades) {
      CAPTURE(id);
      REQUIRE(st.trades.contains(id));
      CHECK(st.trades.at(id) == record);
    }
    CHECK(st.position.bought_quantity.to_string() == values[1]);
    const auto rows = positions(s);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].position == p);
    const auto q1 = find(s, "Q1", 1);
    REQUIRE(q1.has_value());
    CHECK(q1->event.quantity == dec("1000000000000"));
    CHECK(q1->event.price == dec("1000000000"));
    const auto q2 = find(s, "Q2", 1);
    REQUIRE(q2.has_value());
    CHECK(q2->event.quantity == dec("0.000001"));
    CHECK(q2->event.price == dec("0.00000001"));
    const auto events = scan(s);
    REQUIRE(events.size() == 3);
    CHECK(events[2].event.quantity == dec("123456.654321"));
  });
}

TEST_CASE("store: one batch with a thousand partitions") {
  for_each_store([](StoreUnderTest& s) {
    std::vector<PartitionUpdate> updates;
    for (int i = 0; i < 1000; ++i) {
      char account[16];
      std::snprintf(account, sizeof account, "ACC%04d", i);
      updates.push_back(UpdateBuilder(key(account), 1, 0)
                            .add(new_trade(std::string("T") + account))
                            .add(new_trade(std::string("U") + account, Side::Sell, "2", "3")));
    }
    require_commit(s, batch(updates));
    const auto rows = positions(s);
    REQUIRE(rows.size() == 1000);
    CHECK(rows.front().partition.account == "ACC0000");
    CHECK(rows.back().partition.account == "ACC0999");
    CHECK(std::all_of(rows.begin(), rows.end(), [](const auto& r) { return r.seq == 2; }));
    CHECK(scan(s).size() == 2000);

    std::vector<PartitionKey> keys{key("ACC0500"), key("ACC0999"), key("nope")};
    auto loaded = s->load_partitions(keys);
    REQUIRE(loaded.has_value());
    CHECK(loaded.value()[0].seq == 2);
    CHECK(loaded.value()[0].trades.size() == 2);
    CHECK(loaded.value()[1].seq == 2);
    CHECK(loaded.value()[2].seq == 0);

    // The next batch over all of them.
    for (auto& u : updates) {
      UpdateBuilder next(u.partition, 2, 2);
      next.add(event("T" + u.partition.account, 2, TradeType::Cancel));
      u = next;
    }
    require_commit(s, batch(updates));
    CHECK(load(s, key("ACC0123")).seq == 3);
    CHECK(load(s, key("ACC0123")).fence == 2);
  });
}

TEST_CASE("store: concurrent commits on disjoint partitions all land") {
  for_each_store([](StoreUnderTest& s) {
    constexpr int threads = 4, batches = 40, per_batch = 8;
    std::atomic<int> failures{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int b = 0; b < batches; ++b) {
          std::vector<PartitionUpdate> updates;
          for (int p = 0; p < per_batch; ++p) {
            const PartitionKey k = key("T" + std::to_string(t), "P" + std::to_string(p));
            updates.push_back(UpdateBuilder(k, 1, static_cast<std::uint64_t>(b))
                                  .add(new_trade(std::to_string(t) + "/" + std::to_string(p) + "/" +
                                                 std::to_string(b))));
          }
          // Interleave reads with the writes of the other threads.
          std::vector<PartitionKey> keys{updates.front().partition};
          if (!s->load_partitions(keys) || !s->find_events(std::vector<IdempotencyKey>{{"x", 1}})) {
            ++failures;
          }
          if (!s->commit(batch(std::move(updates)))) ++failures;
        }
      });
    }
    for (auto& th : pool) th.join();
    CHECK(failures.load() == 0);
    const auto rows = positions(s);
    CHECK(rows.size() == static_cast<std::size_t>(threads * per_batch));
    CHECK(std::all_of(rows.begin(), rows.end(), [](const auto& r) { return r.seq == batches; }));
    CHECK(scan(s).size() == static_cast<std::size_t>(threads * per_batch * batches));
  });
}

TEST_CASE("store: commit refuses a batch that breaks its invariants") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("A"), b = key("B");
    // Partitions out of order, and the same partition twice.
    CHECK(error_of(s->commit(batch({UpdateBuilder(b, 1, 0).add(new_trade("T1")),
                                    UpdateBuilder(a, 1, 0).add(new_trade("T2"))}))) ==
          errc::internal);
    CHECK(error_of(s->commit(batch({UpdateBuilder(a, 1, 0).add(new_trade("T1")),
                                    UpdateBuilder(a, 1, 0).add(new_trade("T2"))}))) ==
          errc::internal);
    // new_seq not expected_seq + events.
    PartitionUpdate wrong_new = UpdateBuilder(a, 1, 0).add(new_trade("T1"));
    wrong_new.new_seq = 2;
    CHECK(error_of(s->commit(batch({wrong_new}))) == errc::internal);
    // An event whose seq is not the next one.
    PartitionUpdate gap = UpdateBuilder(a, 1, 0).add(new_trade("T1")).add(new_trade("T2"));
    gap.events[1].seq = 3;
    gap.new_seq = 3;
    CHECK(error_of(s->commit(batch({gap}))) == errc::internal);
    // An event of another partition.
    PartitionUpdate foreign = UpdateBuilder(a, 1, 0).add(new_trade("T1"));
    foreign.events[0].event.partition = b;
    CHECK(error_of(s->commit(batch({foreign}))) == errc::internal);

    require_untouched(s, a);
    require_untouched(s, b);
    CHECK(scan(s).empty());
    CHECK(s->commit(CommitBatch{}).has_value());  // an empty batch is a no-op
  });
}

TEST_CASE("store: ping and describe") {
  for_each_store([](StoreUnderTest& s) {
    CHECK(s->ping().has_value());
    const std::string d = s->describe();
    CHECK((d == "memory:" || d.starts_with("sqlite:") || d.starts_with("postgresql://")));
    if (!s.uri.empty()) CHECK(d == s.uri);
  });
}

// ---- source offsets (TradeStore::claim_source, CommitBatch::sources) --------------------------

namespace {

SourceOffset claim(StoreUnderTest& s, const std::string& consumer, const std::string& topic,
                   std::int32_t partition) {
  auto r = s->claim_source(consumer, topic, partition);
  REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? std::string() : r.error().message()));
  return r.value();
}

std::vector<SourceOffset> offsets(StoreUnderTest& s, const std::string& consumer) {
  auto r = s->source_offsets(consumer);
  REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? std::string() : r.error().message()));
  return r.value();
}

}  // namespace

TEST_CASE("store: claim_source creates the row at epoch 1, then increments the epoch") {
  for_each_store([](StoreUnderTest& s) {
    CHECK(offsets(s, "g").empty());
    CHECK(claim(s, "g", "trades", 0) == source("g", "trades", 0, 0, 1));
    CHECK(claim(s, "g", "trades", 0) == source("g", "trades", 0, 0, 2));
    CHECK(claim(s, "g", "trades", 0) == source("g", "trades", 0, 0, 3));
    // Each (consumer, topic, partition) has its own epoch.
    CHECK(claim(s, "g", "trades", 1) == source("g", "trades", 1, 0, 1));
    CHECK(claim(s, "g", "other", 0) == source("g", "other", 0, 0, 1));
    CHECK(claim(s, "h", "trades", 0) == source("h", "trades", 0, 0, 1));
    CHECK(offsets(s, "g") == std::vector<SourceOffset>{source("g", "other", 0, 0, 1),
                                                       source("g", "trades", 0, 0, 3),
                                                       source("g", "trades", 1, 0, 1)});
    // A claim keeps the stored offset and returns it with the new epoch.
    require_commit(s, batch({}, {source("g", "trades", 0, 1234, 3)}));
    CHECK(claim(s, "g", "trades", 0) == source("g", "trades", 0, 1234, 4));
    CHECK(offsets(s, "g")[1] == source("g", "trades", 0, 1234, 4));
  });
}

TEST_CASE("store: concurrent claims of one source partition each get their own epoch") {
  for_each_store([](StoreUnderTest& s) {
    constexpr int threads = 4, per_thread = 10;
    std::vector<std::vector<std::uint64_t>> epochs(threads);
    std::atomic<int> failures{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          auto r = s->claim_source("g", "trades", 7);
          if (r) {
            epochs[t].push_back(r.value().epoch);
          } else {
            ++failures;
          }
        }
      });
    }
    for (auto& th : pool) th.join();
    CHECK(failures.load() == 0);
    std::vector<std::uint64_t> all;
    for (const auto& e : epochs) all.insert(all.end(), e.begin(), e.end());
    std::sort(all.begin(), all.end());
    std::vector<std::uint64_t> expected(threads * per_thread);
    for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = i + 1;
    CHECK(all == expected);  // no epoch handed out twice, none skipped
    CHECK(offsets(s, "g") ==
          std::vector<SourceOffset>{source("g", "trades", 7, 0, threads * per_thread)});
  });
}

TEST_CASE("store: a batch may carry source offsets only") {
  for_each_store([](StoreUnderTest& s) {
    CHECK(claim(s, "g", "t", 0).epoch == 1);
    CHECK(claim(s, "g", "t", 1).epoch == 1);
    require_commit(s, batch({}, {source("g", "t", 0, 42, 1), source("g", "t", 1, 7, 1)}));
    CHECK(offsets(s, "g") ==
          std::vector<SourceOffset>{source("g", "t", 0, 42, 1), source("g", "t", 1, 7, 1)});
    // A row never claimed is created by the commit as it is.
    require_commit(s, batch({}, {source("g", "u", 3, 5, 0)}));
    CHECK(offsets(s, "g").back() == source("g", "u", 3, 5, 0));
    // The same epoch again moves the offset (also backwards: the writer decides).
    require_commit(s, batch({}, {source("g", "t", 0, 40, 1)}));
    CHECK(offsets(s, "g")[0] == source("g", "t", 0, 40, 1));
    CHECK(positions(s).empty());
    CHECK(scan(s).empty());
  });
}

TEST_CASE("store: source offsets commit with the events, atomically") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("A"), b = key("B");
    CHECK(claim(s, "g", "t", 0).epoch == 1);
    require_commit(
        s, batch({UpdateBuilder(a, 1, 0).add(new_trade("T1"))}, {source("g", "t", 0, 1, 1)}));
    CHECK(load(s, a).seq == 1);
    CHECK(offsets(s, "g") == std::vector<SourceOffset>{source("g", "t", 0, 1, 1)});
    const std::vector<SourceOffset> before = offsets(s, "g");

    // Refused for an idempotency key: the offsets of the batch are not written either.
    CHECK(error_of(s->commit(batch({UpdateBuilder(b, 1, 0).add(new_trade("T1"))},
                                   {source("g", "t", 0, 2, 1), source("g", "t", 1, 9, 1)}))) ==
          errc::key_conflict);
    CHECK(offsets(s, "g") == before);
    require_untouched(s, b);
    // Refused for a sequence number: the same.
    CHECK(error_of(s->commit(batch({UpdateBuilder(a, 1, 0).add(new_trade("T2"))},
                                   {source("g", "t", 0, 2, 1)}))) == errc::sequence_conflict);
    CHECK(offsets(s, "g") == before);
    CHECK_FALSE(find(s, "T2", 1).has_value());
    // Refused for a partition's fencing token: the same.
    CHECK(error_of(s->commit(batch({UpdateBuilder(a, 0, 1).add(new_trade("T2"))},
                                   {source("g", "t", 0, 2, 1)}))) == errc::fenced_off);
    CHECK(offsets(s, "g") == before);

    // Refused for a stale source epoch: no event, partition or trade is written.
    CHECK(claim(s, "g", "t", 0).epoch == 2);
    require_refused(s,
                    batch({UpdateBuilder(a, 1, 1).add(new_trade("T2")),
                           UpdateBuilder(b, 1, 0).add(new_trade("T3"))},
                          {source("g", "t", 0, 3, 1)}),
                    errc::fenced_off, {b}, {"T2", "T3"});
    CHECK(load(s, a).seq == 1);
    CHECK(load(s, a).trades.size() == 1);
    CHECK(offsets(s, "g") == std::vector<SourceOffset>{source("g", "t", 0, 1, 2)});
    // The stale source last in the batch: the fresh ones before it are not written either.
    CHECK(error_of(s->commit(batch({UpdateBuilder(a, 1, 1).add(new_trade("T2"))},
                                   {source("g", "s", 0, 8, 0), source("g", "t", 0, 3, 1)}))) ==
          errc::fenced_off);
    CHECK(offsets(s, "g") == std::vector<SourceOffset>{source("g", "t", 0, 1, 2)});
    CHECK(load(s, a).seq == 1);

    // The new owner's batch lands whole.
    require_commit(s, batch({UpdateBuilder(a, 1, 1).add(new_trade("T2")),
                             UpdateBuilder(b, 1, 0).add(new_trade("T3"))},
                            {source("g", "s", 0, 8, 0), source("g", "t", 0, 3, 2)}));
    CHECK(load(s, a).seq == 2);
    CHECK(load(s, b).seq == 1);
    CHECK(offsets(s, "g") ==
          std::vector<SourceOffset>{source("g", "s", 0, 8, 0), source("g", "t", 0, 3, 2)});
  });
}

TEST_CASE("store: a source write with an older epoch is refused after a newer claim") {
  for_each_store([](StoreUnderTest& s) {
    CHECK(claim(s, "g", "t", 0).epoch == 1);  // the first owner
    require_commit(s, batch({}, {source("g", "t", 0, 10, 1)}));
    CHECK(claim(s, "g", "t", 0) == source("g", "t", 0, 10, 2));  // a rebalance: a new owner
    CHECK(error_of(s->commit(batch({}, {source("g", "t", 0, 11, 1)}))) == errc::fenced_off);
    CHECK(offsets(s, "g") == std::vector<SourceOffset>{source("g", "t", 0, 10, 2)});
    require_commit(s, batch({}, {source("g", "t", 0, 12, 2)}));
    // A higher epoch than stored is written (and raises the stored epoch).
    require_commit(s, batch({}, {source("g", "t", 0, 13, 5)}));
    CHECK(offsets(s, "g") == std::vector<SourceOffset>{source("g", "t", 0, 13, 5)});
    CHECK(error_of(s->commit(batch({}, {source("g", "t", 0, 14, 4)}))) == errc::fenced_off);
    CHECK(claim(s, "g", "t", 0) == source("g", "t", 0, 13, 6));
    // Other source partitions are not fenced by it.
    require_commit(s, batch({}, {source("g", "t", 1, 1, 1)}));
  });
}

TEST_CASE("store: source_offsets lists one consumer's rows sorted by topic, then partition") {
  for_each_store([](StoreUnderTest& s) {
    // Written out of order, in several batches; topics compared bytewise, partitions as numbers.
    const std::string e_acute = "\xC3\xA9";
    claim(s, "g", "b", 10);
    claim(s, "g", e_acute, 0);
    claim(s, "g", "b", 2);
    claim(s, "g2", "a", 0);  // other consumers, one a prefix of the other
    claim(s, "", "a", 0);
    require_commit(s, batch({}, {source("g", "B", 0, 5, 1), source("g", "a", 3, 6, 1)}));
    claim(s, "g", "b", -1);
    const std::vector<SourceOffset> expected{
        source("g", "B", 0, 5, 1), source("g", "a", 3, 6, 1),  source("g", "b", -1, 0, 1),
        source("g", "b", 2, 0, 1), source("g", "b", 10, 0, 1), source("g", e_acute, 0, 0, 1)};
    CHECK(offsets(s, "g") == expected);
    CHECK(offsets(s, "g2") == std::vector<SourceOffset>{source("g2", "a", 0, 0, 1)});
    CHECK(offsets(s, "") == std::vector<SourceOffset>{source("", "a", 0, 0, 1)});
    CHECK(offsets(s, "G").empty());
    CHECK(offsets(s, "nobody").empty());
  });
}

TEST_CASE("store: commit refuses source offsets out of order, repeated or negative") {
  for_each_store([](StoreUnderTest& s) {
    CHECK(error_of(s->commit(batch({}, {source("g", "t", 1, 0, 1), source("g", "t", 0, 0, 1)}))) ==
          errc::internal);
    CHECK(error_of(s->commit(batch({}, {source("g", "t", 0, 0, 1), source("g", "t", 0, 1, 1)}))) ==
          errc::internal);
    CHECK(error_of(s->commit(batch({UpdateBuilder(key("A"), 1, 0).add(new_trade("T1"))},
                                   {source("g", "t", 0, -1, 1)}))) == errc::internal);
    CHECK(offsets(s, "g").empty());
    require_untouched(s, key("A"));
  });
}

// ---- SQLite only
// ---- claims, check-only updates and absent keys (TradeStore::claim_partitions, CommitBatch) ---

namespace {

/// Claims partitions (strictly ascending) and returns their states.
std::vector<PartitionState> claim_all(StoreUnderTest& s, const std::vector<PartitionKey>& keys) {
  auto r = s->claim_partitions(keys);
  REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? std::string() : r.error().message()));
  REQUIRE(r.value().size() == keys.size());
  return r.value();
}

/// Claims one partition and returns its state (the new fence in `fence`).
PartitionState claim_one(StoreUnderTest& s, const PartitionKey& k) {
  return claim_all(s, {k}).front();
}

/// A check-only update: the partition must still be at `seq`, with a fence not above `fence`.
PartitionUpdate check_update(const PartitionKey& k, std::uint64_t fence, std::uint64_t seq) {
  return UpdateBuilder(k, fence, seq).build();
}

/// A batch with updates and absent keys.
CommitBatch batch_absent(std::vector<PartitionUpdate> updates, std::vector<IdempotencyKey> absent,
                         std::vector<SourceOffset> sources = {}) {
  CommitBatch b = batch(std::move(updates), std::move(sources));
  b.absent_keys = std::move(absent);
  return b;
}

}  // namespace

TEST_CASE("store: claim_partitions creates rows at fence 1, then increments, in the order asked") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("A"), b = key("B"), c = key("C");
    CHECK(s->claim_partitions({}).value().empty());

    // Never written: created with seq 0, fence 1, the empty position.
    auto first = claim_all(s, {a, b});
    for (const auto& st : first) {
      CHECK(st.fence == 1);
      CHECK(st.seq == 0);
      CHECK(st.position == Position{});
      CHECK(st.trades.empty());
    }
    // load_partitions sees the claim and changes nothing.
    CHECK(load(s, a).fence == 1);
    CHECK(load(s, a).fence == 1);
    CHECK(load(s, a).seq == 0);

    // Written with the claimed fence, then claimed again: the state comes back, fence + 1.
    UpdateBuilder u(a, 1, 0);
    u.add(new_trade("T1", Side::Buy, "100", "187.25")).position(sample_position());
    require_commit(s, batch({u}));
    UpdateBuilder w(c, 7, 0);  // a token from elsewhere (higher) is stored as it is
    w.add(new_trade("T2")).add(new_trade("T3"));
    require_commit(s, batch({w}));

    auto second = claim_all(s, {a, b, c});
    CHECK(second[0].fence == 2);
    CHECK(second[0].seq == 1);
    CHECK(second[0].position == sample_position());
    REQUIRE(second[0].trades.count("T1") == 1);
    CHECK(second[0].trades.at("T1").quantity == dec("100"));
    CHECK(second[1].fence == 2);
    CHECK(second[1].seq == 0);
    CHECK(second[1].trades.empty());
    CHECK(second[2].fence == 8);
    CHECK(second[2].seq == 2);
    CHECK(second[2].trades.size() == 2);
    CHECK(second[2].trades.count("T3") == 1);

    // Only some of them: the others keep their fences.
    CHECK(claim_one(s, b).fence == 3);
    CHECK(load(s, a).fence == 2);
    CHECK(load(s, c).fence == 8);

    // Keys must be strictly ascending (one global row order): refused, nothing claimed.
    CHECK(error_of(s->claim_partitions(std::vector<PartitionKey>{b, a})) == errc::internal);
    CHECK(error_of(s->claim_partitions(std::vector<PartitionKey>{a, a})) == errc::internal);
    CHECK(load(s, a).fence == 2);
    CHECK(load(s, b).fence == 3);
  });
}

TEST_CASE("store: positions and scan_events leave out partitions claimed but never written") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("A"), b = key("B"), c = key("C");
    const auto claimed = claim_all(s, {a, b, c});
    CHECK(positions(s).empty());
    CHECK(scan(s).empty());
    require_commit(s, batch({UpdateBuilder(b, claimed[1].fence, 0).add(new_trade("T1"))}));
    const auto rows = positions(s);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].partition == b);
    CHECK(rows[0].seq == 1);
    const auto events = scan(s);
    REQUIRE(events.size() == 1);
    CHECK(events[0].event.partition == b);
    // A check-only batch on the claimed partitions changes nothing of that.
    require_commit(s, batch({check_update(a, 1, 0), check_update(c, 1, 0)}));
    CHECK(positions(s).size() == 1);
  });
}

TEST_CASE("store: a later claim fences off the earlier claimant's writes and checks") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("A"), p = key("P");
    const std::uint64_t old_token = claim_one(s, p).fence;
    const std::uint64_t new_token = claim_one(s, p).fence;
    CHECK(new_token > old_token);

    // The earlier claimant writes: fenced off, nothing of its batch written.
    require_refused(s,
                    batch({UpdateBuilder(a, 1, 0).add(new_trade("TA")),
                           UpdateBuilder(p, old_token, 0).add(new_trade("T1"))}),
                    errc::fenced_off, {a}, {"TA", "T1"});
    CHECK(load(s, p).seq == 0);
    CHECK(load(s, p).fence == new_token);

    // Its check-only update is fenced off as well, alone or with a valid write.
    CHECK(error_of(s->commit(batch({check_update(p, old_token, 0)}))) == errc::fenced_off);
    require_refused(
        s, batch({UpdateBuilder(a, 1, 0).add(new_trade("TA")), check_update(p, old_token, 0)}),
        errc::fenced_off, {a});

    // The new claimant writes.
    require_commit(s, batch({UpdateBuilder(p, new_token, 0).add(new_trade("T1"))}));
    CHECK(load(s, p).seq == 1);
    // The stale token wins over the (also) stale sequence number.
    CHECK(error_of(s->commit(batch({check_update(p, old_token, 0)}))) == errc::fenced_off);
    CHECK(error_of(s->commit(batch({check_update(p, old_token, 1)}))) == errc::fenced_off);
    // The new claimant's check passes, and is itself fenced off by a third claim.
    require_commit(s, batch({check_update(p, new_token, 1)}));
    const std::uint64_t third = claim_one(s, p).fence;
    CHECK(third > new_token);
    CHECK(error_of(s->commit(batch({check_update(p, new_token, 1)}))) == errc::fenced_off);
    CHECK(error_of(s->commit(batch({UpdateBuilder(p, new_token, 1).add(new_trade("T2"))}))) ==
          errc::fenced_off);
    CHECK(load(s, p).seq == 1);
    CHECK(scan(s).size() == 1);
  });
}

TEST_CASE("store: a check-only update whose partition moved is a sequence conflict") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("A"), p = key("P"), z = key("Z");
    require_commit(s, batch({UpdateBuilder(p, 1, 0).add(new_trade("T1"))}));

    // P moved to seq 1 since the batch read it at 0: the whole batch is refused.
    require_refused(s, batch({UpdateBuilder(a, 1, 0).add(new_trade("TA")), check_update(p, 1, 0)}),
                    errc::sequence_conflict, {a}, {"TA"});
    // Ahead of the stored seq, and a never-written partition expected at seq 2.
    CHECK(error_of(s->commit(batch({check_update(p, 1, 2)}))) == errc::sequence_conflict);
    CHECK(error_of(s->commit(batch({check_update(z, 1, 2)}))) == errc::sequence_conflict);
    // The check comes after the write in batch order: still refused, nothing written.
    require_refused(s,
                    batch({UpdateBuilder(a, 1, 0).add(new_trade("TA")), check_update(p, 1, 0),
                           check_update(z, 1, 0)}),
                    errc::sequence_conflict, {a, z});
    CHECK(load(s, p).seq == 1);
    CHECK(load(s, p).fence == 1);
    CHECK(positions(s).size() == 1);
  });
}

TEST_CASE("store: a batch of check-only updates succeeds and writes nothing") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("A"), p = key("P"), q = key("Q");
    require_commit(
        s, batch({UpdateBuilder(p, 3, 0).add(new_trade("T1")).position(sample_position())}));

    // A never-written partition at 0, P at 1 with an equal and with a higher token.
    require_commit(s, batch({check_update(a, 5, 0), check_update(p, 3, 1)}));
    require_commit(s, batch({check_update(a, 5, 0), check_update(p, 9, 1)}));
    require_untouched(s, a);  // no row created, no fence stored
    PartitionState st = load(s, p);
    CHECK(st.seq == 1);
    CHECK(st.fence == 3);  // a check does not raise the stored fence
    CHECK(st.position == sample_position());
    CHECK(st.trades.size() == 1);
    CHECK(positions(s).size() == 1);
    CHECK(scan(s).size() == 1);

    // Checks beside a write: the write lands, the checked partition is unchanged.
    require_commit(s, batch({check_update(a, 5, 0), check_update(p, 3, 1),
                             UpdateBuilder(q, 1, 0).add(new_trade("T2"))}));
    require_untouched(s, a);
    CHECK(load(s, p).seq == 1);
    CHECK(load(s, p).fence == 3);
    CHECK(load(s, q).seq == 1);
    CHECK(scan(s).size() == 2);

    // A check-only update carries no trades (commit's invariants).
    PartitionUpdate with_trade = check_update(p, 3, 1);
    with_trade.trades.emplace_back("T1", TradeRecord{});
    CHECK(error_of(s->commit(batch({with_trade}))) == errc::internal);
  });
}

TEST_CASE(
    "store: absent keys that are stored are a key conflict; nothing of the batch is written") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("A"), x = key("X");
    require_commit(s, batch({UpdateBuilder(x, 1, 0).add(new_trade("T1"))}));

    // T1 v1 is stored: refused with the write of A and the source offset.
    require_refused(s,
                    batch_absent({UpdateBuilder(a, 1, 0).add(new_trade("T2"))},
                                 {IdempotencyKey{"T0", 1}, IdempotencyKey{"T1", 1}},
                                 {source("g", "t", 0, 5, 1)}),
                    errc::key_conflict, {a}, {"T2"});
    CHECK(offsets(s, "g").empty());
    // Alone, and with check-only updates.
    CHECK(error_of(s->commit(batch_absent({}, {IdempotencyKey{"T1", 1}}))) == errc::key_conflict);
    CHECK(error_of(s->commit(batch_absent({check_update(x, 1, 1)}, {IdempotencyKey{"T1", 1}}))) ==
          errc::key_conflict);

    // Keys that are absent indeed: the batch goes through.
    require_commit(s, batch_absent({}, {IdempotencyKey{"T0", 1}, IdempotencyKey{"T1", 2}}));
    require_commit(
        s, batch_absent({check_update(a, 1, 0), check_update(x, 1, 1)}, {IdempotencyKey{"T1", 2}}));
    require_commit(s, batch_absent({UpdateBuilder(a, 1, 0).add(new_trade("T2"))},
                                   {IdempotencyKey{"T1", 2}, IdempotencyKey{"T9", 1}},
                                   {source("g", "t", 0, 5, 1)}));
    CHECK(load(s, a).seq == 1);
    REQUIRE(offsets(s, "g").size() == 1);
    CHECK(offsets(s, "g")[0].next_offset == 5);

    // Absent keys must be strictly ascending.
    CHECK(error_of(s->commit(batch_absent(
              {}, {IdempotencyKey{"T9", 1}, IdempotencyKey{"T0", 1}}))) == errc::internal);
    CHECK(error_of(s->commit(batch_absent(
              {}, {IdempotencyKey{"T0", 1}, IdempotencyKey{"T0", 1}}))) == errc::internal);
  });
}

TEST_CASE("store: concurrent claims of shared partitions each get their own fence") {
  for_each_store([](StoreUnderTest& s) {
    const std::vector<PartitionKey> keys{key("A"), key("B"), key("C")};
    constexpr int threads = 4, rounds = 10;
    std::mutex mu;
    std::vector<std::vector<std::uint64_t>> fences(keys.size());
    std::atomic<int> failures{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        for (int r = 0; r < rounds; ++r) {
          // Overlapping ascending subsets: every claimant locks rows in the same order.
          std::vector<PartitionKey> mine;
          for (std::size_t i = 0; i < keys.size(); ++i) {
            if ((i + static_cast<std::size_t>(t + r)) % 3 != 0) mine.push_back(keys[i]);
          }
          auto got = s->claim_partitions(mine);
          if (!got) {
            ++failures;
            continue;
          }
          std::lock_guard lk(mu);
          for (std::size_t j = 0; j < mine.size(); ++j) {
            const std::size_t i = static_cast<std::size_t>(mine[j].account[0] - 'A');
            fences[i].push_back(got.value()[j].fence);
          }
        }
      });
    }
    for (auto& t : ts) t.join();
    CHECK(failures.load() == 0);
    for (std::size_t i = 0; i < keys.size(); ++i) {
      std::vector<std::uint64_t> f = fences[i];
      std::sort(f.begin(), f.end());
      // Each claim got its own fence: 1, 2, ..., n.
      for (std::size_t j = 0; j < f.size(); ++j) CHECK(f[j] == j + 1);
      CHECK(load(s, keys[i]).fence == f.size());
    }
  });
}

// ---------------------------------------------------------------------------------
#ifdef TRADECAPTURE_HAVE_SOCI

namespace {

std::string sqlite_path(const StoreUnderTest& s) { return s.uri.substr(7); }

/// Another store opened on the database of `s` (another host's, or `s` reopened).
StoreUnderTest open_again(const StoreUnderTest& s) {
  auto opened = open_soci_store(s.uri);
  REQUIRE(opened.has_value());
  return StoreUnderTest{opened.value(), s.uri, s.storage};
}

/// s1 and s2 share a database: s2 sees what s1 wrote and takes partition K over with a higher
/// token; then s1's writes are refused (fenced off; a stale sequence number; an idempotency key s2
/// took, in another partition L, which the refused batch does not leave behind).
void check_other_writer_detected(StoreUnderTest& s1, StoreUnderTest& s2) {
  const PartitionKey k = key("K"), l = key("L");
  require_commit(s1, batch({UpdateBuilder(k, 1, 0).add(new_trade("T1"))}));
  CHECK(load(s2, k).seq == 1);
  REQUIRE(find(s2, "T1", 1).has_value());
  // s2 takes the partition over with a higher token; s1 (paused past its lease) is fenced off.
  require_commit(s2, batch({UpdateBuilder(k, 2, 1).add(new_trade("T2"))}));
  CHECK(error_of(s1->commit(batch({UpdateBuilder(k, 1, 1).add(new_trade("T3"))}))) ==
        errc::fenced_off);
  // Same token, stale sequence number: another writer moved it.
  CHECK(error_of(s1->commit(batch({UpdateBuilder(k, 2, 1).add(new_trade("T3"))}))) ==
        errc::sequence_conflict);
  require_refused(s1, batch({UpdateBuilder(l, 2, 0).add(new_trade("T2"))}), errc::key_conflict,
                  {l});
  CHECK(load(s1, k).seq == 2);
  CHECK(positions(s1).size() == 1);
}

}  // namespace

TEST_CASE("sqlite: a reopened store sees the data") {
  StoreUnderTest s = make_sqlite_store();
  const PartitionKey k = key("A", "B_C", "\xC3\xA9");
  require_commit(s, batch({UpdateBuilder(k, 4, 0)
                               .add(new_trade("T1", Side::Sell, "2.5", "10.125"))
                               .add(event("T1", 2, TradeType::Cancel))
                               .position(sample_position())}));
  s.store.reset();

  StoreUnderTest again = open_again(s);
  const PartitionState st = load(again, k);
  CHECK(st.seq == 2);
  CHECK(st.fence == 4);
  CHECK(st.position == sample_position());
  CHECK(st.trades.at("T1") == TradeRecord{2, Side::Sell, dec("2.5"), dec("10.125"), true});
  REQUIRE(find(again, "T1", 1).has_value());
  CHECK(find(again, "T1", 1)->event.price == dec("10.125"));
  CHECK(scan(again).size() == 2);
  // And it continues the sequence.
  require_commit(again, batch({UpdateBuilder(k, 4, 2).add(new_trade("T2"))}));
  CHECK(load(again, k).seq == 3);
}

TEST_CASE("sqlite: the schema is versioned and its columns are plain SQL") {
  StoreUnderTest s = make_sqlite_store();
  Position p = sample_position();
  p.net_quantity = dec("-1000000000000000000000000");
  require_commit(s, batch({UpdateBuilder(key("A", "B", "C"), 3, 0)
                               .add(new_trade("T1", Side::Buy, "0.5", "187.25"))
                               .add(event("T1", 2, TradeType::Cancel))
                               .position(p)}));

  soci::session sql(soci::sqlite3, "db=\"" + sqlite_path(s) + "\"");
  long long version = 0;
  sql << "SELECT MAX(version) FROM schema_version", soci::into(version);
  CHECK(version >= 1);
  std::string net, bought_notional, journal;
  long long seq = 0, fence = 0, live = 0;
  sql << "SELECT net_quantity, bought_notional, seq, fence, live_trades FROM partitions "
         "WHERE account = 'A' AND book = 'B' AND security = 'C'",
      soci::into(net), soci::into(bought_notional), soci::into(seq), soci::into(fence),
      soci::into(live);
  CHECK(net == "-1000000000000000000000000");
  CHECK(bought_notional == "18725.123456789");
  CHECK(seq == 2);
  CHECK(fence == 3);
  CHECK(live == 2);
  std::string net_type;
  sql << "SELECT typeof(net_quantity) FROM partitions", soci::into(net_type);
  CHECK(net_type == "text");

  std::string type, side, quantity, price;
  soci::indicator side_ind, quantity_ind, price_ind;
  sql << "SELECT type, side, quantity, price FROM events WHERE trade_id = 'T1' AND version = 1",
      soci::into(type), soci::into(side, side_ind), soci::into(quantity, quantity_ind),
      soci::into(price, price_ind);
  CHECK(type == "NEW");
  CHECK(side == "BUY");
  CHECK(quantity == "0.5");
  CHECK(price == "187.25");
  sql << "SELECT type, side, quantity, price FROM events WHERE trade_id = 'T1' AND version = 2",
      soci::into(type), soci::into(side, side_ind), soci::into(quantity, quantity_ind),
      soci::into(price, price_ind);
  CHECK(type == "CANCEL");
  CHECK(side_ind == soci::i_null);
  CHECK(quantity_ind == soci::i_null);
  CHECK(price_ind == soci::i_null);
  int cancelled = -1;
  sql << "SELECT cancelled, quantity FROM trades WHERE trade_id = 'T1'", soci::into(cancelled),
      soci::into(quantity);
  CHECK(cancelled == 1);
  CHECK(quantity == "0.5");
  sql << "PRAGMA journal_mode", soci::into(journal);
  CHECK(journal == "wal");
}

TEST_CASE("sqlite: two stores on one file see each other and detect the other writer") {
  StoreUnderTest s1 = make_sqlite_store();
  StoreUnderTest s2 = open_again(s1);
  check_other_writer_detected(s1, s2);
}

TEST_CASE("sqlite: source offsets survive a reopen; a version-1 database gains their table") {
  StoreUnderTest s = make_sqlite_store();
  CHECK(claim(s, "g", "t", 0).epoch == 1);
  require_commit(
      s, batch({UpdateBuilder(key("A"), 1, 0).add(new_trade("T1"))}, {source("g", "t", 0, 77, 1)}));
  s.store.reset();
  {
    soci::session sql(soci::sqlite3, "db=\"" + sqlite_path(s) + "\"");
    long long version = 0, next_offset = 0, epoch = 0;
    sql << "SELECT MAX(version) FROM schema_version", soci::into(version);
    CHECK(version == 3);
    sql << "SELECT next_offset, epoch FROM source_offsets WHERE consumer = 'g' AND topic = 't' "
           "AND partition = 0",
        soci::into(next_offset), soci::into(epoch);
    CHECK(next_offset == 77);
    CHECK(epoch == 1);
  }
  StoreUnderTest again = open_again(s);
  CHECK(offsets(again, "g") == std::vector<SourceOffset>{source("g", "t", 0, 77, 1)});
  CHECK(claim(again, "g", "t", 0) == source("g", "t", 0, 77, 2));
  again.store.reset();

  // Back to the schema of version 1 (as a database written by an older library): the migrations
  // add the table and the events' fence column on the next open, and the events stay, their
  // writer's fence unknown (0).
  {
    soci::session sql(soci::sqlite3, "db=\"" + sqlite_path(s) + "\"");
    sql << "DROP TABLE source_offsets";
    sql << "ALTER TABLE events DROP COLUMN fence";
    sql << "DELETE FROM schema_version WHERE version >= 2";
  }
  auto migrated = open_soci_store(s.uri);
  REQUIRE(migrated.has_value());
  StoreUnderTest third{migrated.value(), s.uri, s.storage};
  CHECK(offsets(third, "g").empty());
  CHECK(claim(third, "g", "t", 0).epoch == 1);
  CHECK(load(third, key("A")).seq == 1);
  const auto old_event = find(third, "T1", 1);
  REQUIRE(old_event.has_value());
  CHECK(old_event->fence == 0);
  require_commit(third, batch({UpdateBuilder(key("A"), 4, 1).add(event("T1", 2, TradeType::Cancel))}));
  CHECK(find(third, "T1", 2)->fence == 4);
}

TEST_CASE("sqlite: bad URIs and unreachable files are errors, not crashes") {
  CHECK(error_of(open_soci_store("sqlite:")) == errc::bad_uri);
  CHECK(error_of(open_soci_store("sqlite::memory:")) == errc::bad_uri);
  CHECK(error_of(open_soci_store("mysql://localhost/db")) == errc::bad_uri);
  CHECK(error_of(open_soci_store("")) == errc::bad_uri);
  SociStoreOptions bad_sync;
  bad_sync.sqlite_synchronous = "FULL; DROP TABLE events";
  CHECK(error_of(open_soci_store("sqlite:/tmp/never-created.db", bad_sync)) == errc::bad_uri);

  auto dir = make_scratch_dir();
  const auto missing = open_soci_store("sqlite:" + (*dir / "no" / "such" / "dir.db").string());
  REQUIRE_FALSE(missing.has_value());
  CHECK((missing.error() == errc::store_unavailable || missing.error() == errc::store_error));

  // A file that is not a database.
  const auto junk = *dir / "junk.db";
  {
    std::FILE* f = std::fopen(junk.c_str(), "wb");
    REQUIRE(f != nullptr);
    std::fputs(
        "this is not a database, not even close; it is just a sentence in a file.\n"
        "this is not a database, not even close; it is just a sentence in a file.\n",
        f);
    std::fclose(f);
  }
  const auto not_db = open_soci_store("sqlite:" + junk.string());
  REQUIRE_FALSE(not_db.has_value());
  CHECK((not_db.error() == errc::store_unavailable || not_db.error() == errc::store_error));
}

TEST_CASE("sqlite: options are applied") {
  SociStoreOptions options;
  options.sqlite_synchronous = "normal";
  options.pool_size = 1;
  options.busy_timeout = std::chrono::milliseconds(250);
  StoreUnderTest s = make_sqlite_store(options);
  require_commit(s, batch({UpdateBuilder(key("A"), 1, 0).add(new_trade("T1"))}));
  // One connection serves concurrent callers in turn.
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const PartitionKey k = key("C" + std::to_string(t));
      for (int i = 0; i < 20; ++i) {
        if (!s->commit(batch({UpdateBuilder(k, 1, static_cast<std::uint64_t>(i))
                                  .add(new_trade(k.account + "." + std::to_string(i)))}))) {
          ++failures;
        }
        if (!s->positions()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
  CHECK(positions(s).size() == 5);
}

#endif  // TRADECAPTURE_HAVE_SOCI

// ---- PostgreSQL only ----------------------------------------------------------------------------
#ifdef TRADECAPTURE_HAVE_POSTGRES_TESTS

namespace {

/// The database a PostgreSQL store under test uses (the last segment of its URI).
std::string pg_database(const StoreUnderTest& s) { return s.uri.substr(s.uri.rfind('/') + 1); }

/// A plain session on the store's database.
std::unique_ptr<soci::session> pg_sql(const StoreUnderTest& s) {
  return postgres_session(pg_database(s));
}

/// Waits until the shared server accepts sessions (it answers "starting up" for a moment after
/// its port opens).
void wait_until_postgres_accepts() {
  for (int i = 0;; ++i) {
    try {
      postgres_session("postgres");
      return;
    } catch (const soci::soci_error&) {
      if (i == 200) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

/// `n` partitions "ACC0000".. with `per_partition` NEW events each, for a first write.
CommitBatch wide_batch(int n, int per_partition, std::uint64_t fence = 1) {
  std::vector<PartitionUpdate> updates;
  for (int i = 0; i < n; ++i) {
    char account[16];
    std::snprintf(account, sizeof account, "ACC%04d", i);
    UpdateBuilder u(key(account), fence, 0);
    for (int k = 0; k < per_partition; ++k) {
      u.add(new_trade(std::string(account) + "-" + std::to_string(k),
                      k % 2 ? Side::Sell : Side::Buy, "100.5", "187.25"));
    }
    updates.push_back(u);
  }
  return batch(std::move(updates));
}

}  // namespace

TEST_CASE("postgresql: every SQLSTATE class has a deliberate classification") {
  using detail::sql::classify_sqlstate;
  using detail::sql::fault_errc;
  // on_unique = key_conflict: what a unique violation means while inserting events.
  const auto as_errc = [](std::string_view state) {
    return fault_errc(classify_sqlstate(state), errc::key_conflict);
  };
  const std::vector<std::pair<std::string_view, errc>> table{
      // Connection exceptions: reconnect and retry.
      {"08000", errc::store_unavailable},  // connection_exception (SOCI: a session that died)
      {"08003", errc::store_unavailable},  // connection_does_not_exist
      {"08006", errc::store_unavailable},  // connection_failure
      {"08001", errc::store_unavailable},  // sqlclient_unable_to_establish_sqlconnection
      {"08004", errc::store_unavailable},  // sqlserver_rejected_establishment_of_sqlconnection
      {"08007", errc::store_unavailable},  // transaction_resolution_unknown
      {"08P01", errc::store_unavailable},  // protocol_violation
      // The server closed the session: reconnect and retry.
      {"25P03", errc::store_unavailable},  // idle_in_transaction_session_timeout
      {"57P05", errc::store_unavailable},  // idle_session_timeout
      {"57P01", errc::store_unavailable},  // admin_shutdown
      {"57P02", errc::store_unavailable},  // crash_shutdown
      {"57P03", errc::store_unavailable},  // cannot_connect_now
      {"57014", errc::store_busy},         // query_canceled (statement_timeout)
      {"57000", errc::store_error},        // operator_intervention
      {"57P04", errc::store_error},        // database_dropped
      // Insufficient resources, system errors.
      {"53000", errc::store_unavailable},  // insufficient_resources
      {"53100", errc::store_unavailable},  // disk_full
      {"53200", errc::store_unavailable},  // out_of_memory
      {"53300", errc::store_unavailable},  // too_many_connections
      {"53400", errc::store_unavailable},  // configuration_limit_exceeded
      {"58030", errc::store_unavailable},  // io_error
      {"58000", errc::store_error},        // system_error
      {"58P01", errc::store_error},        // undefined_file
      // Transaction rollback.
      {"40001", errc::serialization_failure},
      {"40P01", errc::deadlock},
      {"40003", errc::store_unavailable},  // statement_completion_unknown
      {"40000", errc::store_error},        // transaction_rollback
      {"40002", errc::store_error},        // transaction_integrity_constraint_violation
      // Object not in prerequisite state.
      {"55P03", errc::store_busy},   // lock_not_available (lock_timeout)
      {"55000", errc::store_error},  // object_not_in_prerequisite_state
      {"55006", errc::store_error},  // object_in_use
      // Integrity constraints.
      {"23505", errc::key_conflict},  // unique_violation: what the statement says it means
      {"23503", errc::store_error},   // foreign_key_violation
      {"23502", errc::store_error},   // not_null_violation
      {"23514", errc::store_error},   // check_violation
      // Invalid transaction state (other than the timeout).
      {"25000", errc::store_error},
      {"25P02", errc::store_error},  // in_failed_sql_transaction
      // Syntax, access, data, features, authorization, catalogs, internal errors.
      {"42601", errc::store_error},
      {"42P01", errc::store_error},
      {"42501", errc::store_error},
      {"22003", errc::store_error},
      {"22P02", errc::store_error},
      {"0A000", errc::store_error},
      {"28P01", errc::store_error},
      {"3D000", errc::store_error},
      {"XX000", errc::store_error},
      {"XX001", errc::store_error},
      {"XX002", errc::store_error},
      {"F0000", errc::store_error},
      {"P0001", errc::store_error},
      {"HV000", errc::store_error},
      {"", errc::store_error},  // no SQLSTATE: the dialect decides from libpq's message
  };
  for (const auto& [state, expected] : table) {
    INFO("SQLSTATE '", std::string(state), "'");
    CHECK(as_errc(state) == expected);
  }
  // Outside event inserts a unique violation is a store error.
  CHECK(fault_errc(classify_sqlstate("23505"), errc::store_error) == errc::store_error);
  // What the pipeline does with them: connection losses and busy servers are retried.
  CHECK(classify(make_error_code(as_errc("25P03"))) == retry_class::retry_now);
  CHECK(classify(make_error_code(as_errc("57P05"))) == retry_class::retry_now);
  CHECK(classify(make_error_code(as_errc("55P03"))) == retry_class::retry_now);
}

TEST_CASE("postgresql: a claim by another host fences this host's writes and checks") {
  StoreUnderTest s1 = make_postgres_store();
  StoreUnderTest s2 = open_again(s1);  // another host's store
  const PartitionKey k = key("K"), l = key("L");

  const auto mine = claim_all(s1, {k, l});
  require_commit(s1, batch({UpdateBuilder(k, mine[0].fence, 0).add(new_trade("T1"))}));
  // s2 takes both partitions over (a lock server that forgot would let it in just the same).
  const auto theirs = claim_all(s2, {k, l});
  CHECK(theirs[0].fence == mine[0].fence + 1);
  CHECK(theirs[0].seq == 1);
  CHECK(theirs[0].trades.count("T1") == 1);
  CHECK(theirs[1].fence == mine[1].fence + 1);
  // s1's late write and its check are refused; s2's go through.
  CHECK(error_of(s1->commit(batch({UpdateBuilder(k, mine[0].fence, 1).add(new_trade("T2"))}))) ==
        errc::fenced_off);
  CHECK(error_of(s1->commit(batch(
            {check_update(k, mine[0].fence, 1),
             UpdateBuilder(l, mine[1].fence + 5, 0).add(new_trade("T3"))}))) == errc::fenced_off);
  CHECK_FALSE(find(s1, "T3", 1).has_value());
  CHECK(load(s1, l).seq == 0);
  require_commit(s2, batch({check_update(k, theirs[0].fence, 1),
                            UpdateBuilder(l, theirs[1].fence, 0).add(new_trade("T2"))}));
  CHECK(load(s1, l).seq == 1);
  CHECK(positions(s1).size() == 2);
}

TEST_CASE("postgresql: concurrent claims and commits of shared partitions never deadlock") {
  StoreUnderTest s = make_postgres_store();
  const std::vector<PartitionKey> keys{key("A"), key("B"), key("C"), key("D")};
  constexpr int hosts = 4, rounds = 15;
  std::atomic<int> landed{0}, refused{0}, other{0};
  std::vector<std::thread> ts;
  for (int h = 0; h < hosts; ++h) {
    ts.emplace_back([&, h] {
      for (int r = 0; r < rounds; ++r) {
        auto claimed = s->claim_partitions(keys);
        if (!claimed) {
          ++other;
          continue;
        }
        // Write two partitions, check the others, with the claimed tokens.
        std::vector<PartitionUpdate> updates;
        for (std::size_t i = 0; i < keys.size(); ++i) {
          const PartitionState& st = claimed.value()[i];
          if ((i + static_cast<std::size_t>(h + r)) % 2 == 0) {
            updates.push_back(UpdateBuilder(keys[i], st.fence, st.seq)
                                  .add(new_trade("T" + std::to_string(h) + "-" + std::to_string(r) +
                                                 "-" + std::to_string(i))));
          } else {
            updates.push_back(check_update(keys[i], st.fence, st.seq));
          }
        }
        auto c = s->commit(batch(std::move(updates)));
        if (c) {
          ++landed;
        } else if (c.error() == errc::fenced_off || c.error() == errc::sequence_conflict) {
          ++refused;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(other.load() == 0);
  CHECK(landed.load() >= 1);
  CHECK(landed.load() + refused.load() == hosts * rounds);
  // Every landed commit wrote two events; no refused one wrote any.
  CHECK(scan(s).size() == static_cast<std::size_t>(2 * landed.load()));
  CHECK(claim_one(s, keys[0]).fence == hosts * rounds + 1);
}

TEST_CASE("postgresql: two stores on one database see each other and detect the other writer") {
  StoreUnderTest s1 = make_postgres_store();
  StoreUnderTest s2 = open_again(s1);  // another host's store
  const PartitionKey k = key("K"), l = key("L");
  check_other_writer_detected(s1, s2);
  CHECK(scan(s2).size() == 2);
  // Both keep working after the refusals.
  require_commit(s1, batch({UpdateBuilder(k, 2, 2).add(new_trade("T3")),
                            UpdateBuilder(l, 2, 0).add(new_trade("T4"))}));
  CHECK(load(s2, k).seq == 3);
  CHECK(load(s2, l).seq == 1);
}

TEST_CASE("postgresql: a source claimed by another host fences this host's offsets") {
  StoreUnderTest s1 = make_postgres_store();
  StoreUnderTest s2 = open_again(s1);  // another host's store
  const PartitionKey k = key("K");

  CHECK(claim(s1, "g", "t", 0).epoch == 1);
  require_commit(s1,
                 batch({UpdateBuilder(k, 1, 0).add(new_trade("T1"))}, {source("g", "t", 0, 1, 1)}));
  // A rebalance moves the source partition to s2, which resumes where s1 stopped.
  CHECK(claim(s2, "g", "t", 0) == source("g", "t", 0, 1, 2));
  CHECK(error_of(s1->commit(batch({UpdateBuilder(k, 1, 1).add(new_trade("T2"))},
                                  {source("g", "t", 0, 2, 1)}))) == errc::fenced_off);
  CHECK(load(s2, k).seq == 1);
  CHECK_FALSE(find(s2, "T2", 1).has_value());
  require_commit(s2,
                 batch({UpdateBuilder(k, 1, 1).add(new_trade("T2"))}, {source("g", "t", 0, 2, 2)}));
  CHECK(offsets(s1, "g") == std::vector<SourceOffset>{source("g", "t", 0, 2, 2)});
  // The table is plain SQL with the documented key.
  auto sql = pg_sql(s1);
  long long version = 0, columns = 0;
  *sql << "SELECT MAX(version) FROM schema_version", soci::into(version);
  CHECK(version == 3);
  *sql << "SELECT count(*) FROM information_schema.key_column_usage "
          "WHERE table_name = 'source_offsets' AND constraint_name = 'source_offsets_pkey'",
      soci::into(columns);
  CHECK(columns == 3);
}

TEST_CASE("postgresql: concurrent commits and claims of shared sources never deadlock") {
  // Writers commit events with the offsets of two sources in ascending order while claimers
  // move the sources' epochs; every commit either lands or is fenced off, and nothing hangs.
  StoreUnderTest first = make_postgres_store();
  constexpr int hosts = 3, rounds = 20;
  std::vector<std::shared_ptr<TradeStore>> stores;
  for (int h = 0; h < hosts; ++h) {
    auto opened = open_soci_store(first.uri);
    REQUIRE(opened.has_value());
    stores.push_back(opened.value());
  }
  std::atomic<int> landed{0}, fenced{0}, other{0};
  std::vector<std::thread> pool;
  for (int h = 0; h < hosts; ++h) {
    pool.emplace_back([&, h] {
      TradeStore& st = *stores[h];
      for (int r = 0; r < rounds; ++r) {
        auto c0 = st.claim_source("g", "t", 0);
        auto c1 = st.claim_source("g", "t", 1);
        if (!c0 || !c1) {
          ++other;
          continue;
        }
        const PartitionKey k = key("H" + std::to_string(h));
        auto state = st.load_partitions(std::vector<PartitionKey>{k});
        if (!state) {
          ++other;
          continue;
        }
        const std::uint64_t seq = state.value()[0].seq;
        auto res = st.commit(batch(
            {UpdateBuilder(k, 1, seq).add(new_trade(std::to_string(h) + "/" + std::to_string(r)))},
            {source("g", "t", 0, r, c0.value().epoch), source("g", "t", 1, r, c1.value().epoch)}));
        if (res) {
          ++landed;
        } else if (res.error() == errc::fenced_off) {
          ++fenced;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(other.load() == 0);
  CHECK(landed.load() + fenced.load() == hosts * rounds);
  CHECK(landed.load() >= 1);
  const auto rows = offsets(first, "g");
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].epoch == hosts * rounds);
  CHECK(rows[1].epoch == hosts * rounds);
  // Every landed commit wrote its events; no fenced one did.
  CHECK(scan(first).size() == static_cast<std::size_t>(landed.load()));
}

TEST_CASE("postgresql: concurrent hosts on shared partitions neither deadlock nor lose events") {
  StoreUnderTest first = make_postgres_store();
  constexpr int hosts = 4, rounds = 25, partitions = 8;
  std::vector<std::shared_ptr<TradeStore>> stores;
  for (int h = 0; h < hosts; ++h) {
    SociStoreOptions o;
    o.pool_size = 2;
    auto opened = open_soci_store(first.uri, o);
    REQUIRE(opened.has_value());
    stores.push_back(opened.value());
  }
  std::atomic<int> committed_events{0}, accepted{0}, unexpected{0};
  std::array<std::atomic<int>, 3> conflicts{};  // sequence, fence, key
  std::vector<std::thread> threads;
  for (int h = 0; h < hosts; ++h) {
    threads.emplace_back([&, h] {
      std::mt19937 rng(static_cast<unsigned>(h) * 7919u + 1u);
      for (int r = 0; r < rounds; ++r) {
        // A random ascending subset of the partitions, from their current state.
        std::vector<PartitionKey> keys;
        for (int p = 0; p < partitions; ++p) {
          if (rng() % 2 == 0) keys.push_back(key("P" + std::to_string(p)));
        }
        if (keys.empty()) keys.push_back(key("P0"));
        auto loaded = stores[h]->load_partitions(keys);
        if (!loaded) {
          ++unexpected;
          continue;
        }
        std::vector<PartitionUpdate> updates;
        int events = 0;
        for (std::size_t i = 0; i < keys.size(); ++i) {
          // Tokens rise with the round, so slower hosts get fenced off now and then.
          UpdateBuilder u(keys[i], static_cast<std::uint64_t>(r + 1), loaded.value()[i].seq);
          const int n = 1 + static_cast<int>(rng() % 3);
          for (int e = 0; e < n; ++e) {
            u.add(new_trade("h" + std::to_string(h) + "r" + std::to_string(r) + "p" +
                            std::to_string(i) + "e" + std::to_string(e)));
          }
          // Now and then a key that every host may send in this round: at most one gets it.
          const bool shared = i == 0 && rng() % 4 == 0;
          if (shared) u.add(new_trade("shared" + std::to_string(r)));
          events += n + (shared ? 1 : 0);
          updates.push_back(u);
        }
        auto c = stores[h]->commit(batch(std::move(updates)));
        if (c) {
          ++accepted;
          committed_events += events;
        } else if (c.error() == errc::sequence_conflict) {
          ++conflicts[0];
        } else if (c.error() == errc::fenced_off) {
          ++conflicts[1];
        } else if (c.error() == errc::key_conflict) {
          ++conflicts[2];
        } else {
          // A deadlock would surface here as store_busy (40P01), after deadlock_timeout.
          ++unexpected;
          MESSAGE("unexpected commit failure: " << c.error().message());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(unexpected.load() == 0);
  CHECK(accepted.load() > 0);
  // Every partition's events are exactly its sequence 1..seq, and nothing else was written.
  const auto events = scan(first);
  CHECK(events.size() == static_cast<std::size_t>(committed_events.load()));
  std::map<PartitionKey, std::uint64_t> last;
  for (const auto& e : events) {
    CHECK(e.seq == ++last[e.event.partition]);
  }
  for (const auto& row : positions(first)) CHECK(row.seq == last[row.partition]);
  int shared = 0;
  for (const auto& e : events) shared += e.event.trade_id.starts_with("shared") ? 1 : 0;
  CHECK(shared <= rounds);
}

TEST_CASE("postgresql: a server restart between two commits costs at most one failed call") {
  SociStoreOptions o;
  o.pool_size = 3;
  StoreUnderTest s = make_postgres_store(o);
  const PartitionKey k = key("K");
  require_commit(s, batch({UpdateBuilder(k, 1, 0).add(new_trade("T1"))}));
  {
    // Several connections wait in the pool, all of them about to go stale.
    std::vector<std::thread> readers;
    for (int i = 0; i < 3; ++i) readers.emplace_back([&] { CHECK(s->ping().has_value()); });
    for (auto& t : readers) t.join();
  }

  shared_postgres().restart();
  wait_until_postgres_accepts();
  const CommitBatch second = batch({UpdateBuilder(k, 1, 1).add(new_trade("T2"))});
  auto r = s->commit(second);
  if (!r) {
    CHECK(r.error() == errc::store_unavailable);
    r = s->commit(second);  // the retry runs on a fresh session
  }
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(load(s, k).seq == 2);
  CHECK(find(s, "T2", 1).has_value());
  CHECK(scan(s).size() == 2);
  CHECK(positions(s).size() == 1);

  // While the server is down every call fails as unavailable (retryable), nothing else.
  shared_postgres().stop();
  CHECK(error_of(s->ping()) == errc::store_unavailable);
  CHECK(error_of(s->commit(batch({UpdateBuilder(k, 1, 2).add(new_trade("T3"))}))) ==
        errc::store_unavailable);
  CHECK(error_of(s->load_partitions(std::vector<PartitionKey>{k})) == errc::store_unavailable);
  CHECK(classify(error_of(s->ping())) == retry_class::retry_now);
  shared_postgres().start();
  wait_until_postgres_accepts();
  require_commit(s, batch({UpdateBuilder(k, 1, 2).add(new_trade("T3"))}));
  CHECK(load(s, k).seq == 3);
}

TEST_CASE("postgresql: the schema is versioned and its NUMERIC columns are plain SQL") {
  StoreUnderTest s = make_postgres_store();
  Position p = sample_position();
  p.net_quantity = dec("-1000000000000000000000000");
  p.bought_notional = dec("999999999999999999999999.99999999999998");
  Position q;
  q.bought_notional = dec("0.00000000000001");
  q.sold_notional = dec("1000000000000000000000000");
  require_commit(s, batch({UpdateBuilder(key("A", "B", "C"), 3, 0)
                               .add(new_trade("T1", Side::Buy, "0.5", "187.25"))
                               .add(event("T1", 2, TradeType::Cancel))
                               .position(p),
                           UpdateBuilder(key("B"), 3, 0).add(new_trade("T2")).position(q)}));

  auto sql = pg_sql(s);
  long long version = 0;
  *sql << "SELECT MAX(version) FROM schema_version", soci::into(version);
  CHECK(version >= 1);
  // Exact sums in plain SQL (NUMERIC(39,14) prints all 14 fractional digits).
  std::string sum, net;
  *sql << "SELECT sum(bought_notional)::text FROM partitions", soci::into(sum);
  CHECK(sum == "999999999999999999999999.99999999999999");
  *sql << "SELECT sum(net_quantity)::text FROM partitions", soci::into(net);
  CHECK(net == "-1000000000000000000000000.00000000000000");
  std::string type;
  int precision = 0, scale = 0;
  *sql << "SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns "
          "WHERE table_name = 'partitions' AND column_name = 'sold_notional'",
      soci::into(type), soci::into(precision), soci::into(scale);
  CHECK(type == "numeric");
  CHECK(precision == 39);
  CHECK(scale == 14);

  long long seq = 0, fence = 0, live = 0;
  std::string bought_notional;
  *sql << "SELECT bought_notional::text, seq, fence, live_trades FROM partitions "
          "WHERE account = 'A' AND book = 'B' AND security = 'C'",
      soci::into(bought_notional), soci::into(seq), soci::into(fence), soci::into(live);
  CHECK(bought_notional == "999999999999999999999999.99999999999998");
  CHECK(seq == 2);
  CHECK(fence == 3);
  CHECK(live == 2);
  std::string side, quantity, price;
  soci::indicator side_ind, quantity_ind, price_ind;
  *sql << "SELECT type, side, quantity::text, price::text FROM events "
          "WHERE trade_id = 'T1' AND version = 1",
      soci::into(type), soci::into(side, side_ind), soci::into(quantity, quantity_ind),
      soci::into(price, price_ind);
  CHECK(type == "NEW");
  CHECK(side == "BUY");
  CHECK(quantity == "0.50000000000000");
  CHECK(price == "187.25000000000000");
  *sql << "SELECT type, side, quantity, price FROM events WHERE trade_id = 'T1' AND version = 2",
      soci::into(type), soci::into(side, side_ind), soci::into(quantity, quantity_ind),
      soci::into(price, price_ind);
  CHECK(type == "CANCEL");
  CHECK(side_ind == soci::i_null);
  CHECK(quantity_ind == soci::i_null);
  CHECK(price_ind == soci::i_null);
  long long cancelled = -1;
  *sql << "SELECT cancelled FROM trades WHERE trade_id = 'T1'", soci::into(cancelled);
  CHECK(cancelled == 1);
  // Bytewise collation on the key columns, and the store's sessions are labelled.
  std::string collation;
  *sql << "SELECT collation_name FROM information_schema.columns "
          "WHERE table_name = 'partitions' AND column_name = 'account'",
      soci::into(collation);
  CHECK(collation == "C");
  long long labelled = 0;
  *sql << "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
          "AND application_name = 'tradecapture'",
      soci::into(labelled);
  CHECK(labelled >= 1);
}

TEST_CASE("postgresql: a batch of 5,000 events over 1,000 partitions takes a few statements") {
  StoreUnderTest s = make_postgres_store();
  // Statement-level triggers count the statements that write each table, whatever the rows.
  {
    auto sql = pg_sql(s);
    *sql << "CREATE TABLE statement_log (tbl text NOT NULL, op text NOT NULL)";
    *sql << "CREATE FUNCTION log_statement() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO statement_log VALUES (TG_TABLE_NAME, TG_OP); RETURN NULL; END $$";
    for (const char* table : {"partitions", "events", "trades"}) {
      *sql << std::string("CREATE TRIGGER count_statements AFTER INSERT OR UPDATE OR DELETE ON ") +
                  table + " FOR EACH STATEMENT EXECUTE FUNCTION log_statement()";
    }
  }
  const auto counts = [&] {
    auto sql = pg_sql(s);
    std::map<std::string, long long> out;
    soci::rowset<soci::row> rows =
        (sql->prepare << "SELECT tbl || ' ' || op, count(*) FROM statement_log GROUP BY 1");
    for (const auto& row : rows) out[row.get<std::string>(0)] = row.get<long long>(1);
    *sql << "DELETE FROM statement_log";
    return out;
  };

  const CommitBatch first = wide_batch(1000, 5);
  require_commit(s, first);
  // partitions: the locking INSERT ... ON CONFLICT DO UPDATE (which fires both statement
  // triggers) and the conditional UPDATE; events: one INSERT; trades: one upsert.
  const std::map<std::string, long long> per_batch{{"partitions INSERT", 1},
                                                   {"partitions UPDATE", 2},
                                                   {"events INSERT", 1},
                                                   {"trades INSERT", 1},
                                                   {"trades UPDATE", 1}};
  CHECK(counts() == per_batch);

  // The next batch over all of them: an AMEND and a CANCEL each.
  std::vector<PartitionUpdate> next;
  for (const auto& u : first.partitions) {
    next.push_back(
        UpdateBuilder(u.partition, 1, 5)
            .add(event(u.partition.account + "-0", 2, TradeType::Amend, Side::Sell, "1", "2"))
            .add(event(u.partition.account + "-1", 2, TradeType::Cancel)));
  }
  require_commit(s, batch(next));
  CHECK(counts() == per_batch);

  const auto rows = positions(s);
  REQUIRE(rows.size() == 1000);
  CHECK(std::all_of(rows.begin(), rows.end(), [](const auto& r) { return r.seq == 7; }));
  const PartitionState st = load(s, key("ACC0042"));
  CHECK(st.trades.size() == 5);
  CHECK(st.trades.at("ACC0042-0") == TradeRecord{2, Side::Sell, dec("1"), dec("2"), false});
  CHECK(st.trades.at("ACC0042-1").cancelled);
  CHECK(scan(s).size() == 7000);
}

TEST_CASE("postgresql: a row lock held by a stalled writer is store_busy, then goes through") {
  SociStoreOptions o;
  o.busy_timeout = std::chrono::milliseconds(200);
  StoreUnderTest s = make_postgres_store(o);
  const PartitionKey k = key("K");
  require_commit(s, batch({UpdateBuilder(k, 1, 0).add(new_trade("T1"))}));

  auto stalled = pg_sql(s);  // a writer stuck inside its transaction
  *stalled << "BEGIN";
  *stalled << "SELECT seq FROM partitions WHERE account = 'K' FOR UPDATE";
  const CommitBatch b = batch({UpdateBuilder(k, 1, 1).add(new_trade("T2"))});
  auto r = s->commit(b);
  CHECK(error_of(r) == errc::store_busy);  // 55P03 after lock_timeout
  CHECK(classify(error_of(r)) == retry_class::retry_now);
  *stalled << "ROLLBACK";
  require_commit(s, b);
  CHECK(load(s, k).seq == 2);
}

TEST_CASE("postgresql: any text round-trips through the array parameters") {
  StoreUnderTest s = make_postgres_store();
  const PartitionKey k = key("{a,b}", "\"quoted\" \\back\\slash\\", "NULL");
  const PartitionKey k2 = key(" lead and trail ", "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", "}{");
  const std::vector<std::string> ids{
      "NULL",     "a,b", "{x}", "\"", "\\", "\\\"", " spaced ", "'single'", "\xF0\x9F\x98\x80",
      "tab\there"};
  UpdateBuilder u(k, 1, 0);
  for (const auto& id : ids) u.add(new_trade(id));
  REQUIRE(k2 < k);  // ' ' sorts before '{'
  require_commit(s, batch({UpdateBuilder(k2, 1, 0).add(event("NULL", 2, TradeType::Cancel)), u}));
  const PartitionState st = load(s, k);
  CHECK(st.seq == ids.size());
  for (const auto& id : ids) {
    CAPTURE(id);
    CHECK(st.trades.contains(id));
    const auto found = find(s, id, 1);
    REQUIRE(found.has_value());
    CHECK(found->event.partition == k);
  }
  const auto cancel = find(s, "NULL", 2);
  REQUIRE(cancel.has_value());
  CHECK(cancel->event.partition == k2);
  CHECK(cancel->event.type == TradeType::Cancel);
  const auto rows = positions(s);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].partition == k2);
  CHECK(rows[1].partition == k);
  CHECK(scan(s).size() == ids.size() + 1);

  // A NUL byte cannot reach PostgreSQL text: refused as a store error, nothing written.
  const std::string nul("T\0X", 3);
  CHECK(error_of(s->commit(batch({UpdateBuilder(key("Z"), 1, 0).add(new_trade(nul))}))) ==
        errc::store_error);
  require_untouched(s, key("Z"));
  require_commit(s, batch({UpdateBuilder(key("Z"), 1, 0).add(new_trade("T"))}));
}

TEST_CASE("postgresql: URIs: the password stays out of describe, bad ones are errors") {
  StoreUnderTest s = make_postgres_store();
  const std::string port = std::to_string(shared_postgres().port());
  const std::string db = pg_database(s);
  // The test server trusts every password, so these open.
  for (const std::string& uri :
       {"postgresql://postgres:s3cret@127.0.0.1:" + port + "/" + db,
        "postgres://postgres@127.0.0.1:" + port + "/" + db + "?password=s3cret&connect_timeout=5",
        "postgresql://postgres:s3cret@127.0.0.1:" + port + "/" + db + "?password=s3cret"}) {
    auto opened = open_soci_store(uri);
    REQUIRE_MESSAGE(opened.has_value(), uri);
    const std::string d = opened.value()->describe();
    CHECK(d.find("s3cret") == std::string::npos);
    CHECK(d.find("127.0.0.1:" + port + "/" + db) != std::string::npos);
    CHECK(opened.value()->ping().has_value());
  }
  CHECK(open_soci_store("postgres://postgres@127.0.0.1:" + port + "/" + db + "?connect_timeout=5")
            .value()
            ->describe() ==
        "postgres://postgres@127.0.0.1:" + port + "/" + db + "?connect_timeout=5");
  // Blanks and quotes cannot pass through SOCI's connect string.
  CHECK(error_of(open_soci_store("postgresql://postgres@127.0.0.1:" + port + "/my db")) ==
        errc::bad_uri);
  CHECK(error_of(open_soci_store("postgresql://postgres@127.0.0.1:" + port + "/\"db\"")) ==
        errc::bad_uri);
  // Nothing listens on port 1: retryable. A database that does not exist: not retryable.
  CHECK(error_of(open_soci_store("postgresql://postgres@127.0.0.1:1/" + db)) ==
        errc::store_unavailable);
  CHECK(error_of(open_soci_store("postgresql://postgres@127.0.0.1:" + port + "/no_such_db")) ==
        errc::store_error);
}

TEST_CASE("postgresql: hosts opening a new database at the same time all succeed") {
  auto database = make_postgres_database();
  const std::string uri = postgres_uri(*database);
  constexpr int hosts = 6;
  std::vector<std::shared_ptr<TradeStore>> stores(hosts);
  std::vector<std::thread> threads;
  for (int h = 0; h < hosts; ++h) {
    threads.emplace_back([&, h] {
      auto opened = open_soci_store(uri);
      if (opened) stores[h] = opened.value();
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& store : stores) REQUIRE(store != nullptr);
  StoreUnderTest s{stores[0], uri, database};
  long long applied = 0, latest = 0;
  *pg_sql(s) << "SELECT count(*), max(version) FROM schema_version", soci::into(applied),
      soci::into(latest);
  CHECK(applied == latest);  // each migration once
  require_commit(s, batch({UpdateBuilder(key("A"), 1, 0).add(new_trade("T1"))}));
  StoreUnderTest other{stores[hosts - 1], uri, database};
  CHECK(load(other, key("A")).seq == 1);
  stores.clear();
}

#endif  // TRADECAPTURE_HAVE_POSTGRES_TESTS
