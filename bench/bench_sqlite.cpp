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

#include <filesystem>
#include <stdexcept>

namespace {

using namespace tcbench;

std::filesystem::path db_path() {
  static const std::filesystem::path p = temp_db_path("tc-bench-sqlite");
  return p;
}

void remove_db() { remove_sqlite_files(db_path()); }

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

[[maybe_unused]] const bool registered =
    register_store_benchmarks({.name = "Sqlite",
                               .factory = sqlite_factory,
                               .events_per_run = 300000,
                               .throughput_args = {{1, 8192, 1}, {2, 8192, 1}, {2, 8192, 2}},
                               .throughput_iterations = 2,
                               .seconds_of_load = 3.0,
                               .max_events = 400000});

}  // namespace

BENCHMARK_MAIN();
