// The pipeline on a real PostgreSQL store (default durability: fsync, synchronous_commit=on) and
// a real Redis lock, both started here on loopback, against a seed-like baseline (per trade:
// Redis SET NX lock, BEGIN, idempotency SELECT, INSERT, SELECT ... FOR UPDATE, UPDATE, COMMIT,
// compare-and-delete release; one libpq + one hiredis connection per worker thread).
//
//   build/bin/bench_pg_redis [--benchmark_filter=...]
//
// Aims: >= 50,000 trades/s sustained on 1,000 partitions; db commits per trade < 0.01; Redis
// round trips per trade < 0.01; our out-of-order applications on 10 hot partitions = 0.
// TC_PG_EVENTS overrides the events per pipeline run (default 300,000); TC_BASELINE_SECONDS the
// duration of one baseline run (default 4); TC_BENCH_RATE the rate of the latency run (default:
// half the measured saturation; bench/latency_load.sh sweeps it); TC_PG_SETTINGS="name=value,..."
// extra PostgreSQL settings for experiments.

#include "bench_common.hpp"
#include "../tests/support/servers.hpp"

#include <tradecapture/redis_lock.hpp>
#include <tradecapture/soci_store.hpp>
#include <tradecapture/store_wrapper.hpp>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include <deque>

namespace {

using namespace tcbench;

/// The throwaway servers of the test suite (default durability; waits for pg_isready).
std::unique_ptr<tctest::PostgresServer> g_pg;
std::unique_ptr<tctest::RedisServer> g_redis;
int g_run = 0;

std::size_t pg_events() {
  const char* s = std::getenv("TC_PG_EVENTS");
  return s ? std::size_t(std::strtoull(s, nullptr, 10)) : 300000;
}
double baseline_seconds() {
  const char* s = std::getenv("TC_BASELINE_SECONDS");
  return s ? std::atof(s) : 4.0;
}

std::string pg_uri(const std::string& db) {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(g_pg->port()) + "/" + db;
}

void admin_exec(const std::string& sql) {
  PGconn* c = PQconnectdb(pg_uri("postgres").c_str());
  if (PQstatus(c) != CONNECTION_OK) throw std::runtime_error(PQerrorMessage(c));
  PGresult* r = PQexec(c, sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  std::string err = ok ? "" : PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(c);
  if (!ok) throw std::runtime_error(sql + ": " + err);
}

/// Counts the lock's calls: each try_acquire/renew/release is one pipelined Redis round trip.
class CountingLock : public PartitionLockWrapper {
 public:
  using PartitionLockWrapper::PartitionLockWrapper;
  result<std::vector<result<Grant>>> try_acquire(std::span<const PartitionKey> p) override {
    calls.fetch_add(1, std::memory_order_relaxed);
    return PartitionLockWrapper::try_acquire(p);
  }
  result<std::vector<result<void>>> renew(std::span<Grant> g) override {
    calls.fetch_add(1, std::memory_order_relaxed);
    return PartitionLockWrapper::renew(g);
  }
  void release(std::span<const Grant> g) override {
    calls.fetch_add(1, std::memory_order_relaxed);
    PartitionLockWrapper::release(g);
  }
  std::atomic<std::uint64_t> calls{0};
};

struct OursResult {
  RunResult r;
  std::uint64_t lock_calls = 0;
  std::uint64_t stored = 0;
  std::uint64_t out_of_order = 0;
};

/// One run of the pipeline (threads 2) on a fresh PostgreSQL database and a fresh Redis key
/// namespace. `rate` > 0: open-loop paced at `rate`/s; else saturated (one submitter, with
/// back-pressure). With `check_order`, compares every partition's stored seq order with the
/// submission order afterwards.
OursResult run_ours(std::vector<TradeEvent> events, double rate, bool check_order) {
  const int k = ++g_run;
  const std::string db = "tc_run_" + std::to_string(k);
  admin_exec("CREATE DATABASE " + db);
  OursResult out;
  RunResult& res = out.r;
  const std::size_t n = events.size();
  res.events = n;
  std::unordered_map<IdempotencyKey, std::size_t, IdempotencyKeyHash> arrival;
  if (check_order) {
    for (std::size_t i = 0; i < n; ++i)
      arrival.emplace(IdempotencyKey{events[i].trade_id, events[i].version}, i);
  }
  auto store = open_soci_store(pg_uri(db));
  if (!store) throw std::runtime_error("open_soci_store: " + store.error().message());
  RedisLockOptions lo;
  lo.key_prefix = "tc" + std::to_string(k) + ":";
  lo.instance_id = "bench";
  auto rlock = open_redis_lock(g_redis->uri(), lo);
  if (!rlock) throw std::runtime_error("open_redis_lock: " + rlock.error().message());
  auto counting = std::make_shared<CountingLock>(rlock.value());
  {
    Pipeline pipe(store.value(), counting, make_position_processor(), bench_options(2, 8192));
    Completions completions(n);
    const auto start = Clock::now() + std::chrono::milliseconds(rate > 0 ? 2 : 0);
    if (rate <= 0) {
      for (auto& e : events)
        pipe.async_submit(std::move(e), [&](boost::system::error_code, Outcome) {
          completions.complete(Clock::now());
        });
    } else {
      submit_paced(pipe, events, rate, start, res, completions);
    }
    finish_run(completions, pipe, res, start, std::chrono::seconds(60));
  }
  if (rate > 0) dump_latencies(res, rate);
  out.lock_calls = counting->calls.load();
  if (check_order) {
    std::map<PartitionKey, std::size_t> last;  // partition -> arrival of its last stored event
    auto sc = store.value()->scan_events([&](const StoredEvent& se) {
      ++out.stored;
      auto it = arrival.find(IdempotencyKey{se.event.trade_id, se.event.version});
      const std::size_t a = it == arrival.end() ? 0 : it->second;
      auto [pos, fresh] = last.emplace(se.event.partition, a);
      if (!fresh) {
        if (a < pos->second) ++out.out_of_order; else pos->second = a;
      }
      return true;
    });
    if (!sc) throw std::runtime_error("scan_events: " + sc.error().message());
  }
  counting.reset();
  rlock.value().reset();
  store.value().reset();  // closes the pool before the database is dropped
  admin_exec("DROP DATABASE " + db + " WITH (FORCE)");
  check(res);
  return out;
}

std::vector<TradeEvent> trace_prefix(std::size_t n, std::size_t hot_partitions) {
  const auto& t = shared_trace();
  n = std::min(n, t.size());
  std::vector<TradeEvent> v;
  v.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    v.push_back(t[i].event);
    if (hot_partitions) v.back().partition = partition_key(t[i].partition % hot_partitions);
  }
  return v;
}

double g_ours_rate = 0;

void BM_OursPgRedisThroughput(benchmark::State& state) {
  shared_trace();
  quiet_logger();
  Totals totals;
  std::uint64_t lock_calls = 0;
  double seconds = 0;
  for (auto _ : state) {
    OursResult o = run_ours(trace_prefix(pg_events(), 0), 0, false);
    if (!ran_ok(state, o.r)) return;
    state.SetIterationTime(o.r.seconds);
    seconds += o.r.seconds;
    totals.add(o.r);
    lock_calls += o.lock_calls;
  }
  report_pipeline(state, totals);
  state.counters["db_commits_per_trade"] = double(totals.commits) / double(totals.events);
  state.counters["redis_round_trips_per_trade"] = double(lock_calls) / double(totals.events);
  state.counters["redis_round_trips"] = benchmark::Counter(double(lock_calls), benchmark::Counter::kAvgIterations);
  g_ours_rate = double(totals.events) / seconds;
}

void BM_OursPgRedisLatencyHalfRate(benchmark::State& state) {
  shared_trace();
  quiet_logger();
  double saturation = g_ours_rate;
  if (saturation <= 0) {
    OursResult cal = run_ours(trace_prefix(pg_events(), 0), 0, false);
    saturation = double(cal.r.events) / cal.r.seconds;
  }
  double rate = saturation / 2;
  if (const char* env = std::getenv("TC_BENCH_RATE")) rate = std::atof(env);  // trades/s
  const std::size_t n = std::clamp<std::size_t>(std::size_t(rate * 4), 1000, 1000000);
  for (auto _ : state) {
    OursResult o = run_ours(trace_prefix(n, 0), rate, false);
    if (!ran_ok(state, o.r)) return;
    state.SetIterationTime(o.r.seconds);
    auto lat = o.r.latency_ns;
    std::sort(lat.begin(), lat.end());
    auto lag = o.r.submit_lag_ns;
    std::sort(lag.begin(), lag.end());
    auto pct_us = [](const std::vector<std::int64_t>& v, double q) {
      return double(v[std::min(v.size() - 1, std::size_t(q * double(v.size())))]) / 1000.0;
    };
    state.counters["saturation_per_s"] = saturation;
    state.counters["target_per_s"] = rate;
    state.counters["achieved_per_s"] = double(o.r.events) / o.r.seconds;
    state.counters["p50_us"] = pct_us(lat, 0.50);
    state.counters["p99_us"] = pct_us(lat, 0.99);
    state.counters["max_us"] = double(lat.back()) / 1000.0;
    state.counters["gen_lag_p99_us"] = pct_us(lag, 0.99);
    // Where the latency goes: the store's commit time and the batch sizes (pipeline metrics).
    state.counters["commit_p50_us"] = double(o.r.metrics.commit_latency_us.quantile(0.50));
    state.counters["commit_p99_us"] = double(o.r.metrics.commit_latency_us.quantile(0.99));
    state.counters["batch_p50"] = double(o.r.metrics.batch_size.quantile(0.50));
    state.counters["batch_p99"] = double(o.r.metrics.batch_size.quantile(0.99));
    state.counters["db_commits_per_trade"] = double(o.r.metrics.commits) / double(o.r.events);
    state.counters["redis_round_trips_per_trade"] = double(o.lock_calls) / double(o.r.events);
  }
}

/// Our pipeline on the 10-hot-partition stream, the same arrival order the baseline gets.
void BM_OursPgRedisHot10Order(benchmark::State& state) {
  shared_trace();
  quiet_logger();
  for (auto _ : state) {
    OursResult o = run_ours(trace_prefix(std::min<std::size_t>(pg_events(), 100000), 10), 0, true);
    if (!ran_ok(state, o.r)) return;
    state.SetIterationTime(o.r.seconds);
    state.counters["trades_per_s"] = double(o.r.events) / o.r.seconds;
    state.counters["stored_events"] = double(o.stored);
    state.counters["accepted"] = double(o.r.metrics.accepted);
    state.counters["out_of_order"] = double(o.out_of_order);
    state.counters["db_commits_per_trade"] = double(o.r.metrics.commits) / double(o.r.events);
    state.counters["redis_round_trips_per_trade"] = double(o.lock_calls) / double(o.r.events);
  }
}

// ---- the seed-like baseline ----------------------------------------------------------------

struct BaselineJob {
  std::uint64_t arrival;  // position in the dispatcher queue
  std::uint32_t partition;
  const TradeEvent* event;
};

struct BaselineResult {
  std::uint64_t committed = 0, duplicates = 0, lock_retries = 0, errors = 0;
  double seconds = 0;
  std::uint64_t inversions = 0, out_of_order = 0;
};

PGresult* exec(PGconn* c, const char* sql, std::initializer_list<std::string> params) {
  std::vector<const char*> v;
  for (auto& p : params) v.push_back(p.c_str());
  return PQexecParams(c, sql, int(v.size()), nullptr, v.data(), nullptr, nullptr, 0);
}

bool ok(PGresult* r) {
  const auto s = PQresultStatus(r);
  return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

BaselineResult run_baseline(std::size_t workers, std::size_t hot_partitions) {
  const int k = ++g_run;
  const std::string db = "tc_base_" + std::to_string(k);
  admin_exec("CREATE DATABASE " + db);
  {
    PGconn* c = PQconnectdb(pg_uri(db).c_str());
    PGresult* r = PQexec(c,
                         "CREATE TABLE b_events (trade_id text NOT NULL, version bigint NOT NULL, "
                         "partition int NOT NULL, arrival bigint NOT NULL, seq bigint NOT NULL, "
                         "side text, quantity numeric, price numeric, PRIMARY KEY (trade_id, version));"
                         "CREATE TABLE b_positions (partition int PRIMARY KEY, net numeric NOT NULL, "
                         "seq bigint NOT NULL)");
    if (!ok(r)) throw std::runtime_error(PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
  }
  const auto& t = shared_trace();
  std::mutex qm;
  std::size_t next = 0;  // the dispatcher queue: trades handed out strictly in arrival order
  std::atomic<bool> stop{false};
  std::mutex rm;
  BaselineResult res;
  std::vector<std::vector<std::pair<std::uint64_t, std::uint64_t>>> applied(
      hot_partitions ? hot_partitions : kPartitions);  // per partition: (seq, arrival)
  std::vector<std::thread> ts;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(baseline_seconds());
  for (std::size_t w = 0; w < workers; ++w) {
    ts.emplace_back([&, w] {
      PGconn* c = PQconnectdb(pg_uri(db).c_str());
      redisContext* rc = redisConnect("127.0.0.1", g_redis->port());
      if (PQstatus(c) != CONNECTION_OK || !rc || rc->err) {
        std::lock_guard g(rm);
        ++res.errors;
        return;
      }
      std::uint64_t committed = 0, dups = 0, retries = 0, errors = 0, tok = 0;
      std::vector<std::pair<std::uint32_t, std::pair<std::uint64_t, std::uint64_t>>> mine;
      while (Clock::now() < deadline) {
        BaselineJob job;
        {
          std::lock_guard g(qm);
          if (next >= t.size()) break;
          job = BaselineJob{next, std::uint32_t(hot_partitions ? t[next].partition % hot_partitions
                                                               : t[next].partition),
                            &t[next].event};
          ++next;
        }
        const std::string part = std::to_string(job.partition);
        const std::string key = "lock:" + std::to_string(k) + ":" + part;
        const std::string token = std::to_string(w) + "-" + std::to_string(++tok);
        for (;;) {
          auto* r = static_cast<redisReply*>(
              redisCommand(rc, "SET %s %s NX PX 5000", key.c_str(), token.c_str()));
          const bool got = r && r->type == REDIS_REPLY_STATUS;
          if (r) freeReplyObject(r);
          if (got) break;
          ++retries;
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        const TradeEvent& e = *job.event;
        const std::string ver = std::to_string(e.version);
        const std::string qty = e.quantity.to_string();
        const std::string px = e.price.to_string();
        const std::string sd(to_string(e.side));
        const std::string arr = std::to_string(job.arrival);
        bool good = true;
        auto step = [&](PGresult* r) {
          good = good && ok(r);
          return r;
        };
        PQclear(step(PQexec(c, "BEGIN")));
        PGresult* r = step(exec(c, "SELECT 1 FROM b_events WHERE trade_id=$1 AND version=$2",
                                {e.trade_id, ver}));
        const bool dup = good && PQntuples(r) > 0;
        PQclear(r);
        if (good && !dup) {
          r = step(exec(c, "SELECT net, seq FROM b_positions WHERE partition=$1 FOR UPDATE",
                        {part}));
          const bool have = good && PQntuples(r) > 0;
          const std::uint64_t seq = have ? std::strtoull(PQgetvalue(r, 0, 1), nullptr, 10) + 1 : 1;
          PQclear(r);
          const std::string s = std::to_string(seq);
          const std::string signed_qty = e.side == Side::Buy ? qty : "-" + qty;
          PQclear(step(exec(c,
                            "INSERT INTO b_events (trade_id, version, partition, arrival, seq, "
                            "side, quantity, price) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                            {e.trade_id, ver, part, arr, s, sd, qty, px})));
          if (have)
            PQclear(step(exec(c, "UPDATE b_positions SET net = net + $2, seq = $3 WHERE partition=$1",
                              {part, signed_qty, s})));
          else
            PQclear(step(exec(c, "INSERT INTO b_positions (partition, net, seq) VALUES ($1,$2,$3)",
                              {part, signed_qty, s})));
          if (good) mine.push_back({job.partition, {seq, job.arrival}});
        }
        if (good) {
          PQclear(step(PQexec(c, "COMMIT")));
        } else {
          PQclear(PQexec(c, "ROLLBACK"));
        }
        if (good) {
          ++committed;
          if (dup) ++dups;
        } else {
          ++errors;
          if (!mine.empty() && !dup) mine.pop_back();
        }
        auto* rr = static_cast<redisReply*>(redisCommand(
            rc,
            "EVAL %s 1 %s %s",
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
            "else return 0 end",
            key.c_str(), token.c_str()));
        if (rr) freeReplyObject(rr);
      }
      PQfinish(c);
      redisFree(rc);
      std::lock_guard g(rm);
      res.committed += committed;
      res.duplicates += dups;
      res.lock_retries += retries;
      res.errors += errors;
      for (auto& [p, sa] : mine) applied[p].push_back(sa);
    });
  }
  for (auto& th : ts) th.join();
  res.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& v : applied) {
    std::sort(v.begin(), v.end());  // commit (seq) order
    std::uint64_t maxa = 0;
    bool first = true;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!first && v[i].second < maxa) ++res.out_of_order;
      if (first || v[i].second > maxa) maxa = v[i].second;
      first = false;
    }
    // inversions: pairs applied in the opposite order of arrival (merge-sort count)
    std::vector<std::uint64_t> a;
    for (auto& x : v) a.push_back(x.second);
    std::function<std::uint64_t(std::size_t, std::size_t)> inv = [&](std::size_t lo,
                                                                     std::size_t hi) -> std::uint64_t {
      if (hi - lo < 2) return 0;
      const std::size_t mid = (lo + hi) / 2;
      std::uint64_t c = inv(lo, mid) + inv(mid, hi);
      std::vector<std::uint64_t> m;
      std::size_t i = lo, j = mid;
      while (i < mid || j < hi) {
        if (j >= hi || (i < mid && a[i] <= a[j])) m.push_back(a[i++]);
        else {
          c += mid - i;
          m.push_back(a[j++]);
        }
      }
      std::copy(m.begin(), m.end(), a.begin() + std::ptrdiff_t(lo));
      return c;
    };
    res.inversions += inv(0, a.size());
  }
  admin_exec("DROP DATABASE " + db + " WITH (FORCE)");
  return res;
}

std::map<std::pair<std::int64_t, std::int64_t>, double> g_base_rates;

void BM_SeedBaseline(benchmark::State& state) {
  shared_trace();
  const auto workers = std::size_t(state.range(0));
  const auto hot = std::size_t(state.range(1));
  for (auto _ : state) {
    BaselineResult r = run_baseline(workers, hot);
    state.SetIterationTime(r.seconds);
    state.counters["trades_per_s"] = double(r.committed) / r.seconds;
    state.counters["committed"] = double(r.committed);
    state.counters["duplicates"] = double(r.duplicates);
    state.counters["lock_retries"] = double(r.lock_retries);
    state.counters["errors"] = double(r.errors);
    state.counters["out_of_order"] = double(r.out_of_order);
    state.counters["inversions"] = double(r.inversions);
    g_base_rates[{state.range(0), state.range(1)}] = double(r.committed) / r.seconds;
    if (g_ours_rate > 0) state.counters["ours_over_this"] = g_ours_rate / (double(r.committed) / r.seconds);
  }
}

}  // namespace

BENCHMARK(BM_OursPgRedisThroughput)->UseManualTime()->Iterations(2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_OursPgRedisLatencyHalfRate)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_OursPgRedisHot10Order)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SeedBaseline)
    ->ArgNames({"workers", "hot"})
    ->Args({4, 0})
    ->Args({8, 0})
    ->Args({16, 0})
    ->Args({4, 10})
    ->Args({8, 10})
    ->Args({16, 10})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  g_pg = std::make_unique<tctest::PostgresServer>(pg_settings_from_env());
  g_redis = std::make_unique<tctest::RedisServer>();
  std::fprintf(stderr, "servers: %s %s\n", g_pg->uri().c_str(), g_redis->uri().c_str());
  try {
    benchmark::RunSpecifiedBenchmarks();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FATAL: %s\n", e.what());
  }
  benchmark::Shutdown();
  g_redis.reset();
  g_pg.reset();
  return 0;
}
