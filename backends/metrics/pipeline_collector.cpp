#include <tradecapture/pipeline.hpp>
#include <tradecapture/prometheus_metrics.hpp>
#include <tradecapture/version.hpp>

#include <prometheus/client_metric.h>
#include <prometheus/metric_type.h>
#include <prometheus/text_serializer.h>

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <utility>

namespace tradecapture::metrics {
namespace {

std::vector<prometheus::ClientMetric::Label> labels_of(const prometheus::Labels& labels) {
  std::vector<prometheus::ClientMetric::Label> out;
  out.reserve(labels.size());
  for (const auto& [name, value] : labels) out.push_back({name, value});
  return out;
}

double in_unit(std::uint64_t v, HistogramUnit unit) {
  return unit == HistogramUnit::microseconds_as_seconds ? static_cast<double>(v) / 1e6
                                                        : static_cast<double>(v);
}

/// `base` plus one more label (`outcome`, `cause`, `version`).
prometheus::Labels with(const prometheus::Labels& base, const char* name, std::string value) {
  prometheus::Labels l = base;
  l[name] = std::move(value);
  return l;
}

}  // namespace

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void add_sample(prometheus::MetricFamily& f, const prometheus::Labels& labels, double value) {
  prometheus::ClientMetric m;
  m.label = labels_of(labels);
  if (f.type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else if (f.type == prometheus::MetricType::Gauge) {
    m.gauge.value = value;
  } else {
    m.untyped.value = value;
  }
  f.metric.push_back(std::move(m));
}

prometheus::MetricFamily counter_family(std::string name, std::string help, double value,
                                        const prometheus::Labels& labels) {
  auto f = family(std::move(name), std::move(help), prometheus::MetricType::Counter);
  add_sample(f, labels, value);
  return f;
}

prometheus::MetricFamily gauge_family(std::string name, std::string help, double value,
                                      const prometheus::Labels& labels) {
  auto f = family(std::move(name), std::move(help), prometheus::MetricType::Gauge);
  add_sample(f, labels, value);
  return f;
}

prometheus::MetricFamily histogram_family(std::string name, std::string help,
                                          const Histogram::Snapshot& s, HistogramUnit unit,
                                          const prometheus::Labels& labels) {
  auto f = family(std::move(name), std::move(help), prometheus::MetricType::Histogram);
  prometheus::ClientMetric m;
  m.label = labels_of(labels);
  std::uint64_t cumulative = 0;
  // Buckets 0 .. buckets-2 have a true upper bound 2^i; the last one also counts everything
  // larger, so it belongs to +Inf only (TextSerializer writes +Inf from sample_count).
  m.histogram.bucket.reserve(Histogram::buckets - 1);
  for (int i = 0; i + 1 < Histogram::buckets; ++i) {
    cumulative += s.counts[static_cast<std::size_t>(i)];
    m.histogram.bucket.push_back({cumulative, in_unit(Histogram::Snapshot::upper_bound(i), unit)});
  }
  cumulative += s.counts[Histogram::buckets - 1];
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = in_unit(s.sum, unit);
  f.metric.push_back(std::move(m));
  return f;
}

PipelineCollector::PipelineCollector(const Pipeline& pipeline, PipelineCollectorOptions options)
    : PipelineCollector(Source([&pipeline] { return pipeline.metrics(); }), std::move(options)) {}

PipelineCollector::PipelineCollector(Source source, PipelineCollectorOptions options)
    : source_(std::move(source)), options_(std::move(options)) {
  if (options_.version.empty()) options_.version = std::string(version_string());
}

std::vector<prometheus::MetricFamily> PipelineCollector::Collect() const {
  return families(source_(), options_);
}

std::vector<prometheus::MetricFamily> PipelineCollector::families(
    const PipelineMetrics& m, const PipelineCollectorOptions& options) {
  using prometheus::MetricType;
  const prometheus::Labels& l = options.labels;
  auto d = [](std::uint64_t v) { return static_cast<double>(v); };
  std::vector<prometheus::MetricFamily> out;
  out.reserve(24);

  auto trades = family("tradecapture_trades_total",
                       "Events completed, by outcome (failed: completed with an error and no "
                       "outcome; replayed: an event of a source decided before, not again).",
                       MetricType::Counter);
  add_sample(trades, with(l, "outcome", "accepted"), d(m.accepted));
  add_sample(trades, with(l, "outcome", "duplicate"), d(m.duplicate));
  add_sample(trades, with(l, "outcome", "stale"), d(m.stale));
  add_sample(trades, with(l, "outcome", "rejected"), d(m.rejected));
  add_sample(trades, with(l, "outcome", "failed"), d(m.failed));
  add_sample(trades, with(l, "outcome", "replayed"), d(m.replayed));
  out.push_back(std::move(trades));

  out.push_back(histogram_family("tradecapture_submit_latency_seconds",
                                 "Time from submission to durable completion of an event.",
                                 m.latency_us, HistogramUnit::microseconds_as_seconds, l));
  out.push_back(histogram_family("tradecapture_batch_size_events", "Events per committed batch.",
                                 m.batch_size, HistogramUnit::plain, l));
  out.push_back(histogram_family("tradecapture_commit_latency_seconds", "Time of one store commit.",
                                 m.commit_latency_us, HistogramUnit::microseconds_as_seconds, l));
  out.push_back(
      counter_family("tradecapture_batches_total", "Committed batches.", d(m.batches), l));
  out.push_back(counter_family("tradecapture_commits_total", "Store transactions that succeeded.",
                               d(m.commits), l));
  out.push_back(counter_family("tradecapture_commit_failures_total",
                               "Store transactions that failed (before any retry).",
                               d(m.commit_failures), l));

  auto retries = family("tradecapture_retries_total",
                        "Retries after a retryable failure, by cause.", MetricType::Counter);
  for (std::size_t i = 0; i < retry_cause_count; ++i) {
    add_sample(retries, with(l, "cause", std::string(to_string(static_cast<RetryCause>(i)))),
               d(m.retries_by_cause[i]));
  }
  out.push_back(std::move(retries));

  out.push_back(counter_family("tradecapture_lock_grants_total", "Partition leases granted.",
                               d(m.lock_grants), l));
  out.push_back(counter_family("tradecapture_lock_busy_total",
                               "Lease acquisitions refused because another holder had the "
                               "partition.",
                               d(m.lock_busy), l));
  out.push_back(counter_family("tradecapture_lease_losses_total", "Leases lost while held.",
                               d(m.lease_losses), l));
  out.push_back(histogram_family("tradecapture_lock_wait_seconds",
                                 "Time from needing a partition lease to holding it.",
                                 m.lock_wait_us, HistogramUnit::microseconds_as_seconds, l));
  out.push_back(
      gauge_family("tradecapture_leases_held", "Partition leases held now.", d(m.leases_held), l));

  out.push_back(gauge_family("tradecapture_queue_depth",
                             "Events submitted and not yet taken into a batch.", d(m.queue_depth),
                             l));
  out.push_back(gauge_family("tradecapture_in_flight", "Events submitted and not yet completed.",
                             d(m.in_flight), l));
  out.push_back(gauge_family("tradecapture_partitions_active",
                             "Partitions with queued or in-progress events.",
                             d(m.partitions_active), l));
  out.push_back(gauge_family("tradecapture_partitions_cached",
                             "Partitions whose state is held in memory.", d(m.partitions_cached),
                             l));

  out.push_back(gauge_family("tradecapture_store_pool_size",
                             "Connections the store's pool may open, at most.",
                             d(m.store.pool_size), l));
  out.push_back(gauge_family("tradecapture_store_connections_open", "Store connections open now.",
                             d(m.store.connections_open), l));
  out.push_back(gauge_family("tradecapture_store_connections_in_use",
                             "Store connections lent to a caller now.",
                             d(m.store.connections_in_use), l));

  out.push_back(gauge_family("tradecapture_build_info", "Always 1; the version of tradecapture.", 1,
                             with(l, "version", options.version)));
  return out;
}

std::vector<prometheus::MetricFamily> collect(
    std::initializer_list<const prometheus::Collectable*> collectables) {
  std::vector<prometheus::MetricFamily> out;
  std::unordered_map<std::string, std::size_t> index;  // family name -> position in `out`
  for (const prometheus::Collectable* c : collectables) {
    if (c == nullptr) continue;
    for (prometheus::MetricFamily& f : c->Collect()) {
      auto [it, inserted] = index.emplace(f.name, out.size());
      if (inserted) {
        out.push_back(std::move(f));
      } else {
        auto& into = out[it->second].metric;
        into.insert(into.end(), std::make_move_iterator(f.metric.begin()),
                    std::make_move_iterator(f.metric.end()));
      }
    }
  }
  return out;
}

std::string serialize(std::initializer_list<const prometheus::Collectable*> collectables) {
  return prometheus::TextSerializer().Serialize(collect(collectables));
}

}  // namespace tradecapture::metrics
