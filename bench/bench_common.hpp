#pragma once
// Shared by the benchmark programs: a realistic pre-parsed trade stream, a saturating run, an
// open-loop paced run and the counters they report. Everything here is built before the clock
// starts; only submission and completion are timed.

#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <benchmark/benchmark.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>  // no-ops unless run under valgrind --tool=callgrind
#else
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <sstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "support/trace.hpp"

namespace tcbench {

using namespace tradecapture;
using Clock = std::chrono::steady_clock;

inline constexpr std::size_t kPartitions = 1000;

/// One pre-parsed event and the index of its partition (for splitting among submitters).
using TraceEvent = tctest::TraceEvent;

/// The partition key of index `i` (0 <= i < 1000): 100 accounts x 2 books x 5 securities.
inline PartitionKey partition_key(std::size_t i) { return tctest::trace_partition_key(i); }

/// A realistic stream over 1,000 partitions (tests/support/trace.hpp, `realistic_mix`): mostly
/// NEW (~83%), some AMEND (~12%) and CANCEL (~4.5%) of live trades, a few exact resends of an
/// earlier event (DUPLICATE, ~0.5%; some still in flight when resent, so the pipeline's key gate
/// is exercised). Partitions are mildly skewed (weight 1/(rank+10)), so a few are hot.
/// Quantities are mostly round lots; prices have up to 4 decimals. Deterministic.
inline std::vector<TraceEvent> make_trace(std::size_t n, std::uint64_t seed = 20240601) {
  tctest::TraceOptions o;
  o.seed = seed;
  o.events = n;
  o.partitions = kPartitions;
  o.skewed = true;
  o.mix = tctest::realistic_mix();
  return tctest::make_trace(o);
}

/// TC_BENCH_EVENTS, when set, caps the events of every run and the trace (for profiling under
/// callgrind, e.g. TC_BENCH_EVENTS=50000); 0 when unset.
inline std::size_t events_cap() {
  const char* s = std::getenv("TC_BENCH_EVENTS");
  return s ? std::size_t(std::strtoull(s, nullptr, 10)) : 0;
}

/// The largest trace any benchmark uses, built once per process; runs take a prefix.
inline const std::vector<TraceEvent>& shared_trace() {
  static const std::vector<TraceEvent> t =
      make_trace(events_cap() ? std::min<std::size_t>(events_cap(), 1000000) : 1000000);
  return t;
}

/// A logger that keeps the pipeline's info lines out of the benchmark table (warnings stay).
inline std::shared_ptr<spdlog::logger> quiet_logger() {
  static auto log = [] {
    auto l = std::make_shared<spdlog::logger>(
        "bench", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    l->set_level(spdlog::level::warn);
    spdlog::set_level(spdlog::level::warn);  // the stores log through the default logger
    return l;
  }();
  return log;
}

/// Makes a fresh store for one run, and cleans it up afterwards.
struct StoreFactory {
  std::function<std::shared_ptr<TradeStore>()> open;
  std::function<void()> cleanup = [] {};
};

/// A SQLite database file of this process in the temp directory: `<stem>-<pid>.db`.
inline std::filesystem::path temp_db_path(const std::string& stem) {
  return std::filesystem::temp_directory_path() / (stem + "-" + std::to_string(::getpid()) + ".db");
}

/// Removes a SQLite database file with its -wal, -shm and -journal files.
inline void remove_sqlite_files(const std::filesystem::path& db) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::error_code ec;
    std::filesystem::remove(db.string() + suffix, ec);
  }
}

/// What one run measured.
/// The process's heap allocation count when the program counts them (alloc_counter.hpp), else
/// null.
inline std::atomic<std::uint64_t>*& allocation_counter() {
  static std::atomic<std::uint64_t>* counter = nullptr;
  return counter;
}

/// The allocations so far (0 when the program does not count them).
inline std::uint64_t allocations_now() {
  auto* c = allocation_counter();
  return c ? c->load(std::memory_order_relaxed) : 0;
}

struct RunResult {
  std::size_t events = 0;
  std::uint64_t allocations = 0;  ///< heap allocations from the first submission to the last
                                  ///< completion (alloc_counter.hpp; 0 when not counted)
  double seconds = 0;  ///< from the first submission to the last completion
  PipelineMetrics metrics;
  std::vector<std::int64_t> latency_ns;     ///< paced runs only: scheduled time to completion
  std::vector<std::int64_t> submit_lag_ns;  ///< paced runs only: scheduled time to submission
  bool ok = true;
  std::string error;
};

/// TC_PG_SETTINGS="name=value,name=value": extra settings for a benchmark's throwaway
/// PostgreSQL server (experiments such as plan_cache_mode=force_generic_plan), one per entry.
inline std::vector<std::string> pg_settings_from_env() {
  std::vector<std::string> settings;
  if (const char* extra = std::getenv("TC_PG_SETTINGS")) {
    std::stringstream in(extra);
    for (std::string kv; std::getline(in, kv, ',');)
      if (!kv.empty()) settings.push_back(kv);
  }
  return settings;
}

/// TC_BENCH_LEASE_MS, when set, is the lease length of the in-process lock (default 30 s). Under
/// callgrind a batch of thousands of events can outlast 30 s, and the lost leases would add
/// claims and reloads to the profile: profile with e.g. TC_BENCH_LEASE_MS=3600000.
inline std::chrono::milliseconds bench_lease() {
  const char* s = std::getenv("TC_BENCH_LEASE_MS");
  return std::chrono::milliseconds(s ? std::strtoll(s, nullptr, 10) : 30000);
}

/// TC_BENCH_OVERLAP=1 turns PipelineOptions::overlap_commits on (0: off, the default).
inline PipelineOptions bench_options(std::size_t threads, std::size_t max_batch) {
  PipelineOptions o;
  o.threads = threads;
  o.max_batch = max_batch;
  o.logger = quiet_logger();
  if (const char* e = std::getenv("TC_BENCH_OVERLAP")) o.overlap_commits = std::atoi(e) != 0;
  return o;
}

/// Copies the first `n` events, split among `submitters` by partition (so each partition keeps
/// its order: all its events come from one thread).
inline std::vector<std::vector<TradeEvent>> split_trace(std::size_t n, std::size_t submitters) {
  const auto& t = shared_trace();
  n = std::min(n, t.size());
  std::vector<std::vector<TradeEvent>> parts(submitters);
  for (auto& p : parts) p.reserve(n / submitters + 1);
  for (std::size_t i = 0; i < n; ++i) parts[t[i].partition % submitters].push_back(t[i].event);
  return parts;
}

/// 20 under valgrind (a batch of thousands of events there can take longer than `stall`, more so
/// on a busy machine), else 1.
inline int stall_factor() {
#ifdef RUNNING_ON_VALGRIND
  return RUNNING_ON_VALGRIND ? 20 : 1;
#else
  return 1;
#endif
}

/// Waits for the last completion; when nothing completes for `stall` the pipeline is stuck: the
/// run fails with its counters instead of hanging the benchmark.
inline void wait_all(std::future<Clock::time_point>& fut, const std::atomic<std::size_t>& done,
                     Pipeline& pipe, RunResult& res,
                     std::chrono::seconds stall = std::chrono::seconds(30)) {
  std::size_t last = done.load();
  auto last_progress = Clock::now();
  while (fut.wait_for(std::chrono::milliseconds(200)) != std::future_status::ready) {
    const std::size_t now_done = done.load();
    if (now_done != last) {
      last = now_done;
      last_progress = Clock::now();
    } else if (Clock::now() - last_progress > stall * stall_factor()) {
      const auto m = pipe.metrics();
      res.ok = false;
      res.error = "stalled: " + std::to_string(now_done) + " of " + std::to_string(res.events) +
                  " completed; in_flight " + std::to_string(m.in_flight) + ", queue_depth " +
                  std::to_string(m.queue_depth) + ", accepted " + std::to_string(m.accepted) +
                  ", duplicate " + std::to_string(m.duplicate) + ", stale " +
                  std::to_string(m.stale) + ", rejected " + std::to_string(m.rejected) +
                  ", failed " + std::to_string(m.failed) + ", batches " +
                  std::to_string(m.batches);
      std::fprintf(stderr, "%s\n", res.error.c_str());
      std::fflush(stderr);
      std::_Exit(3);  // the pipeline cannot be stopped cleanly with events stuck in it
    }
  }
}

/// Counts the completions of one run of `total` events; the future is set by the last one.
struct Completions {
  explicit Completions(std::size_t n) : total(n) {}
  const std::size_t total;
  std::atomic<std::size_t> done{0};
  std::promise<Clock::time_point> all_done;
  std::future<Clock::time_point> fut = all_done.get_future();
  /// Called by every completion, at `now`.
  void complete(Clock::time_point now) {
    if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == total) all_done.set_value(now);
  }
};

/// Waits for the last completion (wait_all), then records the run's time since `start` and the
/// pipeline's counters.
inline void finish_run(Completions& c, Pipeline& pipe, RunResult& res, Clock::time_point start,
                       std::chrono::seconds stall = std::chrono::seconds(30)) {
  wait_all(c.fut, c.done, pipe, res, stall);
  const auto end = c.fut.get();
  res.allocations = allocations_now() - res.allocations;  // run_* stored the count at start
  CALLGRIND_STOP_INSTRUMENTATION;  // profile only submission and processing
  res.seconds = std::chrono::duration<double>(end - start).count();
  pipe.drain();
  res.metrics = pipe.metrics();
}

/// Open-loop submission: event i is due at start + i/rate on the steady clock and is submitted as
/// soon as it is due (never earlier); its latency runs from that scheduled time (not from when
/// the submitter got round to it, so a stalled submitter shows up as latency) to its completion
/// callback, which fires once the outcome is durable. Fills res.latency_ns and res.submit_lag_ns.
inline void submit_paced(Pipeline& pipe, std::vector<TradeEvent>& events, double rate,
                         Clock::time_point start, RunResult& res, Completions& c) {
  const std::size_t n = events.size();
  res.latency_ns.assign(n, -1);
  res.submit_lag_ns.assign(n, 0);
  auto* lat = res.latency_ns.data();
  auto* lag = res.submit_lag_ns.data();
  const double interval_ns = 1e9 / rate;
#ifdef __linux__
  ::prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);  // 1 us instead of 50 us of sleep overshoot
#endif
  for (std::size_t i = 0; i < n; ++i) {
    const auto due = start + std::chrono::nanoseconds(std::int64_t(double(i) * interval_ns));
    // Sleep (never spin: on a 2-core machine a spinning generator takes a core from the
    // pipeline) until the event is due; whatever fell due meanwhile goes out at once. The
    // generator's own lateness is part of the measured latency and is reported separately.
    if (Clock::now() < due) std::this_thread::sleep_until(due);
    lag[i] = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - due).count();
    pipe.async_submit(std::move(events[i]), [due, i, lat, &c](boost::system::error_code, Outcome) {
      const auto now = Clock::now();
      lat[i] = std::chrono::duration_cast<std::chrono::nanoseconds>(now - due).count();
      c.complete(now);
    });
  }
}

inline void check(RunResult& r) {
  if (r.metrics.failed != 0) {
    r.ok = false;
    r.error = std::to_string(r.metrics.failed) + " events failed (no outcome)";
  }
}

/// Submits `n` events as fast as the pipeline takes them (back-pressure at max_in_flight), from
/// `submitters` threads, with callbacks; the clock runs from the first submission to the last
/// completion callback.
inline RunResult run_saturated(const StoreFactory& sf, std::size_t threads, std::size_t max_batch,
                               std::size_t n, std::size_t submitters) {
  if (events_cap()) n = std::min(n, events_cap());
  auto parts = split_trace(n, submitters);
  std::size_t total = 0;
  for (auto& p : parts) total += p.size();
  RunResult res;
  res.events = total;
  {
    Pipeline pipe(sf.open(), make_local_lock(bench_lease()), make_position_processor(),
                  bench_options(threads, max_batch));
    Completions completions(total);
    auto on_done = [&](boost::system::error_code, Outcome) { completions.complete(Clock::now()); };
    CALLGRIND_START_INSTRUMENTATION;  // profile only submission and processing
    res.allocations = allocations_now();
    const auto start = Clock::now();
    if (submitters == 1) {
      for (auto& e : parts[0]) pipe.async_submit(std::move(e), on_done);
    } else {
      std::vector<std::thread> ts;
      for (auto& part : parts)
        ts.emplace_back([&pipe, &part, &on_done] {
          for (auto& e : part) pipe.async_submit(std::move(e), on_done);
        });
      for (auto& t : ts) t.join();
    }
    finish_run(completions, pipe, res, start);
  }
  sf.cleanup();
  check(res);
  return res;
}

/// TC_BENCH_LATENCY_DUMP=FILE: a paced run writes one line per event to FILE ("due_us latency_us
/// lag_us": its scheduled time from the start, its latency, the submitter's lateness), to see
/// when the slow events were due (stalls show up as runs of them). Each run overwrites FILE.
inline void dump_latencies(const RunResult& r, double rate) {
  const char* path = std::getenv("TC_BENCH_LATENCY_DUMP");
  if (path == nullptr || r.latency_ns.empty() || rate <= 0) return;
  std::FILE* f = std::fopen(path, "w");
  if (f == nullptr) return;
  const double interval_us = 1e6 / rate;
  for (std::size_t i = 0; i < r.latency_ns.size(); ++i)
    std::fprintf(f, "%.0f %.1f %.1f\n", double(i) * interval_us, double(r.latency_ns[i]) / 1000.0,
                 double(r.submit_lag_ns[i]) / 1000.0);
  std::fclose(f);
}

/// Open-loop run of the first `n` events at `rate` per second (submit_paced).
inline RunResult run_paced(const StoreFactory& sf, std::size_t threads, std::size_t max_batch,
                           std::size_t n, double rate) {
  auto events = std::move(split_trace(n, 1)[0]);
  RunResult res;
  res.events = events.size();
  {
    Pipeline pipe(sf.open(), make_local_lock(bench_lease()), make_position_processor(),
                  bench_options(threads, max_batch));
    Completions completions(events.size());
    const auto start = Clock::now() + std::chrono::milliseconds(2);
    res.allocations = allocations_now();
    submit_paced(pipe, events, rate, start, res, completions);
    finish_run(completions, pipe, res, start);
  }
  sf.cleanup();
  check(res);
  dump_latencies(res, rate);
  return res;
}

/// Saturation rates measured by the throughput benchmarks, by (threads, max_batch), so that the
/// latency benchmarks of the same program pace at half of what was actually measured.
inline std::map<std::pair<std::int64_t, std::int64_t>, double>& saturation_rates() {
  static std::map<std::pair<std::int64_t, std::int64_t>, double> m;
  return m;
}

/// True when `r` succeeded; otherwise the benchmark is skipped with the run's error.
inline bool ran_ok(benchmark::State& state, const RunResult& r) {
  if (!r.ok) state.SkipWithError(r.error.c_str());
  return r.ok;
}

/// The pipeline's counters summed over the runs of one benchmark.
struct Totals {
  std::uint64_t events = 0, batches = 0, commits = 0, duplicates = 0, rejected = 0;
  std::uint64_t commit_us_sum = 0, commit_us_count = 0, allocations = 0;
  void add(const RunResult& r) {
    events += r.events;
    allocations += r.allocations;
    duplicates += r.metrics.duplicate;
    rejected += r.metrics.rejected + r.metrics.stale;
    batches += r.metrics.batches;
    commits += r.metrics.commits;
    commit_us_sum += r.metrics.commit_latency_us.sum;
    commit_us_count += r.metrics.commit_latency_us.count;
  }
};

/// Reports the pipeline's counters of all runs of one benchmark. With kIsRate, trades_per_s is
/// the events of all iterations over their summed manual time (first submit to last completion).
inline void report_pipeline(benchmark::State& state, const Totals& t) {
  using benchmark::Counter;
  state.counters["trades_per_s"] = Counter(double(t.events), Counter::kIsRate);
  state.counters["batches"] = Counter(double(t.batches), Counter::kAvgIterations);
  state.counters["commits"] = Counter(double(t.commits), Counter::kAvgIterations);
  // Outcome mix per run: resends come back DUPLICATE; the trace has no other non-ACCEPTED event.
  state.counters["duplicates"] = Counter(double(t.duplicates), Counter::kAvgIterations);
  state.counters["not_accepted"] = Counter(double(t.rejected), Counter::kAvgIterations);
  state.counters["trades_per_batch"] = t.batches ? double(t.events) / double(t.batches) : 0.0;
  state.counters["commits_per_trade"] = t.events ? double(t.commits) / double(t.events) : 0.0;
  state.counters["commit_ms_mean"] =
      t.commit_us_count ? double(t.commit_us_sum) / double(t.commit_us_count) / 1000.0 : 0.0;
  // Heap allocations per event, whole process (aim: 0 in steady state); only where counted.
  if (allocation_counter() != nullptr && t.events != 0)
    state.counters["allocs_per_trade"] = double(t.allocations) / double(t.events);
}

/// The throughput benchmark body: args (pipeline threads, max_batch, submitting threads).
inline void saturated_benchmark(benchmark::State& state, const StoreFactory& sf,
                                std::size_t events_per_run) {
  const auto threads = std::size_t(state.range(0));
  const auto max_batch = std::size_t(state.range(1));
  const auto submitters = std::size_t(state.range(2));
  shared_trace();  // built before any timing
  quiet_logger();
  Totals totals;
  double seconds = 0;
  for (auto _ : state) {
    RunResult r = run_saturated(sf, threads, max_batch, events_per_run, submitters);
    if (!ran_ok(state, r)) return;
    state.SetIterationTime(r.seconds);
    seconds += r.seconds;
    totals.add(r);
  }
  report_pipeline(state, totals);
  if (submitters == 1 && seconds > 0)
    saturation_rates()[{state.range(0), state.range(1)}] = double(totals.events) / seconds;
}

/// The latency benchmark body: args (pipeline threads, max_batch). Paces at half the saturation
/// rate that the throughput benchmark measured for the same configuration (one submitter); when
/// that did not run (filtered out), measures it first with `calibrate_events`. The environment
/// variable TC_BENCH_RATE (trades/s) overrides the rate.
inline void paced_benchmark(benchmark::State& state, const StoreFactory& sf,
                            std::size_t calibrate_events, double seconds_of_load,
                            std::size_t max_events) {
  const auto threads = std::size_t(state.range(0));
  const auto max_batch = std::size_t(state.range(1));
  shared_trace();
  quiet_logger();
  double saturation = 0;
  if (auto it = saturation_rates().find({state.range(0), state.range(1)});
      it != saturation_rates().end()) {
    saturation = it->second;
  } else {
    RunResult cal = run_saturated(sf, threads, max_batch, calibrate_events, 1);
    if (!ran_ok(state, cal)) return;
    saturation = double(cal.events) / cal.seconds;
  }
  double rate = saturation / 2;
  if (const char* env = std::getenv("TC_BENCH_RATE")) rate = std::atof(env);
  const std::size_t n =
      std::clamp<std::size_t>(std::size_t(rate * seconds_of_load), 1000, max_events);
  for (auto _ : state) {
    RunResult r = run_paced(sf, threads, max_batch, n, rate);
    if (!ran_ok(state, r)) return;
    state.SetIterationTime(r.seconds);
    auto lat = r.latency_ns;
    std::sort(lat.begin(), lat.end());
    auto lag = r.submit_lag_ns;
    std::sort(lag.begin(), lag.end());
    auto pct_us = [](const std::vector<std::int64_t>& v, double q) {
      const std::size_t k = std::min(v.size() - 1, std::size_t(q * double(v.size())));
      return double(v[k]) / 1000.0;
    };
    state.counters["saturation_per_s"] = saturation;
    state.counters["target_per_s"] = rate;
    state.counters["achieved_per_s"] = double(r.events) / r.seconds;
    state.counters["p50_us"] = pct_us(lat, 0.50);
    state.counters["p99_us"] = pct_us(lat, 0.99);
    state.counters["p999_us"] = pct_us(lat, 0.999);
    state.counters["max_us"] = double(lat.back()) / 1000.0;
    state.counters["gen_lag_p50_us"] = pct_us(lag, 0.50);
    state.counters["gen_lag_p99_us"] = pct_us(lag, 0.99);
    state.counters["trades_per_batch"] =
        r.metrics.batches ? double(r.events) / double(r.metrics.batches) : 0.0;
    state.counters["commits_per_trade"] = double(r.metrics.commits) / double(r.events);
    const auto& cl = r.metrics.commit_latency_us;
    state.counters["commit_ms_mean"] = cl.count ? double(cl.sum) / double(cl.count) / 1000.0 : 0.0;
  }
}

/// The two benchmarks of one store: BM_<name>Throughput (saturated_benchmark, args (pipeline
/// threads, max_batch, submitting threads)) and BM_<name>LatencyHalfRate (paced_benchmark, args
/// (pipeline threads, max_batch): (1, 8192) and (2, 8192)).
struct StoreBenchmarks {
  std::string name;
  const StoreFactory& (*factory)();
  std::size_t events_per_run;
  std::vector<std::vector<std::int64_t>> throughput_args;
  std::int64_t throughput_iterations;
  double seconds_of_load;  ///< of the latency run
  std::size_t max_events;  ///< of the latency run
};

/// Registers the benchmarks of `b`, throughput first (the latency runs pace at half the rate it
/// measured); true, for a namespace-scope initializer.
inline bool register_store_benchmarks(const StoreBenchmarks& b) {
  auto* t = benchmark::RegisterBenchmark(
      ("BM_" + b.name + "Throughput").c_str(),
      [b](benchmark::State& state) { saturated_benchmark(state, b.factory(), b.events_per_run); });
  t->ArgNames({"threads", "max_batch", "submitters"});
  for (const auto& args : b.throughput_args) t->Args(args);
  t->UseManualTime()->Iterations(b.throughput_iterations)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(("BM_" + b.name + "LatencyHalfRate").c_str(),
                               [b](benchmark::State& state) {
                                 paced_benchmark(state, b.factory(), b.events_per_run,
                                                 b.seconds_of_load, b.max_events);
                               })
      ->ArgNames({"threads", "max_batch"})
      ->Args({1, 8192})
      ->Args({2, 8192})
      ->UseManualTime()
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  return true;
}

}  // namespace tcbench
