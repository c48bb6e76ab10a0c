#pragma once
/// \file store_conformance.hpp
/// The TradeStore conformance suite's registry of backends (test_store_conformance.cpp runs every
/// case against each) and helpers to build batches and check stores. A backend joins the suite
/// with a static `RegisterStore` in its own test folder, compiled only when the backend is built.

#include <tradecapture/memory.hpp>
#include <tradecapture/trade_store.hpp>

#include "support/events.hpp"
#include "support/stores.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <unistd.h>

namespace tctest {

using namespace tradecapture;

/// A backend the suite runs against.
struct StoreFactory {
  std::string name;                      ///< "memory", "sqlite", ...
  std::function<StoreUnderTest()> make;  ///< a fresh, empty store
  int rank = 0;                          ///< order in the suite (memory first)
};

/// Every backend built into this binary, in rank order: memory here, the others registered by
/// their folder (tests/sqlite/sqlite_context.cpp, tests/postgresql/postgresql_context.cpp).
std::vector<StoreFactory>& store_factories();

/// Registers a backend with the suite from a static object in the backend's test folder.
struct RegisterStore {
  RegisterStore(std::string name, std::function<StoreUnderTest()> make, int rank);
};

/// Runs `body(StoreUnderTest&)` against a fresh store of every backend, each in a doctest
/// SUBCASE named after the backend, so a failure names its backend and does not hide the others.
template <class Body>
void for_each_store(Body&& body) {
  for (const auto& factory : store_factories()) {
    SUBCASE(factory.name.c_str()) {
      StoreUnderTest s = factory.make();
      body(s);
    }
  }
}

// ---- building values --------------------------------------------------------------------------

/// A partition key.
inline PartitionKey key(std::string account, std::string book = "B", std::string security = "S") {
  return pk(std::move(account), std::move(book), std::move(security));
}

/// An event (its partition is set when it is added to an update).
inline TradeEvent event(std::string trade_id, std::int64_t version, TradeType type,
                        Side side = Side::Buy, std::string_view quantity = "1",
                        std::string_view price = "1") {
  return ev(std::move(trade_id), version, type, PartitionKey{}, side, quantity, price);
}

/// A NEW event.
inline TradeEvent new_trade(std::string trade_id, Side side = Side::Buy,
                            std::string_view quantity = "1", std::string_view price = "1") {
  return event(std::move(trade_id), 1, TradeType::New, side, quantity, price);
}

/// Builds one PartitionUpdate: events get the next sequence numbers and their trades' records.
class UpdateBuilder {
 public:
  UpdateBuilder(PartitionKey partition, std::uint64_t fence, std::uint64_t expected_seq) {
    u_.partition = std::move(partition);
    u_.fence = fence;
    u_.expected_seq = expected_seq;
    u_.new_seq = expected_seq;
  }
  /// Appends an accepted event (and records its trade's new state).
  UpdateBuilder& add(TradeEvent e) {
    e.partition = u_.partition;
    TradeRecord r;
    r.version = e.version;
    if (e.type == TradeType::Cancel) {
      r.cancelled = true;
      for (const auto& [id, prev] : u_.trades) {
        if (id == e.trade_id)
          r = TradeRecord{e.version, prev.side, prev.quantity, prev.price, true};
      }
    } else {
      r.side = e.side;
      r.quantity = e.quantity;
      r.price = e.price;
    }
    set_trade(e.trade_id, r);
    u_.events.push_back(StoredEvent{std::move(e), ++u_.new_seq});
    u_.position.live_trades = static_cast<std::int64_t>(u_.trades.size());
    return *this;
  }
  /// Lists the first `n` trades (in the order their ids were first added) as new to the
  /// partition (PartitionUpdate::new_trades).
  UpdateBuilder& new_trades(std::size_t n) {
    u_.new_trades = n;
    return *this;
  }
  /// Sets the position written with the update.
  UpdateBuilder& position(Position p) {
    u_.position = std::move(p);
    return *this;
  }
  /// Sets (or replaces) a trade record written with the update.
  UpdateBuilder& set_trade(const std::string& trade_id, const TradeRecord& r) {
    for (auto& [id, record] : u_.trades) {
      if (id == trade_id) {
        record = r;
        return *this;
      }
    }
    u_.trades.emplace_back(trade_id, r);
    return *this;
  }
  /// Adds a source mark written with the update (keeps the marks sorted by source id).
  UpdateBuilder& mark(std::string source, std::int64_t position) {
    auto pos = u_.marks.begin();
    while (pos != u_.marks.end() && pos->source < source) ++pos;
    u_.marks.insert(pos, SourceMark{std::move(source), position});
    return *this;
  }
  PartitionUpdate build() const { return u_; }
  operator PartitionUpdate() const { return u_; }

 private:
  PartitionUpdate u_;
};

/// A batch of updates (which must already be in ascending key order for a valid batch).
inline CommitBatch batch(std::vector<PartitionUpdate> updates) {
  CommitBatch b;
  b.partitions = std::move(updates);
  return b;
}

/// A source offset row (consumer, topic, partition, next_offset, epoch).
inline SourceOffset source(std::string consumer, std::string topic, std::int32_t partition,
                           std::int64_t next_offset, std::uint64_t epoch) {
  return SourceOffset{std::move(consumer), std::move(topic), partition, next_offset, epoch};
}

/// A batch of updates and source offsets (both already in ascending order for a valid batch).
inline CommitBatch batch(std::vector<PartitionUpdate> updates, std::vector<SourceOffset> sources) {
  CommitBatch b;
  b.partitions = std::move(updates);
  b.sources = std::move(sources);
  return b;
}

/// The error of a failed result, or a default error_code on success.
template <class R>
boost::system::error_code error_of(const R& r) {
  return r ? boost::system::error_code{} : r.error();
}

/// Store operations with doctest checks, shared by the suite and the backends' own tests.
namespace store_ops {


/// Loads one partition.
inline PartitionState load(StoreUnderTest& s, const PartitionKey& k) {
  auto r = s->load_partitions(std::span<const PartitionKey>(&k, 1));
  REQUIRE(r.has_value());
  REQUIRE(r.value().size() == 1);
  return r.value()[0];
}

/// Looks up one idempotency key.
inline std::optional<StoredEvent> find(StoreUnderTest& s, std::string trade_id, std::int64_t version) {
  IdempotencyKey k{std::move(trade_id), version};
  auto r = s->find_events(std::span<const IdempotencyKey>(&k, 1));
  REQUIRE(r.has_value());
  REQUIRE(r.value().size() == 1);
  return r.value()[0];
}

/// Every event, in scan order.
inline std::vector<StoredEvent> scan(StoreUnderTest& s) {
  std::vector<StoredEvent> out;
  auto r = s->scan_events([&](const StoredEvent& e) {
    out.push_back(e);
    return true;
  });
  REQUIRE(r.has_value());
  return out;
}

inline std::vector<PositionRow> positions(StoreUnderTest& s) {
  auto r = s->positions();
  REQUIRE(r.has_value());
  return r.value();
}

inline void require_commit(StoreUnderTest& s, const CommitBatch& b) {
  auto r = s->commit(b);
  REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? std::string() : r.error().message()));
}

inline bool same_event(const StoredEvent& a, const StoredEvent& b) {
  return a.seq == b.seq && a.event.trade_id == b.event.trade_id &&
         a.event.version == b.event.version && a.event.type == b.event.type &&
         a.event.partition == b.event.partition &&
         (a.event.type == TradeType::Cancel ||
          (a.event.side == b.event.side && a.event.quantity == b.event.quantity &&
           a.event.price == b.event.price));
}

inline Position sample_position() {
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
inline void require_untouched(StoreUnderTest& s, const PartitionKey& k) {
  const PartitionState st = load(s, k);
  CHECK(st.seq == 0);
  CHECK(st.fence == 0);
  CHECK(st.trades.empty());
  CHECK(st.position == Position{});
}

/// Commits `b`, which must be refused with `want` and write nothing: the partitions `untouched`
/// stay unstored, and so does version 1 of the trades `absent`.
inline void require_refused(StoreUnderTest& s, const CommitBatch& b, errc want,
                     std::initializer_list<PartitionKey> untouched = {},
                     std::initializer_list<const char*> absent = {}) {
  CHECK(error_of(s->commit(b)) == want);
  for (const auto& k : untouched) require_untouched(s, k);
  for (const char* id : absent) CHECK_FALSE(find(s, id, 1).has_value());
}


/// s1 and s2 share a database: s2 sees what s1 wrote and takes partition K over with a higher
/// token; then s1's writes are refused (fenced off; a stale sequence number; an idempotency key s2
/// took, in another partition L, which the refused batch does not leave behind).
inline void check_other_writer_detected(StoreUnderTest& s1, StoreUnderTest& s2) {
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

inline SourceOffset claim(StoreUnderTest& s, const std::string& consumer, const std::string& topic,
                   std::int32_t partition) {
  auto r = s->claim_source(consumer, topic, partition);
  REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? std::string() : r.error().message()));
  return r.value();
}

inline std::vector<SourceOffset> offsets(StoreUnderTest& s, const std::string& consumer) {
  auto r = s->source_offsets(consumer);
  REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? std::string() : r.error().message()));
  return r.value();
}



/// Claims partitions (strictly ascending) and returns their states.
inline std::vector<PartitionState> claim_all(StoreUnderTest& s, const std::vector<PartitionKey>& keys) {
  auto r = s->claim_partitions(keys);
  REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? std::string() : r.error().message()));
  REQUIRE(r.value().size() == keys.size());
  return r.value();
}

/// Claims one partition and returns its state (the new fence in `fence`).
inline PartitionState claim_one(StoreUnderTest& s, const PartitionKey& k) {
  return claim_all(s, {k}).front();
}

/// A check-only update: the partition must still be at `seq`, with a fence not above `fence`.
inline PartitionUpdate check_update(const PartitionKey& k, std::uint64_t fence, std::uint64_t seq) {
  return UpdateBuilder(k, fence, seq).build();
}

/// A batch with updates and absent keys.
inline CommitBatch batch_absent(std::vector<PartitionUpdate> updates, std::vector<IdempotencyKey> absent,
                         std::vector<SourceOffset> sources = {}) {
  CommitBatch b = batch(std::move(updates), std::move(sources));
  b.absent_keys = std::move(absent);
  return b;
}


}  // namespace store_ops

}  // namespace tctest
