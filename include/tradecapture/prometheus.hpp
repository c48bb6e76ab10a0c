#pragma once
/// \file prometheus.hpp
/// The Prometheus text exposition format (version 0.0.4): the pipeline's metrics, and a small
/// writer a host uses to add its own (the gateway's HTTP metrics, a consumer's lag).

#include <tradecapture/metrics.hpp>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace tradecapture {

/// The `Content-Type` of a scrape answer in the text exposition format 0.0.4.
inline constexpr std::string_view prometheus_content_type =
    "text/plain; version=0.0.4; charset=utf-8";

/// One label of a sample: a name ([a-zA-Z_][a-zA-Z0-9_]*) and a raw value (escaped on output).
struct PrometheusLabel {
  std::string_view name;
  std::string_view value;
};

/// What the values of a `Histogram` count, for the `le` bounds and `_sum` of its export.
enum class HistogramUnit {
  plain,                    ///< a count (events per batch): bounds 1, 2, 4, ...
  microseconds_as_seconds,  ///< microseconds, exported in seconds: bounds 0.000001, 0.000002, ...
};

/// Writes metric families in the text exposition format 0.0.4: each family once, with its
/// `# HELP` and `# TYPE` lines, then its samples. Values are exact (integers, or microseconds
/// written as decimal seconds); nothing goes through binary floating point. Not thread-safe.
class PrometheusWriter {
 public:
  /// Starts a family: its `# HELP` and `# TYPE` lines. `type` is "counter", "gauge" or
  /// "histogram"; a counter's `name` ends in `_total`.
  void family(std::string_view name, std::string_view type, std::string_view help);
  /// One sample line of the current family.
  void sample(std::string_view name, std::initializer_list<PrometheusLabel> labels,
              std::uint64_t value);
  /// A counter family with one unlabelled sample.
  void counter(std::string_view name, std::string_view help, std::uint64_t value);
  /// A gauge family with one unlabelled sample.
  void gauge(std::string_view name, std::string_view help, std::uint64_t value);
  /// A histogram family from a power-of-two `Histogram`: cumulative `_bucket` samples with `le`
  /// bounds 2^i (converted by `unit`), the `+Inf` bucket, `_sum` and `_count`. The snapshot's
  /// last bucket, which also counts everything larger, is folded into `+Inf`; `_count` and
  /// `+Inf` are the sum of the buckets, so the family is consistent even when the snapshot was
  /// taken while values were being recorded.
  void histogram(std::string_view name, std::string_view help, const Histogram::Snapshot& s,
                 HistogramUnit unit);

  /// The text written so far.
  const std::string& text() const noexcept { return out_; }
  /// Takes the text written so far (the writer is empty afterwards).
  std::string take() noexcept { return std::move(out_); }

 private:
  void series_(std::string_view name, std::initializer_list<PrometheusLabel> labels,
               std::string_view extra_label, std::string_view extra_value);
  std::string out_;
};

/// What `append_pipeline_metrics` exports besides the pipeline's own counters.
struct PrometheusOptions {
  /// The value of the `version` label of `tradecapture_build_info`.
  std::string_view version = "unknown";
  /// Events the host answered REJECTED itself without submitting them (unparsable input):
  /// added to `tradecapture_trades_total{outcome="rejected"}` so that it counts every outcome.
  std::uint64_t rejected_before_submit = 0;
};

/// Appends every pipeline metric, names prefixed `tradecapture_`, latencies in seconds:
/// `trades_total{outcome}`, `submit_latency_seconds`, `batch_size_events`,
/// `commit_latency_seconds`, `batches_total`, `commits_total`, `commit_failures_total`,
/// `retries_total{cause}`, `lock_grants_total`, `lock_busy_total`, `lease_losses_total`,
/// `lock_wait_seconds`, `leases_held`, `queue_depth`, `in_flight`, `partitions_active`,
/// `partitions_cached`, `store_pool_size`, `store_connections_open`,
/// `store_connections_in_use`, `build_info{version}`.
void append_pipeline_metrics(PrometheusWriter& w, const PipelineMetrics& m,
                             const PrometheusOptions& options = {});

/// The pipeline's metrics as one scrape answer (see `append_pipeline_metrics`).
std::string format_prometheus(const PipelineMetrics& m, const PrometheusOptions& options = {});

}  // namespace tradecapture
