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

const StoreFactory& memory_factory() {
  static const StoreFactory f{[] { return make_memory_store(); }};
  return f;
}

[[maybe_unused]] const bool registered = register_store_benchmarks(
    {.name = "Memory",
     .factory = memory_factory,
     .events_per_run = 500000,
     .throughput_args = {{1, 8192, 1}, {2, 8192, 1}, {1, 1024, 1}, {2, 1024, 1}, {2, 8192, 2}},
     .throughput_iterations = 3,
     .seconds_of_load = 1.5,
     .max_events = 1000000});

}  // namespace

BENCHMARK_MAIN();
