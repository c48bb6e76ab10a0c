// The counters of the Kafka source, their snapshot and the progress and summary lines.

#include "source_metrics.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace tradecapture::kafka_detail {

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void SourceCounters::count(const KafkaOutcome& k) {
  switch (k.outcome.kind) {
    case OutcomeKind::Accepted: accepted.fetch_add(1, std::memory_order_relaxed); break;
    case OutcomeKind::Duplicate: duplicate.fetch_add(1, std::memory_order_relaxed); break;
    case OutcomeKind::Stale: stale.fetch_add(1, std::memory_order_relaxed); break;
    case OutcomeKind::Rejected: rejected.fetch_add(1, std::memory_order_relaxed); break;
  }
  if (k.timestamp_ms >= 0) {
    const std::int64_t ms = std::max<std::int64_t>(0, wall_ms() - k.timestamp_ms);
    end_to_end_us.record(static_cast<std::uint64_t>(ms) * 1000);
  }
}

KafkaSourceMetrics SourceCounters::snapshot(std::uint64_t results_produced,
                                            std::uint64_t results_failed) const {
  KafkaSourceMetrics m;
  m.messages = messages.load();
  m.accepted = accepted.load();
  m.duplicate = duplicate.load();
  m.stale = stale.load();
  m.rejected = rejected.load();
  m.invalid = invalid.load();
  m.replayed = replayed.load();
  m.failed = failures.load();
  m.offset_commits = offset_commits.load();
  m.offset_commit_failures = offset_commit_failures.load();
  m.fenced = fenced.load();
  m.assignments = assignments.load();
  m.revocations = revocations.load();
  m.partitions = partitions.load();
  m.in_flight = in_flight.load();
  m.lag = lag.load();
  m.results_produced = results_produced;
  m.results_failed = results_failed;
  m.end_to_end_us = end_to_end_us.snapshot();
  return m;
}

void SourceCounters::log_progress(spdlog::logger& log,
                                  std::chrono::steady_clock::duration elapsed) const {
  const double s = std::chrono::duration<double>(elapsed).count();
  log.info(
      "kafka source: {} messages ({:.0f}/s), accepted {}, duplicate {}, stale {}, "
      "rejected {} (invalid {}), replayed {}, failed {}, in flight {}, lag {}, partitions {}",
      messages.load(), s > 0 ? static_cast<double>(messages.load()) / s : 0.0, accepted.load(),
      duplicate.load(), stale.load(), rejected.load(), invalid.load(), replayed.load(),
      failures.load(), in_flight.load(), lag.load(), partitions.load());
}

void SourceCounters::log_summary(spdlog::logger& log) const {
  log.info("kafka source: stopped after {} messages (accepted {}, duplicate {}, stale {}, "
           "rejected {}, replayed {}, failed {})",
           messages.load(), accepted.load(), duplicate.load(), stale.load(), rejected.load(),
           replayed.load(), failures.load());
}

}  // namespace tradecapture::kafka_detail
