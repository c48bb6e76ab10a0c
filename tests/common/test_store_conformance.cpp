// The TradeStore conformance suite: every test runs against every backend registered in
// store_conformance.hpp (memory here; SQLite and PostgreSQL from tests/sqlite and
// tests/postgresql when the SOCI backend is built). A backend's own checks live in its folder.

#include "common/store_conformance.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <thread>

using namespace tradecapture;
using namespace tctest;
using namespace tctest::store_ops;


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

TEST_CASE("store: find_events of many keys, some repeated or absent, answers each in place") {
  for_each_store([](StoreUnderTest& s) {
    // Enough keys for every way a store may split a lookup (SQLite: 64 keys, 8, then one by one).
    const PartitionKey k = key("A"), j = key("B");
    UpdateBuilder a(k, 2, 0), b(j, 5, 0);
    for (int i = 0; i < 90; ++i) (i % 3 == 0 ? b : a).add(new_trade("T" + std::to_string(i)));
    require_commit(s, batch({a, b}));
    std::vector<IdempotencyKey> keys;
    for (int i = 0; i < 150; ++i) {
      const int t = (i * 7) % 120;  // T0..T119 (T90 and later absent), 30 of them asked twice
      keys.push_back({"T" + std::to_string(t), i % 11 == 0 ? 2 : 1});
    }
    auto r = s->find_events(keys);
    REQUIRE(r.has_value());
    REQUIRE(r.value().size() == keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const int t = std::stoi(keys[i].trade_id.substr(1));
      const auto& f = r.value()[i];
      CAPTURE(keys[i].trade_id);
      CAPTURE(keys[i].version);
      if (t >= 90 || keys[i].version != 1) {
        CHECK_FALSE(f.has_value());
        continue;
      }
      REQUIRE(f.has_value());
      CHECK(f->event.trade_id == keys[i].trade_id);
      CHECK(f->event.version == 1);
      CHECK(f->event.partition == (t % 3 == 0 ? j : k));
      CHECK(f->fence == (t % 3 == 0 ? 5u : 2u));
      CHECK(f->seq == static_cast<std::uint64_t>(t % 3 == 0 ? t / 3 + 1 : t - t / 3));
    }
  });
}

TEST_CASE("store: find_events_into answers as find_events does, into a reused vector") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey k = key("A"), j = key("B");
    UpdateBuilder a(k, 2, 0), b(j, 5, 0);
    for (int i = 0; i < 40; ++i) (i % 3 == 0 ? b : a).add(new_trade("T" + std::to_string(i)));
    require_commit(s, batch({a, b}));
    const auto check_same = [](const std::vector<std::optional<StoredEvent>>& into,
                               const std::vector<std::optional<StoredEvent>>& found) {
      REQUIRE(into.size() == found.size());
      for (std::size_t i = 0; i < found.size(); ++i) {
        CAPTURE(i);
        REQUIRE(into[i].has_value() == found[i].has_value());
        if (!found[i]) continue;
        CHECK(same_event(*into[i], *found[i]));
        CHECK(into[i]->fence == found[i]->fence);
      }
    };
    // A long lookup, then a shorter one into the same vector: what it held is replaced, never
    // appended to; an empty lookup empties it.
    std::vector<std::optional<StoredEvent>> out;
    for (const int n : {60, 7, 0, 25}) {
      CAPTURE(n);
      std::vector<IdempotencyKey> keys;
      for (int i = 0; i < n; ++i)
        keys.push_back({"T" + std::to_string((i * 7 + n) % 50), i % 9 == 0 ? 2 : 1});
      auto found = s->find_events(keys);
      REQUIRE(found.has_value());
      REQUIRE(s->find_events_into(keys, out).has_value());
      check_same(out, found.value());
    }
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

// The SQLite store writes the events and trades of a whole commit in multi-row statements of 64,
// 8 and 1 rows: partitions of 1..65 events (1 + 7 + 8 + ... = 203 rows, so every chunk size and
// a remainder), CANCELs (NULL side, quantity and price) among them, must all read back in place,
// and a taken key in the last row of a later chunk must leave nothing of the batch behind.
TEST_CASE("store: a batch of many events and trades over uneven partitions reads back exactly") {
  for_each_store([](StoreUnderTest& s) {
    const std::array<int, 8> sizes{1, 7, 8, 9, 63, 64, 65, 2};  // 219 events
    std::vector<PartitionUpdate> updates;
    int total = 0;
    for (std::size_t p = 0; p < sizes.size(); ++p) {
      const std::string account = "P" + std::to_string(p);
      UpdateBuilder u(key(account), 1, 0);
      for (int i = 0; i < sizes[p]; ++i) {
        const std::string id = account + "-T" + std::to_string(i);
        u.add(new_trade(id, i % 2 == 0 ? Side::Buy : Side::Sell, std::to_string(i + 1) + ".5",
                        "0.0" + std::to_string(i + 1)));
        if (i % 5 == 4) u.add(event(id, 2, TradeType::Cancel));
      }
      updates.push_back(u.build());
      total += static_cast<int>(updates.back().events.size());
    }
    require_commit(s, batch(updates));

    const auto events = scan(s);
    REQUIRE(events.size() == static_cast<std::size_t>(total));
    std::size_t at = 0;
    for (const auto& u : updates) {
      for (const auto& e : u.events) {
        CHECK(same_event(events[at], e));
        ++at;
      }
      const PartitionState st = load(s, u.partition);
      CHECK(st.seq == u.new_seq);
      REQUIRE(st.trades.size() == u.trades.size());
      for (const auto& [id, r] : u.trades) CHECK(st.trades.at(id) == r);
    }
    const auto cancel = find(s, "P6-T64", 2);
    REQUIRE(cancel.has_value());
    CHECK(cancel->event.type == TradeType::Cancel);
    CHECK(load(s, key("P6")).trades.at("P6-T64").cancelled);

    // A second batch whose 70th new event takes a stored key: refused, nothing written.
    std::vector<PartitionUpdate> next;
    for (int p = 0; p < 2; ++p) {
      const std::string account = "Q" + std::to_string(p);
      UpdateBuilder u(key(account), 1, 0);
      for (int i = 0; i < 40; ++i) {
        const bool taken = p == 1 && i == 29;
        u.add(new_trade(taken ? "P5-T3" : account + "-T" + std::to_string(i)));
      }
      next.push_back(u.build());
    }
    require_refused(s, batch(next), errc::key_conflict, {key("Q0"), key("Q1")}, {"Q0-T0", "Q1-T0"});
    CHECK(scan(s).size() == static_cast<std::size_t>(total));
  });
}

// The SQLite store loads and claims 64, then 8 partitions per statement, then one at a time: 75
// keys (64 + 8 + 3), some never written, with and without trades and source marks, must load as
// each loads alone, and claiming them must give the same states with the next fence.
TEST_CASE("store: loading and claiming many partitions at once gives each its own state") {
  for_each_store([](StoreUnderTest& s) {
    std::vector<PartitionKey> keys;
    std::vector<PartitionUpdate> written;
    for (int i = 0; i < 75; ++i) {
      char account[16];
      std::snprintf(account, sizeof account, "L%03d", i);
      keys.push_back(key(account));
      if (i % 3 == 0) continue;  // never written
      UpdateBuilder u(keys.back(), 1, 0);
      for (int t = 0; t <= i % 4; ++t) {
        u.add(new_trade(std::string(account) + "-" + std::to_string(t), Side::Sell,
                        std::to_string(t + 1), "2.25"));
      }
      if (i % 5 == 0) u.mark("src", i * 10);
      written.push_back(u.build());
    }
    require_commit(s, batch(written));

    std::vector<PartitionState> alone;
    for (const auto& k : keys) alone.push_back(load(s, k));
    auto together = s->load_partitions(keys);
    REQUIRE(together.has_value());
    REQUIRE(together.value().size() == keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const PartitionState& a = alone[i];
      const PartitionState& b = together.value()[i];
      CHECK(a.seq == b.seq);
      CHECK(a.fence == b.fence);
      CHECK(a.position == b.position);
      CHECK(a.trades == b.trades);
      CHECK(a.source_marks == b.source_marks);
      CHECK(b.seq == (i % 3 == 0 ? 0u : i % 4 + 1));
      CHECK(b.trades.size() == (i % 3 == 0 ? 0u : i % 4 + 1));
      CHECK(b.source_marks.size() == (i % 3 != 0 && i % 5 == 0 ? 1u : 0u));
    }

    const auto claimed = claim_all(s, keys);
    REQUIRE(claimed.size() == keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      CHECK(claimed[i].fence == (i % 3 == 0 ? 1u : 2u));
      CHECK(claimed[i].seq == alone[i].seq);
      CHECK(claimed[i].trades == alone[i].trades);
      CHECK(claimed[i].source_marks == alone[i].source_marks);
    }
  });
}

TEST_CASE("store: thousands of events in small commits, partitions interleaved") {
  // Each partition's events and trades arrive over many commits, interleaved with the other
  // partitions' (the memory store keeps them all in shared blocks, linked per partition, and
  // finds them through store-wide indexes). Trade ids are longer than a short string's buffer.
  for_each_store([](StoreUnderTest& s) {
    const std::vector<PartitionKey> keys{key("P0"), key("P1"), key("P2")};  // ascending
    constexpr int kCommits = 50, kPerCommit = 30;  // 1,500 events a partition
    auto id = [](int p, int n) {
      return "P" + std::to_string(p) + "-long-trade-id-" + std::to_string(n);
    };
    // Event n of a partition: NEW of trade n, except every third after the first commit, which
    // amends trade n - kPerCommit - 1, a NEW of the commit before (its record is replaced).
    auto is_amend = [](int n) { return n % 3 == 2 && n >= kPerCommit; };
    auto target = [](int n) { return n - kPerCommit - 1; };
    std::vector<std::uint64_t> seq(keys.size(), 0);
    for (int c = 0; c < kCommits; ++c) {
      const std::uint64_t fence = 1 + c / 10;
      std::vector<PartitionUpdate> updates;
      for (int p = 0; p < 3; ++p) {
        UpdateBuilder u(keys[p], fence, seq[p]);
        for (int n = c * kPerCommit; n < (c + 1) * kPerCommit; ++n) {
          const std::string q = std::to_string(n + 1);
          u.add(is_amend(n) ? event(id(p, target(n)), 2, TradeType::Amend, Side::Sell, q, "2.5")
                            : new_trade(id(p, n), Side::Buy, q, "1.25"));
        }
        updates.push_back(u);
        seq[p] = updates.back().new_seq;
      }
      require_commit(s, batch(updates));
    }
    constexpr int kEvents = kCommits * kPerCommit;

    const auto events = scan(s);
    REQUIRE(events.size() == 3 * kEvents);
    for (int p = 0; p < 3; ++p) {
      for (int n = 0; n < kEvents; ++n) {
        const StoredEvent& e = events[p * kEvents + n];
        CHECK(e.event.partition == keys[p]);
        CHECK(e.seq == std::uint64_t(n + 1));
        CHECK(e.event.trade_id == id(p, is_amend(n) ? target(n) : n));
        CHECK(e.event.version == (is_amend(n) ? 2 : 1));
        CHECK(e.event.quantity == dec(std::to_string(n + 1)));
      }
      // The first and the last event, and the fences of the commits that wrote them.
      const auto first = find(s, id(p, 0), 1);
      REQUIRE(first.has_value());
      CHECK(first->seq == 1);
      CHECK(first->fence == 1);
      CHECK(first->event.partition == keys[p]);
      const auto last = find(s, id(p, target(kEvents - 1)), 2);
      REQUIRE(last.has_value());
      CHECK(last->seq == std::uint64_t(kEvents));
      CHECK(last->fence == 5);
      CHECK(last->event.price == dec("2.5"));
      CHECK_FALSE(find(s, id(p, target(kEvents - 1)), 3).has_value());

      const PartitionState st = load(s, keys[p]);
      CHECK(st.seq == std::uint64_t(kEvents));
      CHECK(st.fence == 5);
      REQUIRE(st.trades.size() == std::size_t(kEvents - (kEvents - kPerCommit) / 3));
      CHECK(st.trades.at(id(p, 0)) == TradeRecord{1, Side::Buy, dec("1"), dec("1.25"), false});
      CHECK(st.trades.at(id(p, 1)) == TradeRecord{2, Side::Sell, dec("33"), dec("2.5"), false});
      CHECK(st.trades.at(id(p, 2)) == TradeRecord{1, Side::Buy, dec("3"), dec("1.25"), false});
      CHECK(st.trades.at(id(p, target(kEvents - 1))) ==
            TradeRecord{2, Side::Sell, dec(std::to_string(kEvents)), dec("2.5"), false});
      CHECK(st.trades.at(id(p, kEvents - 2)) ==
            TradeRecord{1, Side::Buy, dec(std::to_string(kEvents - 1)), dec("1.25"), false});
      CHECK(st.trades.count(id(p, kPerCommit + 2)) == 0);  // an amend's number names no trade
    }
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

TEST_CASE("store: source marks commit with the events, load with the partition, never as trades") {
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("A"), b = key("B");
    const std::string k0 = "\x1fkafka\x1fg\x1ft\x1f" "0", k1 = "\x1fkafka\x1fg\x1ft\x1f" "1";
    require_commit(s, batch({UpdateBuilder(a, 1, 0).add(new_trade("T1")).mark(k0, 7),
                             UpdateBuilder(b, 1, 0).add(new_trade("T2")).mark("http", 0)}));
    PartitionState st = load(s, a);
    CHECK(st.source_marks == std::map<std::string, std::int64_t, std::less<>>{{k0, 7}});
    CHECK(st.trades.size() == 1);  // T1 only: a mark is not a trade
    CHECK(load(s, b).source_marks.at("http") == 0);

    // A later batch replaces one mark (also backwards: the writer decides) and adds another;
    // marks of other partitions stay.
    require_commit(s, batch({UpdateBuilder(a, 1, 1).add(new_trade("T3")).mark(k0, 5).mark(k1, 9)}));
    st = load(s, a);
    CHECK(st.source_marks ==
          std::map<std::string, std::int64_t, std::less<>>{{k0, 5}, {k1, 9}});
    CHECK(st.trades.size() == 2);
    CHECK(load(s, b).source_marks.size() == 1);
    // A write without marks keeps them.
    require_commit(s, batch({UpdateBuilder(a, 1, 2).add(new_trade("T4"))}));
    CHECK(load(s, a).source_marks.size() == 2);
    // A claim returns them with the state.
    const std::vector<PartitionKey> keys{a};
    auto claimed = s->claim_partitions(keys);
    REQUIRE(claimed.has_value());
    CHECK(claimed.value().at(0).source_marks.at(k1) == 9);

    // A refused batch writes no mark (here: a stale fence).
    require_refused(s, batch({UpdateBuilder(a, 1, 3).add(new_trade("T5")).mark(k1, 20)}),
                    errc::fenced_off, {}, {"T5"});
    CHECK(load(s, a).source_marks.at(k1) == 9);
    // Positions and events know nothing of marks.
    CHECK(positions(s).size() == 2);
    CHECK(scan(s).size() == 4);

    // Invariants: marks strictly ascending, not negative.
    PartitionUpdate unsorted = UpdateBuilder(a, 2, 3).add(new_trade("T6"));
    unsorted.marks = {SourceMark{k1, 1}, SourceMark{k0, 1}};
    CHECK(error_of(s->commit(batch({unsorted}))) == errc::internal);
    unsorted.marks = {SourceMark{k0, 1}, SourceMark{k0, 2}};
    CHECK(error_of(s->commit(batch({unsorted}))) == errc::internal);
    unsorted.marks = {SourceMark{k0, -1}};
    CHECK(error_of(s->commit(batch({unsorted}))) == errc::internal);
    CHECK(load(s, a).seq == 3);
  });
}

TEST_CASE("store: marks without events are checked like a check-only update, then written") {
  // The pipeline's update for a partition whose sourced events were all decided without a write:
  // the seq and fence are checked as for a check-only update, and the marks (only) are written.
  for_each_store([](StoreUnderTest& s) {
    const PartitionKey a = key("A"), fresh = key("F");
    const std::string k0 = "\x1fkafka\x1fg\x1ft\x1f" "0";
    require_commit(s, batch({UpdateBuilder(a, 2, 0).add(new_trade("T1")).mark(k0, 3)}));
    const PartitionState before = load(s, a);
    auto marks_only = [&](const PartitionKey& k, std::uint64_t fence, std::uint64_t seq,
                          std::int64_t position, const Position& pos) {
      PartitionUpdate u;
      u.partition = k;
      u.fence = fence;
      u.expected_seq = u.new_seq = seq;
      u.position = pos;
      u.marks.push_back(SourceMark{k0, position});
      return u;
    };
    // A stale fence: fenced off; a moved seq: a sequence conflict; neither writes the mark.
    CHECK(error_of(s->commit(batch({marks_only(a, 1, 1, 8, before.position)}))) ==
          errc::fenced_off);
    CHECK(error_of(s->commit(batch({marks_only(a, 2, 0, 8, before.position)}))) ==
          errc::sequence_conflict);
    CHECK(load(s, a).source_marks.at(k0) == 3);
    // Current: the mark moves; seq, position, trades and events stay.
    require_commit(s, batch({marks_only(a, 2, 1, 8, before.position)}));
    PartitionState st = load(s, a);
    CHECK(st.source_marks.at(k0) == 8);
    CHECK(st.seq == 1);
    CHECK(st.position == before.position);
    CHECK(st.trades == before.trades);
    CHECK(scan(s).size() == 1);
    // A partition nothing was accepted in (its only events were rejected): the mark is stored
    // at seq 0, and the partition is still no position (spec: only partitions with an accepted
    // event are listed).
    require_commit(s, batch({marks_only(fresh, 1, 0, 5, Position{})}));
    CHECK(load(s, fresh).seq == 0);
    CHECK(load(s, fresh).source_marks.at(k0) == 5);
    CHECK(positions(s).size() == 1);
    // Beside a write of another partition, in one batch.
    require_commit(s, batch({UpdateBuilder(a, 2, 1).add(new_trade("T2")).mark(k0, 9),
                             marks_only(fresh, 1, 0, 6, Position{})}));
    CHECK(load(s, a).source_marks.at(k0) == 9);
    CHECK(load(s, fresh).source_marks.at(k0) == 6);
    // Trades without events are still refused.
    PartitionUpdate with_trade = marks_only(a, 2, 2, 10, before.position);
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

TEST_CASE("store: trades listed as new are written as any other; a stored one listed as new is "
          "refused, or written over") {
  // PartitionUpdate::new_trades: a store may insert the listed trades without looking for a
  // stored row. The memory store checks every listed trade and the PostgreSQL store those it
  // COPYs (64 or more in a batch): a stored one is a sequence conflict that writes nothing. The
  // SQLite store upserts them as any other trade, which the contract allows.
  for_each_store([](StoreUnderTest& s) {
    const std::string name = s->describe();
    const bool memory = name.starts_with("memory"), sqlite = name.starts_with("sqlite");
    const PartitionKey k = key("K");
    // 70 NEWs, all listed as new: a first write.
    UpdateBuilder first(k, 1, 0);
    for (int i = 0; i < 70; ++i) first.add(new_trade("N" + std::to_string(i), Side::Buy, "2"));
    const CommitBatch b1 = batch({first.new_trades(70)});
    require_commit(s, b1);
    CHECK(load(s, k).trades.size() == 70);
    CHECK(load(s, k).trades.at("N69") == TradeRecord{1, Side::Buy, dec("2"), dec("1"), false});
    // New trades listed first, then an AMEND of a stored one (not listed): both written.
    UpdateBuilder second(k, 1, 70);
    for (int i = 0; i < 70; ++i) second.add(new_trade("M" + std::to_string(i), Side::Sell));
    second.add(event("N0", 2, TradeType::Amend, Side::Sell, "5", "7"));
    require_commit(s, batch({second.new_trades(70)}));
    const PartitionState st = load(s, k);
    CHECK(st.seq == 141);
    CHECK(st.trades.size() == 140);
    CHECK(st.trades.at("N0") == TradeRecord{2, Side::Sell, dec("5"), dec("7"), false});
    CHECK(st.trades.at("M5") == TradeRecord{1, Side::Sell, dec("1"), dec("1"), false});
    // A stored trade listed as new (a writer whose view is stale, with the right seq all the
    // same), among 2 and among 69 listed ones.
    for (const int listed : {3, 70}) {
      CAPTURE(listed);
      const std::uint64_t seq = load(s, k).seq;
      const TradeRecord n1 = load(s, k).trades.at("N1");
      const std::string round = std::to_string(listed);
      UpdateBuilder stale(k, 1, seq);
      for (int i = 0; i + 1 < listed; ++i)
        stale.add(new_trade("S" + round + "-" + std::to_string(i)));
      stale.set_trade("N1", TradeRecord{9, Side::Sell, dec("3"), dec("4"), false});
      const CommitBatch b = batch({stale.new_trades(static_cast<std::size_t>(listed))});
      const bool refused = memory || (!sqlite && listed >= 64);
      if (refused) {
        CHECK(error_of(s->commit(b)) == errc::sequence_conflict);
        CHECK(load(s, k).seq == seq);
        CHECK(load(s, k).trades.at("N1") == n1);
        CHECK_FALSE(find(s, "S" + round + "-0", 1).has_value());
      } else {
        require_commit(s, b);
        CHECK(load(s, k).trades.at("N1") == TradeRecord{9, Side::Sell, dec("3"), dec("4"), false});
      }
    }
    // A trade listed twice among the new ones: the memory store refuses it (the PostgreSQL
    // store's COPY would insert it twice, from 64 listed); below that the SQL stores upsert.
    if (memory) {
      const std::uint64_t seq = load(s, k).seq;
      UpdateBuilder twice(k, 1, seq);
      twice.add(new_trade("D1")).add(new_trade("D2"));
      PartitionUpdate u = twice;
      u.trades.push_back(u.trades[0]);  // D1 again, still within the listed ones
      u.new_trades = 3;
      CHECK(error_of(s->commit(batch({u}))) == errc::sequence_conflict);
      CHECK(load(s, k).seq == seq);
      CHECK_FALSE(load(s, k).trades.contains("D1"));
    }
  });
}
