// The in-memory pipeline: memory store, local lock, reference processor, 1,000 partitions,
// pre-parsed events. Measures saturated throughput (aim: >= 2,000,000 trades/s) and the
// submit-to-durable latency of an open-loop load at half the measured saturation rate.
//
//   build/bin/bench_pipeline [--benchmark_filter=...]
//
// Throughput args: pipeline threads, max_batch, submitting threads. Latency args: pipeline
// threads, max_batch (paced at half the rate the matching throughput run measured).

#include "alloc_counter.hpp"  // this program counts heap allocations (allocs_per_trade)
#include "bench_common.hpp"

#include <tradecapture/decimal.hpp>

#include <sys/mman.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>
#include <vector>

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

// The allocation count once it has not moved for 20 ms (at most 1 s): after the last completion
// the shard's thread still finishes the run that delivered it, and what it allocates there
// belongs to the events just counted. The count is the whole process's (alloc_counter.hpp:
// every thread, the submitter's and the shard's).
std::uint64_t allocations_settled() {
  std::uint64_t last = allocations_now();
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const std::uint64_t now = allocations_now();
    if (now == last) break;
    last = now;
  }
  return last;
}

// Heap allocations per event in steady state: one pipeline (1 shard, max_batch 8192) takes the
// first half of the events to warm up (pool blocks, partition states, store tables, queues
// reach their working sizes), and only the second half is counted, from its first submission
// until the pipeline has drained it and its threads are quiet. allocs_per_trade of the
// throughput benchmarks counts from a fresh pipeline and store, so it includes that growth.
// TC_BENCH_ALLOC_SITES=1 prints where the counted half's allocations come from (stderr).
void BM_MemorySteadyStateAllocs(benchmark::State& state) {
  const std::size_t n = events_cap() ? events_cap() : 200000;
  auto events = std::move(split_trace(n, 1)[0]);
  const std::size_t half = events.size() / 2;
  const char* sites_env = std::getenv("TC_BENCH_ALLOC_SITES");
  const bool sites = sites_env != nullptr && std::string(sites_env) == "1";
  for (auto _ : state) {
    auto copy = events;
    Pipeline pipe(memory_factory().open(), make_local_lock(bench_lease()),
                  make_position_processor(), bench_options(1, 8192));
    std::uint64_t counted = 0;
    for (int phase = 0; phase < 2; ++phase) {
      const std::size_t from = phase == 0 ? 0 : half, to = phase == 0 ? half : copy.size();
      Completions c(to - from);
      auto on_done = [&c](boost::system::error_code, Outcome) { c.complete(Clock::now()); };
      if (phase == 1) CALLGRIND_START_INSTRUMENTATION;  // under callgrind: the counted half only
      if (phase == 1 && sites) tcbench::detail::start_recording_sites();
      const std::uint64_t before = allocations_now();
      for (std::size_t i = from; i < to; ++i) pipe.async_submit(std::move(copy[i]), on_done);
      c.fut.wait();
      pipe.drain();
      // Settled after the warm-up too, so that its tail is not counted as the next half's.
      const std::uint64_t after = allocations_settled();
      if (phase == 1) {
        counted = after - before;
        CALLGRIND_STOP_INSTRUMENTATION;
        if (sites) tcbench::detail::print_sites();
      }
    }
    state.counters["steady_allocs_per_trade"] = double(counted) / double(copy.size() - half);
  }
}
BENCHMARK(BM_MemorySteadyStateAllocs)->Iterations(1)->Unit(benchmark::kMillisecond);

// Saturated throughput of a warm pipeline: one pipeline takes the first 500,000 events of the
// trace (op pool, queues, tables and partition states reach their working sizes, and this VM's
// first touch of those pages, ~11 us a page, is paid), then the next 500,000 are timed from
// their first submission to their last completion. BM_MemoryThroughput times a fresh pipeline,
// as a process that has just started sees it; this is what a long-running one sees. The memory
// store still grows by every event, in both. Args: pipeline threads, max_batch.
void BM_MemoryWarmThroughput(benchmark::State& state) {
  const auto threads = std::size_t(state.range(0));
  const auto max_batch = std::size_t(state.range(1));
  const std::size_t n = events_cap() ? events_cap() : 1000000;
  const std::size_t half = std::min(n, shared_trace().size()) / 2;
  quiet_logger();
  double seconds = 0, events = 0, warm_seconds = 0;
  for (auto _ : state) {
    auto copy = std::move(split_trace(2 * half, 1)[0]);
    Pipeline pipe(memory_factory().open(), make_local_lock(bench_lease()),
                  make_position_processor(), bench_options(threads, max_batch));
    for (int phase = 0; phase < 2; ++phase) {
      const std::size_t from = phase == 0 ? 0 : half, to = phase == 0 ? half : copy.size();
      Completions c(to - from);
      auto on_done = [&c](boost::system::error_code, Outcome) { c.complete(Clock::now()); };
      const auto start = Clock::now();
      for (std::size_t i = from; i < to; ++i) pipe.async_submit(std::move(copy[i]), on_done);
      RunResult r;
      r.events = to - from;
      wait_all(c.fut, c.done, pipe, r);
      if (!ran_ok(state, r)) return;
      const auto end = c.fut.get();
      pipe.drain();
      if (phase == 0) warm_seconds += std::chrono::duration<double>(end - start).count();
      if (phase == 1) {
        seconds += std::chrono::duration<double>(end - start).count();
        events += double(to - from);
        state.SetIterationTime(std::chrono::duration<double>(end - start).count());
      }
    }
  }
  state.counters["trades_per_s"] = events / seconds;
  state.counters["warm_up_trades_per_s"] = events / warm_seconds;  // the first half, fresh
}
BENCHMARK(BM_MemoryWarmThroughput)
    ->ArgNames({"threads", "max_batch"})
    ->Args({1, 8192})
    ->Args({2, 8192})
    ->Args({2, 1024})
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// The notional of one trade, quantity (6 fractional digits at most) times price (8 at most):
// the exact multiply the reference processor does for every NEW and AMEND (and its reversal).
void BM_NotionalMultiply(benchmark::State& state) {
  std::vector<std::pair<Decimal, Decimal>> pairs;
  for (int i = 0; i < 1024; ++i) {
    pairs.emplace_back(Decimal::parse(std::to_string(1 + i * 37 % 5000) + ".5").value(),
                       Decimal::parse(std::to_string(10 + i % 300) + ".25").value());
  }
  std::size_t i = 0;
  for (auto _ : state) {
    const auto& [q, p] = pairs[i++ & 1023];
    benchmark::DoNotOptimize(checked_mul(q, p));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NotionalMultiply);

// What a page of new memory costs the thread that first writes to it (the machine, not the
// library): a fresh anonymous mapping of 16 MiB written one byte per 4 KiB page. On a virtual
// machine whose memory the host backs lazily this is ~10-15 us a page instead of ~0.2 us, and
// it is what stalls a pipeline whose in-memory store grows (BENCHMARKS.md, issue #12).
void BM_PageFirstTouch(benchmark::State& state) {
  constexpr std::size_t bytes = std::size_t(16) << 20, page = 4096;
  double pages = 0, seconds = 0;
  for (auto _ : state) {
    const auto start = Clock::now();
    void* m = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      state.SkipWithError("mmap failed");
      return;
    }
    auto* p = static_cast<volatile char*>(m);
    for (std::size_t i = 0; i < bytes; i += page) p[i] = 1;
    seconds += std::chrono::duration<double>(Clock::now() - start).count();
    ::munmap(m, bytes);
    pages += double(bytes / page);
  }
  state.counters["us_per_page"] = seconds * 1e6 / pages;
}
BENCHMARK(BM_PageFirstTouch)->Iterations(10)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
