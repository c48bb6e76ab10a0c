// Kafka ingress (issue #5): a KafkaSource consuming the benchmark trace from librdkafka's mock
// cluster (in this process, 1 broker, 24 partitions) into the memory, SQLite and PostgreSQL
// stores, against the same pipeline fed directly (bench_common's saturated run).
//
//   build/bin/bench_kafka [--benchmark_filter=...]
//
// BM_KafkaThroughput/<store>: the trace is produced before the clock starts (keyed per the
//   contract); the clock runs from the first reported outcome to the last (the group join,
//   3 s on the mock cluster, is not timed). Counters: trades_per_s (Kafka), direct_trades_per_s
//   (the same events, store and pipeline options through Pipeline::async_submit),
//   kafka_vs_direct.
// BM_KafkaLag/<store>: an open-loop producer at a fixed rate (half the Kafka throughput just
//   measured, or TC_BENCH_RATE) while the source consumes; lag = outcome reported (durable)
//   minus the message's CreateTime, in milliseconds (Kafka timestamps have ms resolution);
//   direct_p50_ms/direct_p99_ms: the same pipeline fed directly at the same rate (bench_common's
//   paced run: scheduled submit time to durable completion).
//
// Stores: 0 memory, 1 SQLite (a file in /tmp, synchronous=FULL), 2 PostgreSQL (a throwaway
// server started here, as in bench_pg_redis). TC_KAFKA_EVENTS sets the events per run.

#include "bench_common.hpp"
#include "../tests/support/servers.hpp"

#include <tradecapture/event_codec.hpp>
#include <tradecapture/kafka_source.hpp>
#include <tradecapture/soci_store.hpp>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <libpq-fe.h>

#include <unistd.h>

#include <filesystem>
#include <stdexcept>

namespace {

using namespace tcbench;

std::size_t kafka_events() {
  const char* s = std::getenv("TC_KAFKA_EVENTS");
  return s ? std::size_t(std::strtoull(s, nullptr, 10)) : 200000;
}

// ---- stores ---------------------------------------------------------------------------------

std::filesystem::path db_path() {
  static const std::filesystem::path p = temp_db_path("tc-bench-kafka");
  return p;
}

void remove_db() { remove_sqlite_files(db_path()); }

std::unique_ptr<tctest::PostgresServer> g_pg;
int g_pg_db = 0;

void pg_exec(const std::string& sql) {
  const std::string uri =
      "postgresql://postgres@127.0.0.1:" + std::to_string(g_pg->port()) + "/postgres";
  PGconn* c = PQconnectdb(uri.c_str());
  if (PQstatus(c) != CONNECTION_OK) throw std::runtime_error(PQerrorMessage(c));
  PGresult* r = PQexec(c, sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  std::string err = ok ? "" : PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(c);
  if (!ok) throw std::runtime_error(sql + ": " + err);
}

const char* store_name(std::int64_t kind) {
  return kind == 0 ? "memory" : kind == 1 ? "sqlite" : "postgresql";
}

/// A fresh, empty store of `kind` for every call.
StoreFactory store_factory(std::int64_t kind) {
  if (kind == 0) return StoreFactory{[] { return make_memory_store(); }};
  if (kind == 1) {
    return StoreFactory{[] {
                          remove_db();
                          auto r = open_soci_store("sqlite:" + db_path().string());
                          if (!r) throw std::runtime_error("sqlite: " + r.error().message());
                          return r.value();
                        },
                        remove_db};
  }
  return StoreFactory{[] {
    if (!g_pg) g_pg = std::make_unique<tctest::PostgresServer>();
    const std::string db = "tc_kafka_" + std::to_string(++g_pg_db);
    pg_exec("CREATE DATABASE " + db);
    auto r = open_soci_store("postgresql://postgres@127.0.0.1:" + std::to_string(g_pg->port()) +
                             "/" + db);
    if (!r) throw std::runtime_error("postgresql: " + r.error().message());
    return r.value();
  }};
}

// ---- Kafka ----------------------------------------------------------------------------------

// 24 partitions: the mock broker keeps at most 5 MB per partition (older messages are deleted,
// like retention), and 200,000 events are ~36 MB.
constexpr int kPartitions = 24;

class Cluster {
 public:
  Cluster() {
    char err[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "2", err, sizeof err);
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    mc_ = rd_kafka_mock_cluster_new(rk_, 1);
    if (mc_ == nullptr) throw std::runtime_error("no mock cluster");
    bootstraps_ = rd_kafka_mock_cluster_bootstraps(mc_);
    rd_kafka_mock_topic_create(mc_, "trades", kPartitions, 1);
  }
  ~Cluster() {
    rd_kafka_mock_cluster_destroy(mc_);
    rd_kafka_destroy(rk_);
  }
  const std::string& bootstraps() const { return bootstraps_; }

 private:
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_mock_cluster_t* mc_ = nullptr;
  std::string bootstraps_;
};

using tctest::event_json;

/// A producer of trace events; `rate` > 0 paces them open-loop.
class Producer {
 public:
  explicit Producer(const std::string& brokers) {
    char err[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err);
    rd_kafka_conf_set(conf, "linger.ms", "2", err, sizeof err);
    // In order and exactly once per partition, whatever the broker does (retries never reorder).
    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err);
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
      if (m->err) {
        std::fprintf(stderr, "bench producer: delivery failed: %s\n", rd_kafka_err2str(m->err));
        std::_Exit(3);
      }
    });
    rd_kafka_conf_set(conf, "queue.buffering.max.messages", "2000000", err, sizeof err);
    rd_kafka_conf_set(conf, "log_level", "2", err, sizeof err);
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (rk_ == nullptr) throw std::runtime_error(err);
  }
  ~Producer() { rd_kafka_destroy(rk_); }

  /// Produces trace events [from, to).
  void produce(std::size_t from, std::size_t to, double rate) {
    const auto& trace = shared_trace();
    const auto start = Clock::now();
    for (std::size_t i = from; i < to && i < trace.size(); ++i) {
      if (rate > 0) {
        const auto due =
            start + std::chrono::nanoseconds(std::int64_t(double(i - from) * 1e9 / rate));
        if (Clock::now() < due) std::this_thread::sleep_until(due);
      }
      const TradeEvent& e = trace[i].event;
      const std::string key = kafka_message_key(e.partition);
      const std::string value = event_json(e);
      for (;;) {
        auto err = rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC("trades"),
                                     RD_KAFKA_V_KEY(key.data(), key.size()),
                                     RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
          rd_kafka_poll(rk_, 5);
          continue;
        }
        if (err) throw std::runtime_error(rd_kafka_err2str(err));
        break;
      }
      rd_kafka_poll(rk_, 0);
    }
    if (rd_kafka_flush(rk_, 120000)) throw std::runtime_error("flush timed out");
  }

 private:
  rd_kafka_t* rk_ = nullptr;
};

struct KafkaRun {
  std::size_t events = 0;
  double seconds = 0;  // first outcome to last
  std::vector<std::int64_t> lag_ms;
  KafkaSourceMetrics metrics;
  PipelineMetrics pipeline;
};

/// Consumes `n` trace events into a fresh store; with `rate` > 0 they are produced at that rate
/// while the source runs (after a warm-up of `kWarmUp` events, consumed before the paced load
/// starts and left out of the lags), else all of them before it starts.
constexpr std::size_t kWarmUp = 2000;

KafkaRun run_kafka(const StoreFactory& sf, std::size_t n, double rate) {
  Cluster cluster;
  Producer producer(cluster.bootstraps());
  if (rate <= 0) producer.produce(0, n, 0);
  KafkaRun run;
  run.events = n;
  if (rate > 0) run.lag_ms.reserve(n);
  std::mutex mu;
  std::atomic<std::size_t> done{0};
  Clock::time_point first{}, last{};
  KafkaSourceOptions o;
  o.brokers = cluster.bootstraps();
  o.topics = {"trades"};
  o.group = "bench";
  o.consumer_config = {{"log_level", "2"}, {"fetch.wait.max.ms", "5"}};
  o.progress_interval = std::chrono::milliseconds(0);
  o.logger = quiet_logger();
  o.on_outcome = [&](const KafkaOutcome& k) {
    const auto now = Clock::now();
    if (rate > 0 && k.timestamp_ms >= 0 && done.load() >= kWarmUp) {
      const auto wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
      std::lock_guard lk(mu);
      run.lag_ms.push_back(wall - k.timestamp_ms);
    }
    const std::size_t d = done.fetch_add(1) + 1;
    if (d == 1) first = now;
    if (d == n) last = now;
  };
  // The host's pipeline, as bench_common's direct runs build it; the source feeds it.
  auto store = sf.open();
  Pipeline pipeline(store, make_local_lock(), make_position_processor(), bench_options(2, 8192));
  KafkaSource source(pipeline, store, o);
  std::thread t([&] {
    auto r = source.run();
    if (!r) std::fprintf(stderr, "kafka source: %s\n", source.last_error().c_str());
  });
  if (rate > 0) {
    producer.produce(0, kWarmUp, 0);
    while (done.load() < kWarmUp) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    producer.produce(kWarmUp, n, rate);
  }
  std::size_t seen = 0;
  auto progress = Clock::now();
  while (done.load() < n) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (done.load() != seen) {
      seen = done.load();
      progress = Clock::now();
    } else if (Clock::now() - progress > std::chrono::seconds(60)) {
      const auto m = source.metrics();
      const auto pm = pipeline.metrics();
      std::fprintf(stderr,
                   "kafka run stalled at %zu of %zu: %llu messages received, %llu in flight, "
                   "lag %llu, %llu partitions; pipeline in flight %llu, queue %llu\n",
                   seen, n, (unsigned long long)m.messages, (unsigned long long)m.in_flight,
                   (unsigned long long)m.lag, (unsigned long long)m.partitions,
                   (unsigned long long)pm.in_flight, (unsigned long long)pm.queue_depth);
      std::_Exit(3);
    }
  }
  run.pipeline = pipeline.metrics();
  source.stop();
  t.join();
  pipeline.stop();
  run.metrics = source.metrics();
  run.seconds = std::chrono::duration<double>(last - first).count();
  sf.cleanup();
  return run;
}

std::map<std::int64_t, double>& kafka_rates() {
  static std::map<std::int64_t, double> m;
  return m;
}

double pct(std::vector<std::int64_t> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return double(v[std::min(v.size() - 1, std::size_t(q * double(v.size())))]);
}

/// The store of the benchmark's arg "store", labelled; the trace and the logger are built first.
StoreFactory prepare(benchmark::State& state) {
  state.SetLabel(store_name(state.range(0)));
  quiet_logger();
  shared_trace();
  return store_factory(state.range(0));
}

void BM_KafkaThroughput(benchmark::State& state) {
  const std::int64_t kind = state.range(0);
  const StoreFactory sf = prepare(state);
  const std::size_t n = kafka_events();
  double kafka_s = 0, direct_s = 0;
  std::size_t events = 0;
  KafkaRun last;
  for (auto _ : state) {
    last = run_kafka(sf, n, 0);
    if (last.metrics.failed != 0) {
      state.SkipWithError("events failed");
      return;
    }
    RunResult direct = run_saturated(sf, 2, 8192, n, 1);
    if (!ran_ok(state, direct)) return;
    state.SetIterationTime(last.seconds);
    kafka_s += last.seconds;
    direct_s += direct.seconds;
    events += n;
  }
  using benchmark::Counter;
  state.counters["trades_per_s"] = Counter(double(events) / kafka_s);
  state.counters["direct_trades_per_s"] = Counter(double(events) / direct_s);
  state.counters["kafka_vs_direct"] = direct_s / kafka_s;
  state.counters["commits_per_trade"] =
      last.pipeline.accepted ? double(last.pipeline.commits) / double(events / state.iterations())
                             : 0.0;
  state.counters["offset_commits"] = double(last.metrics.offset_commits);
  kafka_rates()[kind] = double(events) / kafka_s;
}

void BM_KafkaLag(benchmark::State& state) {
  const std::int64_t kind = state.range(0);
  const StoreFactory sf = prepare(state);
  double rate = 0;
  if (const char* s = std::getenv("TC_BENCH_RATE")) rate = std::atof(s);
  if (rate <= 0 && kafka_rates().count(kind)) rate = kafka_rates()[kind] / 2;
  if (rate <= 0) rate = 10000;
  // About 5 s of paced load after the warm-up.
  const std::size_t n = kWarmUp + std::min<std::size_t>(kafka_events(), std::size_t(rate * 5));
  std::vector<std::int64_t> lags, direct_us;
  for (auto _ : state) {
    KafkaRun r = run_kafka(sf, n, rate);
    state.SetIterationTime(double(n - kWarmUp) / rate);
    lags.insert(lags.end(), r.lag_ms.begin(), r.lag_ms.end());
    // The same pipeline fed directly at the same rate (submit-to-durable, microseconds).
    RunResult d = run_paced(sf, 2, 8192, n - kWarmUp, rate);
    for (auto ns : d.latency_ns) direct_us.push_back(ns / 1000);
  }
  if (const char* dump = std::getenv("TC_KAFKA_LAG_DUMP")) {  // arrival-ordered lags, for plots
    if (FILE* f = std::fopen(dump, "w")) {
      for (auto l : lags) std::fprintf(f, "%lld\n", static_cast<long long>(l));
      std::fclose(f);
    }
  }
  state.counters["rate_per_s"] = rate;
  state.counters["lag_p50_ms"] = pct(lags, 0.50);
  state.counters["lag_p99_ms"] = pct(lags, 0.99);
  state.counters["lag_p999_ms"] = pct(lags, 0.999);
  state.counters["lag_max_ms"] = lags.empty() ? 0.0 : double(*std::max_element(lags.begin(), lags.end()));
  state.counters["direct_p50_ms"] = pct(direct_us, 0.50) / 1000.0;
  state.counters["direct_p99_ms"] = pct(direct_us, 0.99) / 1000.0;
}

/// One run per store (arg "store": 0, 1, 2), timed by the benchmark itself.
void per_store(benchmark::internal::Benchmark* b) {
  b->ArgName("store")->Arg(0)->Arg(1)->Arg(2)->UseManualTime()->Iterations(1)->Unit(
      benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_KafkaThroughput)->Apply(per_store);
BENCHMARK(BM_KafkaLag)->Apply(per_store);

BENCHMARK_MAIN();
