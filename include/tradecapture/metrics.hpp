#pragma once
/// \file metrics.hpp
/// Counters and histograms a host can read (the gateway exports them to Prometheus).

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tradecapture {

/// A lock-free histogram with power-of-two bucket bounds: bucket i counts values <= 2^i
/// (the last bucket counts everything larger). Thread-safe.
class Histogram {
 public:
  static constexpr int buckets = 40;
  /// A copy of the counts at one moment.
  struct Snapshot {
    std::array<std::uint64_t, buckets> counts{};  ///< per bucket, not cumulative
    std::uint64_t count = 0;
    std::uint64_t sum = 0;
    /// The upper bound of bucket i.
    static constexpr std::uint64_t upper_bound(int i) { return std::uint64_t{1} << i; }
    /// An estimate (bucket upper bound) of the q-quantile, 0 <= q <= 1.
    std::uint64_t quantile(double q) const noexcept;
  };

  /// Records one value.
  void record(std::uint64_t v) noexcept {
    int i = v <= 1 ? 0 : 64 - __builtin_clzll(v - 1);
    if (i >= buckets) i = buckets - 1;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
  }
  /// Reads the counts.
  Snapshot snapshot() const noexcept {
    Snapshot s;
    for (int i = 0; i < buckets; ++i) s.counts[i] = counts_[i].load(std::memory_order_relaxed);
    s.count = count_.load(std::memory_order_relaxed);
    s.sum = sum_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  std::array<std::atomic<std::uint64_t>, buckets> counts_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_{0};
};

/// Why the pipeline retried (a store call, a lock call or a whole batch).
enum class RetryCause : std::uint8_t {
  deadlock,          ///< the database picked a transaction as a deadlock victim
  serialization,     ///< the database could not serialize a transaction
  connection,        ///< the store or the lock service could not be reached
  fenced_off,        ///< a newer lease holder wrote the partition, or our lease ran out
  conflict,          ///< sequence or idempotency-key conflict with a concurrent writer
  busy,              ///< busy database or lock timeout
  other,             ///< anything else that is retryable
};
/// The number of RetryCause values.
inline constexpr std::size_t retry_cause_count = 7;
/// "deadlock", "serialization", "connection", "fenced_off", "conflict", "busy", "other".
std::string_view to_string(RetryCause c) noexcept;

/// Connection-pool use of a store (zero for stores without connections).
struct StoreStats {
  std::size_t pool_size = 0;           ///< connections the pool may open, at most
  std::size_t connections_open = 0;    ///< connections open now
  std::size_t connections_in_use = 0;  ///< connections lent to a caller now
};

/// A copy of a Pipeline's counters at one moment.
struct PipelineMetrics {
  std::uint64_t accepted = 0;       ///< events completed ACCEPTED
  std::uint64_t duplicate = 0;      ///< events completed DUPLICATE
  std::uint64_t stale = 0;          ///< events completed STALE
  std::uint64_t rejected = 0;       ///< events completed REJECTED (all reasons)
  std::uint64_t failed = 0;         ///< events completed with an error (no outcome), but:
  /// events of a source completed with `errc::replayed`: decided before (at or below their
  /// stream's mark), not decided again (see `SourceHook`)
  std::uint64_t replayed = 0;
  std::uint64_t batches = 0;        ///< committed batches
  std::uint64_t commits = 0;        ///< store transactions that succeeded
  std::uint64_t commit_failures = 0;///< store transactions that failed (before retry)
  std::uint64_t retries = 0;        ///< batch retries after a retryable failure (all causes)
  /// `retries` by cause, indexed by `RetryCause`.
  std::array<std::uint64_t, retry_cause_count> retries_by_cause{};
  std::uint64_t lock_grants = 0;    ///< partition leases granted
  std::uint64_t lock_busy = 0;      ///< acquisitions refused because another holder had it
  std::uint64_t lease_losses = 0;   ///< leases lost while held
  std::uint64_t queue_depth = 0;    ///< events submitted and not yet taken into a batch
  /// events submitted and not yet completed, plus reserved slots not used yet
  /// (`Pipeline::try_reserve`)
  std::uint64_t in_flight = 0;
  std::uint64_t reserved = 0;       ///< reserved slots not used yet (part of `in_flight`)
  std::uint64_t partitions_cached = 0;  ///< partitions whose state is held in memory
  std::uint64_t partitions_active = 0;  ///< partitions with queued or in-progress events
  std::uint64_t leases_held = 0;        ///< partition leases this pipeline holds now
  Histogram::Snapshot batch_size;       ///< events per committed batch
  Histogram::Snapshot commit_latency_us;///< store commit time, microseconds
  Histogram::Snapshot latency_us;       ///< submit-to-completion time, microseconds
  Histogram::Snapshot lock_wait_us;     ///< time from needing a lease to holding it, microseconds
  StoreStats store;                     ///< the store's connection pool, read with the counters
};

}  // namespace tradecapture
