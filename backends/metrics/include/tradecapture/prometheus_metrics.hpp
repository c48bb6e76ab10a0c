#pragma once
/// \file prometheus_metrics.hpp
/// The library's metrics as prometheus-cpp collectables (component `tradecapture::metrics`,
/// Debian `prometheus-cpp-dev`): the pipeline's counters and histograms, and the standard
/// `process_*` metrics, for a host that exposes them next to its own.
///
/// prometheus-cpp's `prometheus::Registry` holds only the counters, gauges and histograms it
/// built itself; values that already live elsewhere (a `Pipeline`'s atomics, /proc) are exposed
/// through a `prometheus::Collectable` that builds its families on every `Collect()`, which is
/// what the maintainers of prometheus-cpp and the Prometheus guide to writing exporters
/// recommend (never "update direct instrumentation on each scrape"). A host registers these
/// collectables wherever it registers its `Registry`:
///
/// \code
///   auto registry = std::make_shared<prometheus::Registry>();      // the host's own metrics
///   auto pipeline_metrics = std::make_shared<tradecapture::metrics::PipelineCollector>(
///       pipeline, tradecapture::metrics::PipelineCollectorOptions{.labels = {{"desk", "eq"}}});
///   auto process_metrics = std::make_shared<tradecapture::metrics::ProcessCollector>();
///   // prometheus-cpp's own HTTP exposer (prometheus-cpp-pull) ...
///   exposer.RegisterCollectable(registry);
///   exposer.RegisterCollectable(pipeline_metrics);
///   exposer.RegisterCollectable(process_metrics);
///   // ... or the host's own HTTP server (what `tradecapture serve` does):
///   std::string body = tradecapture::metrics::serialize(
///       {registry.get(), pipeline_metrics.get(), process_metrics.get()});
/// \endcode
///
/// Nothing here is global: every collector reads only what it was given.

#include <tradecapture/metrics.hpp>

#include <prometheus/collectable.h>
#include <prometheus/labels.h>
#include <prometheus/metric_family.h>

#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace tradecapture {

class Pipeline;

namespace metrics {

/// The `Content-Type` of a scrape answer in the text exposition format 0.0.4 (what
/// `prometheus::TextSerializer` writes).
inline constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

/// What the values of a `Histogram` count, for the `le` bounds and `_sum` of its family.
enum class HistogramUnit {
  plain,                    ///< a count (events per batch): bounds 1, 2, 4, ...
  microseconds_as_seconds,  ///< microseconds, exported in seconds: bounds 1e-06, 2e-06, ...
};

/// A counter family with one sample (`labels` may be empty). A counter's name ends in `_total`.
prometheus::MetricFamily counter_family(std::string name, std::string help, double value,
                                        const prometheus::Labels& labels = {});
/// A gauge family with one sample (`labels` may be empty).
prometheus::MetricFamily gauge_family(std::string name, std::string help, double value,
                                      const prometheus::Labels& labels = {});
/// An empty family of `type` (counter or gauge) to which `add_sample` adds labelled samples.
prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type);
/// Adds one sample with `labels` to a counter or gauge family.
void add_sample(prometheus::MetricFamily& family, const prometheus::Labels& labels, double value);
/// A histogram family from a power-of-two `Histogram::Snapshot`: cumulative buckets with upper
/// bounds 2^i (converted by `unit`) for every bucket but the last, which also counts everything
/// larger and so belongs to `+Inf` only; `_count` is the sum of the buckets (consistent even
/// when the snapshot was taken while values were being recorded), `_sum` converted by `unit`.
prometheus::MetricFamily histogram_family(std::string name, std::string help,
                                          const Histogram::Snapshot& snapshot, HistogramUnit unit,
                                          const prometheus::Labels& labels = {});

/// How a `PipelineCollector` labels its families.
struct PipelineCollectorOptions {
  /// Constant labels added to every sample (e.g. `{{"pipeline", "equities"}}` when a host runs
  /// several pipelines). Names must not be `outcome`, `cause`, `version` or `le`.
  prometheus::Labels labels;
  /// The value of the `version` label of `tradecapture_build_info`; empty means the version of
  /// the tradecapture headers this component was built with.
  std::string version;
};

/// The metrics of one `Pipeline` as a `prometheus::Collectable`: every `Collect()` reads one
/// snapshot (`Pipeline::metrics()` or the host's source) and returns the families, names
/// prefixed `tradecapture_`, latencies in seconds:
/// `trades_total{outcome}` (accepted, duplicate, stale, rejected, failed),
/// `submit_latency_seconds`, `batch_size_events`, `commit_latency_seconds` (histograms),
/// `batches_total`, `commits_total`, `commit_failures_total`, `retries_total{cause}` (every
/// `RetryCause`), `lock_grants_total`, `lock_busy_total`, `lease_losses_total`,
/// `lock_wait_seconds` (histogram), `leases_held`, `queue_depth`, `in_flight`,
/// `partitions_active`, `partitions_cached`, `store_pool_size`, `store_connections_open`,
/// `store_connections_in_use`, `build_info{version}` (always 1).
///
/// Thread-safety: `Collect()` may be called from any thread, concurrently; the pipeline (or
/// whatever the source reads) must outlive the collector's last `Collect()`.
class PipelineCollector final : public prometheus::Collectable {
 public:
  /// Where a snapshot comes from. A host that answers some events itself (a gateway rejecting
  /// unparsable input before submitting it) adds them here, so that `trades_total` counts
  /// every outcome.
  using Source = std::function<PipelineMetrics()>;

  /// Collects `pipeline.metrics()`; `pipeline` must outlive the collector.
  explicit PipelineCollector(const Pipeline& pipeline, PipelineCollectorOptions options = {});
  /// Collects whatever `source` returns (called once per `Collect()`, from the collecting
  /// thread).
  explicit PipelineCollector(Source source, PipelineCollectorOptions options = {});

  /// The families of one snapshot.
  std::vector<prometheus::MetricFamily> Collect() const override;

  /// The families of `m` (what `Collect()` returns for that snapshot).
  static std::vector<prometheus::MetricFamily> families(const PipelineMetrics& m,
                                                        const PipelineCollectorOptions& options);

 private:
  Source source_;
  PipelineCollectorOptions options_;
};

/// The standard process metrics of the Prometheus client libraries, read from /proc on every
/// `Collect()` (Linux only; elsewhere, or when /proc cannot be read, the families it cannot
/// read are left out): `process_cpu_seconds_total` (user + system),
/// `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
/// `process_max_fds` (the soft limit; `+Inf` when unlimited) and `process_start_time_seconds`
/// (since the Unix epoch).
///
/// Thread-safety: `Collect()` may be called from any thread, concurrently.
class ProcessCollector final : public prometheus::Collectable {
 public:
  /// Collects the metrics of the process at `proc_dir` (`/proc/self`; a test may point at a
  /// copy), with `labels` on every sample. `/proc/stat` (boot time) is read next to it.
  explicit ProcessCollector(prometheus::Labels labels = {}, std::string proc_dir = "/proc/self");

  /// The families that could be read now.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  prometheus::Labels labels_;
  std::string proc_dir_;
};

/// Collects every collectable in order (null ones are skipped) and merges families of the same
/// name into the first one (two pipelines with different constant labels give one
/// `tradecapture_trades_total` family), as one exposition must announce each family once.
std::vector<prometheus::MetricFamily> collect(
    std::initializer_list<const prometheus::Collectable*> collectables);

/// `collect(collectables)` written by `prometheus::TextSerializer`: the body of a scrape
/// answer in the text exposition format 0.0.4 (`content_type`).
std::string serialize(std::initializer_list<const prometheus::Collectable*> collectables);

}  // namespace metrics
}  // namespace tradecapture
