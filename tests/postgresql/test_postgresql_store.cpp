// The PostgreSQL store's own checks against a throwaway server (tests/support/servers.hpp): two
// hosts on one database, SQLSTATE classification, restarts, lock waits, statement counts. The
// shared TradeStore suite runs on PostgreSQL too (tests/common/test_store_conformance.cpp).

#include "common/sql_schema.hpp"
#include "common/store_conformance.hpp"

#include <soci/soci.h>

#include "../backends/soci/sql_faults.hpp"  // the SQLSTATE classification (a private header)

#include <algorithm>
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
  CHECK(version == 4);
  *sql << "SELECT count(*) FROM information_schema.key_column_usage "
          "WHERE table_name = 'source_offsets' AND constraint_name = 'source_offsets_pkey'",
      soci::into(columns);
  CHECK(columns == 3);
}

TEST_CASE("postgresql: a version-3 database's replay markers move from trades to source marks") {
  StoreUnderTest s = make_postgres_store();
  const std::string marker = "\x1fkafka\x1fg\x1ft\x1f" "0";
  require_commit(s, batch({UpdateBuilder(key("A"), 1, 0).add(new_trade("T1")),
                           UpdateBuilder(key("B"), 1, 0).add(new_trade("T2"))}));
  {
    auto sql = pg_sql(s);
    *sql << "DROP TABLE source_marks";
    *sql << "DELETE FROM schema_version WHERE version >= 4";
    long long id = 0;
    *sql << "SELECT partition_id FROM partitions WHERE account = 'A'", soci::into(id);
    *sql << "INSERT INTO trades (partition_id, trade_id, version, side, quantity, price, "
            "cancelled) VALUES (:id, :trade_id, 41, 'BUY', 0, 0, 0)",
        soci::use(id, "id"), soci::use(marker, "trade_id");
  }
  StoreUnderTest again = open_again(s);  // migrates
  const PartitionState a = load(again, key("A"));
  CHECK(a.source_marks == std::map<std::string, std::int64_t, std::less<>>{{marker, 41}});
  REQUIRE(a.trades.size() == 1);
  CHECK(a.trades.count("T1") == 1);
  CHECK(load(again, key("B")).source_marks.empty());
  auto sql = pg_sql(s);
  long long version = 0, trades = 0;
  *sql << "SELECT MAX(version) FROM schema_version", soci::into(version);
  CHECK(version == 4);
  *sql << "SELECT count(*) FROM trades", soci::into(trades);
  CHECK(trades == 2);
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
  Position p = schema_position();
  p.bought_notional = dec("999999999999999999999999.99999999999998");
  Position q;
  q.bought_notional = dec("0.00000000000001");
  q.sold_notional = dec("1000000000000000000000000");
  require_commit(s, batch({schema_partition(p),
                           UpdateBuilder(key("B"), 3, 0).add(new_trade("T2")).position(q)}));

  auto sql = pg_sql(s);
  // NUMERIC(39,14) prints all 14 fractional digits.
  check_schema_rows(*sql, {.as_text = "::text",
                           .net_quantity = "-1000000000000000000000000.00000000000000",
                           .bought_notional = "999999999999999999999999.99999999999998",
                           .quantity = "0.50000000000000",
                           .price = "187.25000000000000"});
  // Exact sums in plain SQL.
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
  // A first write: partitions: the insert-if-missing INSERT ... ON CONFLICT DO UPDATE (which
  // fires both statement triggers) and the conditional UPDATE; events: one INSERT; trades: one
  // upsert.
  const std::map<std::string, long long> first_write{{"partitions INSERT", 1},
                                                     {"partitions UPDATE", 2},
                                                     {"events INSERT", 1},
                                                     {"trades INSERT", 1},
                                                     {"trades UPDATE", 1}};
  CHECK(counts() == first_write);

  // The next batch over all of them: an AMEND and a CANCEL each.
  std::vector<PartitionUpdate> next;
  for (const auto& u : first.partitions) {
    next.push_back(
        UpdateBuilder(u.partition, 1, 5)
            .add(event(u.partition.account + "-0", 2, TradeType::Amend, Side::Sell, "1", "2"))
            .add(event(u.partition.account + "-1", 2, TradeType::Cancel)));
  }
  require_commit(s, batch(next));
  // Not a first write: no insert-if-missing (the conditional UPDATE locks the rows itself).
  const std::map<std::string, long long> per_batch{{"partitions UPDATE", 1},
                                                   {"events INSERT", 1},
                                                   {"trades INSERT", 1},
                                                   {"trades UPDATE", 1}};
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

TEST_CASE("postgresql: batches of every size up to past the small-batch statements agree") {
  // Up to 8 rows (small_rows in postgresql_statements.cpp) the lookup and the writes of a batch
  // run as VALUES statements, one per number of rows; above, as array statements. Every size
  // from 1 to 12 commits, reads back and is refused here, each size 8 times (PostgreSQL plans a
  // prepared statement afresh for its first 5 executions, then may switch to a generic plan),
  // with texts that need quoting, CANCELs (NULL side, quantity and price), first writes (rows
  // created by lock_partitions), key conflicts, stale fences and sequence conflicts.
  StoreUnderTest s = make_postgres_store();
  const auto trade_writers = [&] {
    auto sql = pg_sql(s);
    std::vector<std::string> out;
    soci::rowset<std::string> rows =
        (sql->prepare << "SELECT split_part(query, ' ', 1) FROM trades_writers");
    for (const auto& q : rows) out.push_back(q);
    *sql << "DELETE FROM trades_writers";
    return out;
  };
  const std::vector<std::string> odd{"a,b",  "{x}", "\"q\"", "back\\slash",
                                     "NULL", " sp ", "\xC3\xA9"};
  constexpr std::uint64_t fence = 2;
  constexpr int rounds = 8;
  for (std::size_t n = 1; n <= 12; ++n) {
    CAPTURE(n);
    std::vector<PartitionKey> keys;
    for (std::size_t i = 0; i < n; ++i) {
      keys.push_back(key("N" + std::to_string(100 + n) + "-" + std::to_string(10 + i) + odd[i % 7],
                         odd[(i + 1) % 7], odd[(i + 2) % 7]));
    }
    std::sort(keys.begin(), keys.end());
    const auto trade = [&](std::size_t i, int r) {
      return "T" + std::to_string(n) + "-" + std::to_string(i) + "-" + std::to_string(r) +
             odd[(i + std::size_t(r)) % 7];
    };
    // A batch of round r: partition i at seq `seq` gets one event, a NEW or (every third round)
    // a CANCEL of the previous round's trade.
    const auto round_batch = [&](int r, std::uint64_t seq) {
      std::vector<PartitionUpdate> updates;
      for (std::size_t i = 0; i < n; ++i) {
        UpdateBuilder u(keys[i], fence, seq);
        if (r % 3 == 2) {
          u.add(event(trade(i, r - 1), 2, TradeType::Cancel));
        } else {
          u.add(new_trade(trade(i, r), i % 2 ? Side::Sell : Side::Buy,
                          std::to_string(i + 1) + ".25", "187.0" + std::to_string(r)));
        }
        updates.push_back(u);
      }
      return batch(std::move(updates));
    };
    // Key conflicts of first writes: nothing stays behind, not even the partition rows.
    CommitBatch first = round_batch(0, 0);
    first.partitions.back().events.back().event.trade_id = trade(0, 0);
    if (n > 1) {
      CHECK(error_of(s->commit(first)) == errc::key_conflict);
      for (const auto& k : keys) require_untouched(s, k);
    }
    for (int r = 0; r < rounds; ++r) {
      CAPTURE(r);
      const CommitBatch b = round_batch(r, std::uint64_t(r));
      require_commit(s, b);
      std::vector<IdempotencyKey> ids;
      for (const auto& u : b.partitions) {
        ids.push_back(IdempotencyKey{u.events[0].event.trade_id, u.events[0].event.version});
      }
      auto found = s->find_events(ids);
      REQUIRE(found.has_value());
      REQUIRE(found.value().size() == n);
      for (std::size_t i = 0; i < n; ++i) {
        const auto& want = b.partitions[i].events[0];
        REQUIRE(found.value()[i].has_value());
        CHECK(same_event(*found.value()[i], want));
        CHECK(found.value()[i]->fence == fence);
      }
    }
    const auto seq = std::uint64_t(rounds);
    for (std::size_t i = 0; i < n; ++i) {
      const PartitionState st = load(s, keys[i]);
      CHECK(st.seq == seq);
      CHECK(st.fence == fence);
      CHECK(st.position.live_trades == 1);  // UpdateBuilder: the trades of the last update
      CHECK(st.trades.size() == std::size_t(rounds - rounds / 3));  // NEWs; CANCELs replace
      CHECK(st.trades.at(trade(i, 4)).cancelled);
      CHECK(st.trades.at(trade(i, 7)) ==
            TradeRecord{1, i % 2 ? Side::Sell : Side::Buy, dec(std::to_string(i + 1) + ".25"),
                        dec("187.07"), false});
    }
    // Refusals of a round of NEWs, each found at the batch's last row, none writing anything.
    const int next = rounds + 1;
    const auto require_nothing_written = [&] {
      for (std::size_t i = 0; i < n; ++i) CHECK(load(s, keys[i]).seq == seq);
      CHECK_FALSE(find(s, trade(0, next), 1).has_value());
    };
    CommitBatch taken = round_batch(next, seq);  // the last key was stored by round 0
    taken.partitions.back().events.back().event.trade_id = trade(n - 1, 0);
    CHECK(error_of(s->commit(taken)) == errc::key_conflict);
    require_nothing_written();
    CommitBatch twice = round_batch(next, seq);  // the last event's key twice in the batch
    UpdateBuilder last(keys.back(), fence, seq);
    last.add(new_trade(trade(n - 1, next))).add(new_trade(trade(n - 1, next)));
    twice.partitions.back() = last;
    CHECK(error_of(s->commit(twice)) == errc::key_conflict);
    require_nothing_written();
    CommitBatch stale = round_batch(next, seq);
    stale.partitions.back().fence = fence - 1;
    CHECK(error_of(s->commit(stale)) == errc::fenced_off);
    require_nothing_written();
    CommitBatch moved = round_batch(next, seq);
    moved.partitions.back().expected_seq = seq - 1;
    moved.partitions.back().new_seq = seq;
    moved.partitions.back().events.back().seq = seq;
    CHECK(error_of(s->commit(moved)) == errc::sequence_conflict);
    require_nothing_written();
  }
  CHECK(scan(s).size() == std::size_t(12 * 13 / 2 * rounds));
}

TEST_CASE("postgresql: a batch of 64 events or more goes in with COPY, as the INSERT would") {
  // From 64 events (copy_min_rows in postgresql_statements.cpp) a batch's events are COPYed.
  // The same batches of 63 and 64 events, with every character that COPY's text format gives a
  // meaning, CANCELs (NULL columns), first writes and later ones, must read back the same, a
  // taken key must be a key conflict that writes nothing, and the session must go on after one.
  StoreUnderTest s = make_postgres_store();
  {
    // Which statement wrote the events, and the trades: a statement-level trigger on each keeps
    // the top-level query in <table>_writers.
    auto sql = pg_sql(s);
    for (const std::string table : {"events", "trades"}) {
      *sql << "CREATE TABLE " + table + "_writers (query text NOT NULL)";
      *sql << "CREATE FUNCTION log_" + table + "_writer() RETURNS trigger LANGUAGE plpgsql AS $$ "
              "BEGIN INSERT INTO " + table + "_writers VALUES (current_query()); RETURN NULL; "
              "END $$";
      *sql << "CREATE TRIGGER log_" + table + "_writer AFTER INSERT ON " + table +
                  " FOR EACH STATEMENT EXECUTE FUNCTION log_" + table + "_writer()";
    }
  }
  // The trades of partition `k` are those that `b` (its only update) leaves.
  const auto require_trades = [&](const PartitionKey& k, const CommitBatch& b) {
    const PartitionState st = load(s, k);
    for (const auto& [id, record] : b.partitions[0].trades) {
      CAPTURE(id);
      REQUIRE(st.trades.contains(id));
      CHECK(st.trades.at(id) == record);
    }
  };
  // The first word of each statement that wrote `table` since the last call.
  const auto writers_of = [&](const std::string& table) {
    auto sql = pg_sql(s);
    std::vector<std::string> out;
    soci::rowset<std::string> rows =
        (sql->prepare << "SELECT split_part(query, ' ', 1) FROM " + table + "_writers");
    for (const auto& q : rows) out.push_back(q);
    *sql << "DELETE FROM " + table + "_writers";
    return out;
  };
  const auto writers = [&] { return writers_of("events"); };
  const auto trade_writers = [&] { return writers_of("trades"); };
  const std::vector<std::string> odd{"\\N",   "back\\slash", "tab\there", "new\nline",
                                     "cr\rx", "\b\f\v",      "NULL",      "\"q\"",
                                     "a,b",   "\\.",         "\xC3\xA9",  " sp "};
  for (const std::size_t n : {std::size_t{63}, std::size_t{64}}) {
    CAPTURE(n);
    const std::string expect = n < 64 ? "WITH" : "COPY";  // insert_events_sql starts with WITH
    trade_writers();  // forget the rounds of the size before
    const PartitionKey k = key("K" + std::to_string(n), "\\N", "tab\tbook");
    const auto id = [&](std::size_t i) {
      return std::to_string(n) + "-" + odd[i % odd.size()] + "-" + std::to_string(i);
    };
    // Round 1: n NEWs, a first write. Round 2: n events on top, a CANCEL every third.
    UpdateBuilder first(k, 1, 0);
    for (std::size_t i = 0; i < n; ++i)
      first.add(new_trade(id(i), i % 2 ? Side::Sell : Side::Buy, std::to_string(i + 1) + ".125",
                          "0.00000001"));
    // Listed as new (PartitionUpdate::new_trades): from 64 the trades go in by COPY too.
    const CommitBatch b1 = batch({first.new_trades(n)});
    require_commit(s, b1);
    CHECK(writers() == std::vector<std::string>{expect});
    CHECK(trade_writers() == std::vector<std::string>{n < 64 ? "INSERT" : "COPY"});
    require_trades(k, b1);
    UpdateBuilder second(k, 1, n);
    for (std::size_t i = 0; i < n; ++i) {
      if (i % 3 == 0) {
        second.add(event(id(i), 2, TradeType::Cancel));
      } else {
        second.add(event(id(i), 2, TradeType::Amend, Side::Sell, "7", "123456789.12345678"));
      }
    }
    const CommitBatch b2 = batch({second});
    require_commit(s, b2);
    CHECK(writers() == std::vector<std::string>{expect});
    require_trades(k, b2);
    CHECK(load(s, k).trades.size() == n);
    for (const CommitBatch* b : {&b1, &b2}) {
      std::vector<IdempotencyKey> keys;
      for (const auto& e : b->partitions[0].events)
        keys.push_back(IdempotencyKey{e.event.trade_id, e.event.version});
      auto found = s->find_events(keys);
      REQUIRE(found.has_value());
      REQUIRE(found.value().size() == n);
      for (std::size_t i = 0; i < n; ++i) {
        CAPTURE(i);
        REQUIRE(found.value()[i].has_value());
        CHECK(same_event(*found.value()[i], b->partitions[0].events[i]));
        CHECK(found.value()[i]->fence == 1);
      }
    }
    CHECK(load(s, k).seq == 2 * n);

    // A key stored before, as the last event of a batch of n NEWs: a key conflict, nothing
    // written; so is a key twice in one batch. Then the same session commits the batch right.
    const auto round3 = [&](std::size_t count) {
      UpdateBuilder u(k, 1, 2 * n);
      for (std::size_t i = 0; i < count; ++i) u.add(new_trade("r3-" + id(i)));
      return u;
    };
    UpdateBuilder taken = round3(n - 1);
    taken.add(new_trade(id(0)));  // version 1 of id(0) is stored
    CHECK(error_of(s->commit(batch({taken}))) == errc::key_conflict);
    UpdateBuilder twice = round3(n - 1);
    twice.add(new_trade("r3-" + id(0)));
    CHECK(error_of(s->commit(batch({twice}))) == errc::key_conflict);
    CHECK(load(s, k).seq == 2 * n);
    CHECK_FALSE(find(s, "r3-" + id(0), 1).has_value());
    CHECK(writers().empty());  // rolled back: the trigger's rows too
    require_commit(s, batch({round3(n)}));
    CHECK(writers() == std::vector<std::string>{expect});
    CHECK(load(s, k).trades.size() == 2 * n);
    CHECK(load(s, k).seq == 3 * n);
    CHECK(find(s, "r3-" + id(n - 1), 1).has_value());
  }
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
