#pragma once
// Internal: the counters of the Kafka source (backends/kafka), updated from the polling thread,
// the rebalance callbacks and the pipeline's shards (relaxed atomics), read by `metrics()` and
// the progress line.

#include <tradecapture/kafka_source.hpp>
#include <tradecapture/metrics.hpp>

#include <spdlog/fwd.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tradecapture::kafka_detail {

/// Counters of one KafkaSource (see KafkaSourceMetrics for their meaning).
struct SourceCounters {
  std::atomic<std::uint64_t> messages{0}, accepted{0}, duplicate{0}, stale{0}, rejected{0},
      invalid{0}, replayed{0}, failures{0}, offset_commits{0}, offset_commit_failures{0},
      fenced{0}, assignments{0}, revocations{0}, partitions{0}, lag{0};
  std::atomic<std::size_t> in_flight{0};  ///< messages handed to the pipeline, not completed
  Histogram end_to_end_us;

  /// Counts an outcome by kind and records its end-to-end latency (when it has a timestamp).
  void count(const KafkaOutcome& k);
  /// A copy; the results producer's counters are passed in (zeros without one).
  KafkaSourceMetrics snapshot(std::uint64_t results_produced, std::uint64_t results_failed) const;
  /// Logs the progress line at info level (`elapsed`: since the source started).
  void log_progress(spdlog::logger& log, std::chrono::steady_clock::duration elapsed) const;
  /// Logs the summary line at the end of a run.
  void log_summary(spdlog::logger& log) const;
};

/// Milliseconds since the epoch (the wall clock, for message timestamps).
std::int64_t wall_ms();

}  // namespace tradecapture::kafka_detail
