// The in-memory pipeline: memory store, local lock, reference processor, 1,000 partitions,
// pre-parsed events. Measures saturated throughput (aim: >= 2,000,000 trades/s) and the
// submit-to-durable latency of an open-loop load at half the measured saturation rate.
//
//   build/bin/bench_pipeline [--benchmark_filter=...]
//
// Throughput args: pipeline threads, max_batch, submitting threads. Latency args: pipeline
// threads, max_batch (paced at half the rate the matching throughput run measured).

#include "bench_common.hpp"

namespace {

using namespace tcbench;

constexpr std::size_t kEventsPerRun = 500000;

const StoreFactory& memory_factory() {
  static const StoreFactory f{[] { return make_memory_store(); }};
  return f;
}

void BM_MemoryThroughput(benchmark::State& state) {
  saturated_benchmark(state, memory_factory(), kEventsPerRun);
}

void BM_MemoryLatencyHalfRate(benchmark::State& state) {
  paced_benchmark(state, memory_factory(), kEventsPerRun, /*seconds_of_load=*/1.5,
                  /*max_events=*/1000000);
}

}  // namespace

BENCHMARK(BM_MemoryThroughput)
    ->ArgNames({"threads", "max_batch", "submitters"})
    ->Args({1, 8192, 1})
    ->Args({2, 8192, 1})
    ->Args({1, 1024, 1})
    ->Args({2, 1024, 1})
    ->Args({2, 8192, 2})
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_MemoryLatencyHalfRate)
    ->ArgNames({"threads", "max_batch"})
    ->Args({1, 8192})
    ->Args({2, 8192})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
