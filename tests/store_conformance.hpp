#pragma once
/// \file store_conformance.hpp
/// The backends of the TradeStore conformance suite (test_store_conformance.cpp) and helpers to
/// build batches. A backend joins the suite by adding a named factory to `store_factories()`.

#include <tradecapture/memory.hpp>
#include <tradecapture/trade_store.hpp>
#ifdef TRADECAPTURE_HAVE_SOCI
#include <tradecapture/soci_store.hpp>
#endif
#ifdef TRADECAPTURE_HAVE_POSTGRES_TESTS
#include "support/servers.hpp"

#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include <atomic>
#endif

#include "support/events.hpp"

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

/// A fresh store and whatever keeps its storage alive.
struct StoreUnderTest {
  std::shared_ptr<TradeStore> store;
  std::string uri;                ///< how to open the same storage again ("" when impossible)
  std::shared_ptr<void> storage;  ///< removes temporary files when the last copy goes
  TradeStore* operator->() const { return store.get(); }
};

/// A backend the suite runs against.
struct StoreFactory {
  std::string name;                      ///< "memory", "sqlite", ...
  std::function<StoreUnderTest()> make;  ///< a fresh, empty store
};

/// A temporary directory, removed with everything in it when the last owner goes.
inline std::shared_ptr<std::filesystem::path> make_scratch_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "tradecapture-test-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return std::shared_ptr<std::filesystem::path>(new std::filesystem::path(pattern),
                                                [](std::filesystem::path* p) {
                                                  std::error_code ec;
                                                  std::filesystem::remove_all(*p, ec);
                                                  delete p;
                                                });
}

#ifdef TRADECAPTURE_HAVE_SOCI
/// A SQLite store in a fresh temporary file.
inline StoreUnderTest make_sqlite_store(const SociStoreOptions& options = {}) {
  auto dir = make_scratch_dir();
  std::string uri = "sqlite:" + (*dir / "store.db").string();
  auto opened = open_soci_store(uri, options);
  if (!opened) throw std::runtime_error("cannot open " + uri + ": " + opened.error().message());
  return {opened.value(), uri, dir};
}
#endif

#ifdef TRADECAPTURE_HAVE_POSTGRES_TESTS
/// The PostgreSQL server of this test process, started on first use, stopped at exit.
inline PostgresServer& shared_postgres() {
  static PostgresServer server;
  return server;
}

/// A libpq URI for database `database` of the shared server.
inline std::string postgres_uri(const std::string& database) {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(shared_postgres().port()) + "/" +
         database;
}

/// A session on database `database` of the shared server, for set-up and plain-SQL checks.
inline std::unique_ptr<soci::session> postgres_session(const std::string& database) {
  return std::make_unique<soci::session>(
      soci::postgresql, "host=127.0.0.1 port=" + std::to_string(shared_postgres().port()) +
                            " user=postgres dbname=" + database);
}

/// Creates an empty database with a name of its own on the shared server, and returns a handle
/// that drops it (with whatever is still connected to it) when its last copy goes.
inline std::shared_ptr<std::string> make_postgres_database() {
  static std::atomic<int> counter{0};
  auto name = std::make_shared<std::string>("tc_" + std::to_string(::getpid()) + "_" +
                                            std::to_string(++counter));
  // A generated identifier, not a value: CREATE DATABASE takes no bound parameters.
  *postgres_session("postgres") << "CREATE DATABASE " + *name;
  return std::shared_ptr<std::string>(name.get(), [name](std::string*) {
    try {
      *postgres_session("postgres") << "DROP DATABASE IF EXISTS " + *name + " WITH (FORCE)";
    } catch (...) {
      // The server is gone already (process exit): its directory goes with it.
    }
  });
}

/// A PostgreSQL store on a fresh, empty database of the shared server. The database is dropped
/// once both the returned store (every copy of it) and `storage` are gone.
inline StoreUnderTest make_postgres_store(const SociStoreOptions& options = {}) {
  auto database = make_postgres_database();
  const std::string uri = postgres_uri(*database);
  auto opened = open_soci_store(uri, options);
  if (!opened) throw std::runtime_error("cannot open " + uri + ": " + opened.error().message());
  // The store's last owner closes it first, then lets go of the database.
  std::shared_ptr<TradeStore> inner = opened.value();
  std::shared_ptr<TradeStore> store(inner.get(), [inner, database](TradeStore*) mutable {
    inner.reset();
    database.reset();
  });
  return {store, uri, database};
}
#endif

/// Every backend built into this binary. Add a factory to hold a new backend to the suite.
inline std::vector<StoreFactory> store_factories() {
  std::vector<StoreFactory> f;
  f.push_back({"memory", [] { return StoreUnderTest{make_memory_store(), "", nullptr}; }});
#ifdef TRADECAPTURE_HAVE_SOCI
  f.push_back({"sqlite", [] { return make_sqlite_store(); }});
#endif
#ifdef TRADECAPTURE_HAVE_POSTGRES_TESTS
  f.push_back({"postgresql", [] { return make_postgres_store(); }});
#endif
  return f;
}

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

}  // namespace tctest
