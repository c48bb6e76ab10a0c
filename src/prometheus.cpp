#include <tradecapture/prometheus.hpp>

#include <charconv>
#include <cstddef>

namespace tradecapture {
namespace {

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out.append(buf, end);
}

/// `us` microseconds as exact decimal seconds: 1 -> "0.000001", 1500000 -> "1.5", 0 -> "0".
void append_micros_as_seconds(std::string& out, std::uint64_t us) {
  append_uint(out, us / 1000000);
  std::uint64_t frac = us % 1000000;
  if (frac == 0) return;
  char digits[6];
  for (int i = 5; i >= 0; --i) {
    digits[i] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  int n = 6;
  while (digits[n - 1] == '0') --n;
  out += '.';
  out.append(digits, static_cast<std::size_t>(n));
}

void append_value(std::string& out, std::uint64_t v, HistogramUnit unit) {
  if (unit == HistogramUnit::microseconds_as_seconds) {
    append_micros_as_seconds(out, v);
  } else {
    append_uint(out, v);
  }
}

// HELP text: backslash and line feed escaped.
void append_help(std::string& out, std::string_view s) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// Label values: backslash, double quote and line feed escaped.
void append_label_value(std::string& out, std::string_view s) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

}  // namespace

void PrometheusWriter::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  append_help(out_, help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void PrometheusWriter::series_(std::string_view name, std::initializer_list<PrometheusLabel> labels,
                               std::string_view extra_label, std::string_view extra_value) {
  out_ += name;
  if (labels.size() == 0 && extra_label.empty()) return;
  out_ += '{';
  bool first = true;
  for (const PrometheusLabel& l : labels) {
    if (!first) out_ += ',';
    first = false;
    out_ += l.name;
    out_ += "=\"";
    append_label_value(out_, l.value);
    out_ += '"';
  }
  if (!extra_label.empty()) {
    if (!first) out_ += ',';
    out_ += extra_label;
    out_ += "=\"";
    out_ += extra_value;  // a number written by us: nothing to escape
    out_ += '"';
  }
  out_ += '}';
}

void PrometheusWriter::sample(std::string_view name, std::initializer_list<PrometheusLabel> labels,
                              std::uint64_t value) {
  series_(name, labels, {}, {});
  out_ += ' ';
  append_uint(out_, value);
  out_ += '\n';
}

void PrometheusWriter::counter(std::string_view name, std::string_view help, std::uint64_t value) {
  family(name, "counter", help);
  sample(name, {}, value);
}

void PrometheusWriter::gauge(std::string_view name, std::string_view help, std::uint64_t value) {
  family(name, "gauge", help);
  sample(name, {}, value);
}

void PrometheusWriter::histogram(std::string_view name, std::string_view help,
                                 const Histogram::Snapshot& s, HistogramUnit unit) {
  family(name, "histogram", help);
  const std::string base(name);
  const std::string bucket = base + "_bucket";
  std::uint64_t cumulative = 0;
  std::string bound;
  // Buckets 0 .. buckets-2 have a true upper bound 2^i; the last one also counts everything
  // larger, so it belongs to +Inf only.
  for (int i = 0; i + 1 < Histogram::buckets; ++i) {
    cumulative += s.counts[static_cast<std::size_t>(i)];
    bound.clear();
    append_value(bound, Histogram::Snapshot::upper_bound(i), unit);
    series_(bucket, {}, "le", bound);
    out_ += ' ';
    append_uint(out_, cumulative);
    out_ += '\n';
  }
  cumulative += s.counts[Histogram::buckets - 1];
  series_(bucket, {}, "le", "+Inf");
  out_ += ' ';
  append_uint(out_, cumulative);
  out_ += '\n';
  out_ += base;
  out_ += "_sum ";
  append_value(out_, s.sum, unit);
  out_ += '\n';
  out_ += base;
  out_ += "_count ";
  append_uint(out_, cumulative);
  out_ += '\n';
}

void append_pipeline_metrics(PrometheusWriter& w, const PipelineMetrics& m,
                             const PrometheusOptions& options) {
  w.family("tradecapture_trades_total", "counter",
           "Events completed, by outcome (failed: completed with an error and no outcome).");
  w.sample("tradecapture_trades_total", {{"outcome", "accepted"}}, m.accepted);
  w.sample("tradecapture_trades_total", {{"outcome", "duplicate"}}, m.duplicate);
  w.sample("tradecapture_trades_total", {{"outcome", "stale"}}, m.stale);
  w.sample("tradecapture_trades_total", {{"outcome", "rejected"}},
           m.rejected + options.rejected_before_submit);
  w.sample("tradecapture_trades_total", {{"outcome", "failed"}}, m.failed);

  w.histogram("tradecapture_submit_latency_seconds",
              "Time from submission to durable completion of an event.", m.latency_us,
              HistogramUnit::microseconds_as_seconds);
  w.histogram("tradecapture_batch_size_events", "Events per committed batch.", m.batch_size,
              HistogramUnit::plain);
  w.histogram("tradecapture_commit_latency_seconds", "Time of one store commit.",
              m.commit_latency_us, HistogramUnit::microseconds_as_seconds);
  w.counter("tradecapture_batches_total", "Committed batches.", m.batches);
  w.counter("tradecapture_commits_total", "Store transactions that succeeded.", m.commits);
  w.counter("tradecapture_commit_failures_total",
            "Store transactions that failed (before any retry).", m.commit_failures);

  w.family("tradecapture_retries_total", "counter", "Retries after a retryable failure, by cause.");
  for (std::size_t i = 0; i < retry_cause_count; ++i) {
    w.sample("tradecapture_retries_total", {{"cause", to_string(static_cast<RetryCause>(i))}},
             m.retries_by_cause[i]);
  }

  w.counter("tradecapture_lock_grants_total", "Partition leases granted.", m.lock_grants);
  w.counter("tradecapture_lock_busy_total",
            "Lease acquisitions refused because another holder had the partition.", m.lock_busy);
  w.counter("tradecapture_lease_losses_total", "Leases lost while held.", m.lease_losses);
  w.histogram("tradecapture_lock_wait_seconds",
              "Time from needing a partition lease to holding it.", m.lock_wait_us,
              HistogramUnit::microseconds_as_seconds);
  w.gauge("tradecapture_leases_held", "Partition leases held now.", m.leases_held);

  w.gauge("tradecapture_queue_depth", "Events submitted and not yet taken into a batch.",
          m.queue_depth);
  w.gauge("tradecapture_in_flight", "Events submitted and not yet completed.", m.in_flight);
  w.gauge("tradecapture_partitions_active", "Partitions with queued or in-progress events.",
          m.partitions_active);
  w.gauge("tradecapture_partitions_cached", "Partitions whose state is held in memory.",
          m.partitions_cached);

  w.gauge("tradecapture_store_pool_size", "Connections the store's pool may open, at most.",
          m.store.pool_size);
  w.gauge("tradecapture_store_connections_open", "Store connections open now.",
          m.store.connections_open);
  w.gauge("tradecapture_store_connections_in_use", "Store connections lent to a caller now.",
          m.store.connections_in_use);

  w.family("tradecapture_build_info", "gauge", "Always 1; the version of tradecapture.");
  w.sample("tradecapture_build_info", {{"version", options.version}}, 1);
}

std::string format_prometheus(const PipelineMetrics& m, const PrometheusOptions& options) {
  PrometheusWriter w;
  append_pipeline_metrics(w, m, options);
  return w.take();
}

}  // namespace tradecapture
