// The cost of one batch on the PostgreSQL store, by batch size: the store calls a shard makes
// for a batch of N NEW events of partitions it holds and has cached (find_events, then commit;
// the partitions are claimed once, untimed, as a shard claims a partition it has no state of),
// against a throwaway PostgreSQL 15 server on loopback (default durability: fsync,
// synchronous_commit=on). Reports per batch and per event: wall time, the host's CPU (the
// calling thread: SOCI and libpq run on it) and the server's CPU (every process of the
// throwaway cluster, from /proc: backends, WAL writer, checkpointer).
//
//   build/bin/bench_pg_batch [--benchmark_filter=...]
//
// TC_PG_STATEMENTS=1 adds a pg_stat_statements profile per size; TC_PG_SETTINGS="a=b,c=d" runs
// the server with extra settings (experiments such as plan_cache_mode=force_generic_plan).
//
// Sizes: 1, 16, 64, 128, 256, 512, 2048, 8192 events (from 64 the events go in with COPY:
// copy_min_rows in postgresql_statements.cpp); a batch of N spreads its events over
// min(N, 1000) partitions, like the pipeline's batches of a 1,000-partition load. Issue #12
// wants this curve in BENCHMARKS.md.

#include "bench_common.hpp"
#include "../tests/support/servers.hpp"

#include <tradecapture/soci_store.hpp>

#include <libpq-fe.h>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>

#include <sstream>

namespace {

using namespace tcbench;

std::unique_ptr<tctest::PostgresServer> g_pg;
int g_db = 0;

std::string pg_uri(const std::string& db) {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(g_pg->port()) + "/" + db;
}

/// TC_PG_STATEMENTS=1: the server loads pg_stat_statements and the program prints, per batch
/// size, the statements of the store's batches with their calls and mean planning and
/// execution times (where the fixed cost of a batch goes).
bool statements_wanted() {
  const char* s = std::getenv("TC_PG_STATEMENTS");
  return s != nullptr && std::string(s) == "1";
}

/// Runs `sql` on database `db`; with `print`, prints the rows, tab-separated (the statement
/// profile).
void db_query(const std::string& db, const std::string& sql, bool print = false) {
  PGconn* c = PQconnectdb(pg_uri(db).c_str());
  if (PQstatus(c) != CONNECTION_OK) throw std::runtime_error(PQerrorMessage(c));
  PGresult* r = PQexec(c, sql.c_str());
  const auto st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    std::string err = PQresultErrorMessage(r);
    PQclear(r);
    PQfinish(c);
    throw std::runtime_error(sql + ": " + err);
  }
  if (print) {
    for (int i = 0; i < PQntuples(r); ++i) {
      for (int j = 0; j < PQnfields(r); ++j)
        std::printf("%s%s", j ? "\t" : "  ", PQgetvalue(r, i, j));
      std::printf("\n");
    }
  }
  PQclear(r);
  PQfinish(c);
}

/// Field `n` (1-based, after the command name) of /proc/<pid>/stat; -1 when unreadable.
long long proc_stat_field(pid_t pid, int n) {
  // read(2), not an ifstream: a process that exits between the open and the read makes the read
  // fail with ESRCH, which libstdc++'s filebuf turns into an exception.
  const int fd = ::open(("/proc/" + std::to_string(pid) + "/stat").c_str(), O_RDONLY);
  if (fd < 0) return -1;
  char buf[1024];
  const ssize_t got = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (got <= 0) return -1;
  const std::string s(buf, std::size_t(got));
  const auto close = s.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream in(s.substr(close + 2));  // field 3 (state) onwards
  std::string tok;
  for (int i = 3; i <= n && in >> tok; ++i) {
    if (i == n) return std::atoll(tok.c_str());
  }
  return -1;
}

/// CPU seconds (user + system) of the postmaster and all its children so far.
double server_cpu_seconds(pid_t postmaster) {
  static const double tick = double(::sysconf(_SC_CLK_TCK));
  long long ticks = 0;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return 0;
  while (dirent* e = ::readdir(d)) {
    const pid_t pid = pid_t(std::atoi(e->d_name));
    if (pid <= 0) continue;
    if (pid != postmaster && proc_stat_field(pid, 4) != postmaster) continue;
    const long long u = proc_stat_field(pid, 14), s = proc_stat_field(pid, 15);
    if (u >= 0 && s >= 0) ticks += u + s;
  }
  ::closedir(d);
  return double(ticks) / tick;
}

double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

/// Batches of `size` NEW events over min(size, 1000) partitions, committed one after another
/// on a fresh database for about `seconds_of_load`, as the shard commits them.
void BM_PgBatchCost(benchmark::State& state) {
  const auto size = std::size_t(state.range(0));
  const std::string db = "tc_batch_" + std::to_string(++g_db);
  db_query("postgres", "CREATE DATABASE " + db);
  if (statements_wanted()) db_query(db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  SociStoreOptions so;
  so.logger = quiet_logger();
  auto opened = open_soci_store(pg_uri(db), so);
  if (!opened) {
    state.SkipWithError(opened.error().message().c_str());
    return;
  }
  TradeStore& store = *opened.value();
  const pid_t postmaster = g_pg->pid();
  const std::size_t parts = std::min<std::size_t>(size, kPartitions);
  std::vector<PartitionKey> keys;
  for (std::size_t i = 0; i < parts; ++i) keys.push_back(partition_key(i));
  std::sort(keys.begin(), keys.end());
  // Claimed once, as a shard claims a partition it has no state of; later batches use the state
  // it keeps (seq, fence), as the shard's cache does in steady state.
  auto claimed = store.claim_partitions(keys);
  if (!claimed) {
    state.SkipWithError(claimed.error().message().c_str());
    return;
  }
  std::vector<PartitionState> states = std::move(claimed).value();
  // The profile counts the timed batches only (not the schema's creation or the claim).
  if (statements_wanted()) db_query(db, "SELECT pg_stat_statements_reset()");
  std::uint64_t next_id = 0;
  double wall = 0, host = 0, server = 0;
  std::size_t batches = 0;
  const Decimal qty = Decimal::parse("100").value(), px = Decimal::parse("187.25").value();
  for (auto _ : state) {
    // Build the batch's events (not timed: the decisions are the processor's, measured elsewhere).
    std::vector<IdempotencyKey> ids;
    std::vector<std::vector<TradeEvent>> per_part(parts);
    for (std::size_t i = 0; i < size; ++i) {
      TradeEvent e;
      e.trade_id = "B" + std::to_string(next_id++);
      e.version = 1;
      e.type = TradeType::New;
      e.partition = keys[i % parts];
      e.side = Side::Buy;
      e.quantity = qty;
      e.price = px;
      ids.push_back(IdempotencyKey{e.trade_id, 1});
      per_part[i % parts].push_back(std::move(e));
    }
    const double s0 = server_cpu_seconds(postmaster), h0 = thread_cpu_seconds();
    const auto t0 = Clock::now();
    if (!store.find_events(ids)) {
      state.SkipWithError("lookup failed");
      return;
    }
    CommitBatch b;
    for (std::size_t p = 0; p < parts; ++p) {
      PartitionState& st = states[p];
      PartitionUpdate u;
      u.partition = keys[p];
      u.fence = st.fence;
      u.expected_seq = st.seq;
      u.new_seq = st.seq;
      u.position = st.position;
      for (auto& e : per_part[p]) {
        u.trades.emplace_back(e.trade_id, TradeRecord{1, Side::Buy, qty, px, false});
        u.events.push_back(StoredEvent{std::move(e), ++u.new_seq});
      }
      u.new_trades = u.trades.size();  // every trade is a NEW's, as the shard lists them
      u.position.live_trades += std::int64_t(u.events.size());
      st.seq = u.new_seq;
      st.position = u.position;
      b.partitions.push_back(std::move(u));
    }
    auto committed = store.commit(b);
    const auto t1 = Clock::now();
    const double h1 = thread_cpu_seconds(), s1 = server_cpu_seconds(postmaster);
    if (!committed) {
      state.SkipWithError(committed.error().message().c_str());
      return;
    }
    const double w = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(w);
    wall += w;
    host += h1 - h0;
    server += s1 - s0;
    ++batches;
  }
  const double events = double(batches * size);
  state.counters["events_per_batch"] = double(size);
  state.counters["wall_us_per_batch"] = wall / double(batches) * 1e6;
  state.counters["host_cpu_us_per_batch"] = host / double(batches) * 1e6;
  state.counters["server_cpu_us_per_batch"] = server / double(batches) * 1e6;
  state.counters["host_cpu_us_per_event"] = host / events * 1e6;
  state.counters["server_cpu_us_per_event"] = server / events * 1e6;
  state.counters["events_per_s"] = benchmark::Counter(events, benchmark::Counter::kIsRate);
  opened.value().reset();
  if (statements_wanted()) {
    // Per batch: every statement the store ran (BEGIN and COMMIT included), then the sums.
    const std::string per_batch = std::to_string(batches);
    const std::string from =
        " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = "
        "current_database() AND s.query NOT LIKE '%pg_stat_statements%'";
    std::printf("statements of %zu batches of %zu events (calls per batch, mean plan ms, mean "
                "exec ms, rows per call, query):\n",
                batches, size);
    db_query(db,
             "SELECT round(calls::numeric / " + per_batch +
                 ", 2), round(mean_plan_time::numeric, 3), round(mean_exec_time::numeric, 3), "
                 "round(rows::numeric / calls, 1), left(regexp_replace(query, '\\s+', ' ', 'g'), "
                 "100)" +
                 from + " ORDER BY total_exec_time + total_plan_time DESC",
             true);
    std::printf("per batch of %zu (statements, planning ms, execution ms):\n", size);
    db_query(db,
             "SELECT round(sum(calls)::numeric / " + per_batch +
                 ", 2), round(sum(total_plan_time)::numeric / " + per_batch +
                 ", 3), round(sum(total_exec_time)::numeric / " + per_batch + ", 3)" + from,
             true);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::vector<std::string> settings;
  if (statements_wanted()) {
    settings = {"shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track=all",
                "pg_stat_statements.track_planning=on"};
  }
  for (auto& kv : pg_settings_from_env()) settings.push_back(std::move(kv));
  g_pg = std::make_unique<tctest::PostgresServer>(settings);
  // Each size runs for at least ~2 s of batches (server CPU is read in clock ticks of 10 ms).
  for (int size : {1, 16, 64, 128, 256, 512, 2048, 8192}) {
    benchmark::RegisterBenchmark("BM_PgBatchCost", BM_PgBatchCost)
        ->Arg(size)
        ->UseManualTime()
        ->MinTime(2.0)
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_pg.reset();
  return 0;
}
