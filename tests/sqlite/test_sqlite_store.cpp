// The SQLite store's own checks (reopening, the schema and its plain-SQL columns, migrations from
// older versions, URIs and options); the shared TradeStore suite runs on SQLite too
// (tests/common/test_store_conformance.cpp). Built when the SOCI backend is.

#include "common/sql_schema.hpp"
#include "common/store_conformance.hpp"

#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <chrono>
#include <string>
#include <thread>

using namespace tradecapture;
using namespace tctest;
using namespace tctest::store_ops;

namespace {

std::string sqlite_path(const StoreUnderTest& s) { return s.uri.substr(7); }

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
  require_commit(s, batch({schema_partition()}));

  soci::session sql(soci::sqlite3, "db=\"" + sqlite_path(s) + "\"");
  check_schema_rows(sql, {.as_text = "",
                          .net_quantity = "-1000000000000000000000000",
                          .bought_notional = "18725.123456789",
                          .quantity = "0.5",
                          .price = "187.25"});
  // Decimals are TEXT, written as they print.
  std::string net_type, journal;
  sql << "SELECT typeof(net_quantity) FROM partitions", soci::into(net_type);
  CHECK(net_type == "text");
  sql << "PRAGMA journal_mode", soci::into(journal);
  CHECK(journal == "wal");
  // A new database gets 8 KiB pages (sqlite_dialect.cpp says why).
  int page_size = 0;
  sql << "PRAGMA page_size", soci::into(page_size);
  CHECK(page_size == 8192);
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
    CHECK(version == 4);
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
    sql << "DROP TABLE source_marks";
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

TEST_CASE("sqlite: a version-3 database's replay markers move from trades to source marks") {
  StoreUnderTest s = make_sqlite_store();
  const std::string marker = "\x1fkafka\x1fg\x1ft\x1f" "0";
  require_commit(s, batch({UpdateBuilder(key("A"), 1, 0).add(new_trade("T1")),
                           UpdateBuilder(key("B"), 1, 0).add(new_trade("T2"))}));
  s.store.reset();
  // Back to version 3, as the Kafka source of that version left it: its replay marker of A is a
  // trade record whose id starts with a control character.
  {
    soci::session sql(soci::sqlite3, "db=\"" + sqlite_path(s) + "\"");
    sql << "DROP TABLE source_marks";
    sql << "DELETE FROM schema_version WHERE version >= 4";
    long long id = 0;
    sql << "SELECT partition_id FROM partitions WHERE account = 'A'", soci::into(id);
    sql << "INSERT INTO trades (partition_id, trade_id, version, side, quantity, price, "
           "cancelled) VALUES (:id, :trade_id, 41, 'BUY', '0', '0', 0)",
        soci::use(id, "id"), soci::use(marker, "trade_id");
  }
  auto migrated = open_soci_store(s.uri);
  REQUIRE(migrated.has_value());
  StoreUnderTest again{migrated.value(), s.uri, s.storage};
  const PartitionState a = load(again, key("A"));
  CHECK(a.source_marks == std::map<std::string, std::int64_t, std::less<>>{{marker, 41}});
  REQUIRE(a.trades.size() == 1);
  CHECK(a.trades.count("T1") == 1);
  CHECK(load(again, key("B")).source_marks.empty());
  CHECK(load(again, key("B")).trades.size() == 1);
  again.store.reset();
  soci::session sql(soci::sqlite3, "db=\"" + sqlite_path(s) + "\"");
  long long version = 0, trades = 0;
  sql << "SELECT MAX(version) FROM schema_version", soci::into(version);
  CHECK(version == 4);
  sql << "SELECT count(*) FROM trades", soci::into(trades);
  CHECK(trades == 2);
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
