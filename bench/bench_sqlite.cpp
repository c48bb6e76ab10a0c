// The pipeline through the SQLite store (`open_soci_store("sqlite:<tmp file>")`, WAL,
// synchronous=FULL by default), 1,000 partitions, pre-parsed events. Measures sustained
// throughput (aim: >= 100,000 trades/s), commits per trade at saturation (aim: well below 0.01)
// and the submit-to-durable latency at half the measured saturation rate. Every run uses a fresh
// database file in the temp directory and deletes it (with its -wal and -shm) afterwards.
//
//   build/bin/bench_sqlite [--benchmark_filter=...]
//
// TC_BENCH_SQLITE_SYNC=NORMAL|OFF switches the synchronous pragma (for comparison only).

#include "bench_common.hpp"

#include <tradecapture/soci_store.hpp>

#include <unistd.h>

#include <filesystem>
#include <stdexcept>

namespace {

using namespace tcbench;

constexpr std::size_t kEventsPerRun = 300000;

std::filesystem::path db_path() {
  static const std::filesystem::path p =
      std::filesystem::temp_directory_path() /
      ("tc-bench-sqlite-" + std::to_string(::getpid()) + ".db");
  return p;
}

void remove_db() {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::error_code ec;
    std::filesystem::remove(db_path().string() + suffix, ec);
  }
}

const StoreFactory& sqlite_factory() {
  static const StoreFactory f{
      [] {
        remove_db();  // a fresh database for every run
        SociStoreOptions o;
        if (const char* s = std::getenv("TC_BENCH_SQLITE_SYNC")) o.sqlite_synchronous = s;
        auto r = open_soci_store("sqlite:" + db_path().string(), o);
        if (!r) throw std::runtime_error("open_soci_store: " + r.error().message());
        return r.value();
      },
      remove_db};
  return f;
}

void BM_SqliteThroughput(benchmark::State& state) {
  saturated_benchmark(state, sqlite_factory(), kEventsPerRun);
}

void BM_SqliteLatencyHalfRate(benchmark::State& state) {
  paced_benchmark(state, sqlite_factory(), kEventsPerRun, /*seconds_of_load=*/3.0,
                  /*max_events=*/400000);
}

}  // namespace

BENCHMARK(BM_SqliteThroughput)
    ->ArgNames({"threads", "max_batch", "submitters"})
    ->Args({1, 8192, 1})
    ->Args({2, 8192, 1})
    ->Args({2, 8192, 2})
    ->UseManualTime()
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_SqliteLatencyHalfRate)
    ->ArgNames({"threads", "max_batch"})
    ->Args({1, 8192})
    ->Args({2, 8192})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
