// The Kafka ingress of the host: its flags, the KafkaSourceOptions they describe, and the
// KafkaSource a command runs over its pipeline (log lines, summary, Prometheus families).

#include "kafka_ingress.hpp"

#include "host.hpp"

#ifdef TRADECAPTURE_HAVE_METRICS
#include <tradecapture/prometheus_metrics.hpp>
#endif

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

namespace tradecapture::host {
namespace {

/// The variable of a long flag: `--revoke-timeout-ms` -> `TRADECAPTURE_REVOKE_TIMEOUT_MS`.
std::string env_name(std::string_view flag) {
  std::string name = "TRADECAPTURE_";
  for (char c : flag.substr(2)) name += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return name;
}

}  // namespace

void add_kafka_flags(CLI::App& cmd, KafkaFlags& f, bool required) {
  auto* brokers =
      cmd.add_option("--brokers", f.brokers, "Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]")
          ->envname("TRADECAPTURE_BROKERS")
          ->group("Kafka");
  auto* topic =
      cmd.add_option("--topic", f.topics, "input topic (repeat for several; comma-separated in the variable)")
          ->envname("TRADECAPTURE_TOPIC")
          ->delimiter(',')
          ->group("Kafka");
  auto* group =
      cmd.add_option("--group", f.group, "consumer group id (also names the stored offsets)")
          ->envname("TRADECAPTURE_GROUP")
          ->group("Kafka");
  if (required) {
    brokers->required();
    topic->required();
    group->required();
  } else {
    brokers->needs(topic)->needs(group);
    topic->needs(brokers);
    group->needs(brokers);
  }
  cmd.add_option("--results-topic", f.results_topic,
                 "topic for one outcome JSON per message (keyed like the input)")
      ->envname("TRADECAPTURE_RESULTS_TOPIC")
      ->group("Kafka");
  cmd.add_option("--kafka-config", f.kafka_config,
                 "extra librdkafka consumer property KEY=VALUE (repeat; e.g. "
                 "session.timeout.ms=10000, security.protocol=ssl; no variable: a value may hold "
                 "any character)")
      ->group("Kafka");
  // The intervals and timeouts: milliseconds from `min` to an hour, the default shown.
  auto milliseconds = [&cmd](const char* name, long long& value, const char* help,
                             long long min) {
    cmd.add_option(name, value, help)
        ->envname(env_name(name))
        ->check(CLI::Range(min, 3600LL * 1000))
        ->capture_default_str()
        ->group("Kafka");
  };
  milliseconds("--offsets-interval-ms", f.offsets_interval_ms,
               "how often offsets moved by outcomes without a commit (rejects, duplicates) are "
               "stored",
               1);
  milliseconds("--revoke-timeout-ms", f.revoke_timeout_ms,
               "how long a revoked partition's in-flight events may take before they are "
               "abandoned to the next owner",
               1);
  milliseconds("--progress-interval-ms", f.progress_interval_ms,
               "a progress line at info level every N ms (0: none)", 0);
}

#ifdef TRADECAPTURE_HAVE_KAFKA
KafkaSourceOptions make_kafka_source_options(const KafkaFlags& f, const PipelineFlags& p,
                                             std::shared_ptr<spdlog::logger> logger) {
  KafkaSourceOptions options;
  options.brokers = f.brokers;
  options.topics = f.topics;
  options.group = f.group;
  options.results_topic = f.results_topic;
  for (const auto& kv : f.kafka_config) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      throw HostError("--kafka-config '" + kv + "' is not KEY=VALUE", exit_usage);
    options.consumer_config.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  options.max_in_flight = p.max_in_flight;
  options.retry = make_pipeline_options(p, nullptr).retry;
  options.offsets_interval = std::chrono::milliseconds(f.offsets_interval_ms);
  options.revoke_timeout = std::chrono::milliseconds(f.revoke_timeout_ms);
  options.progress_interval = std::chrono::milliseconds(f.progress_interval_ms);
  options.logger = std::move(logger);
  return options;
}

namespace {

#ifdef TRADECAPTURE_HAVE_METRICS
/// The Kafka source's own metrics (`tradecapture_kafka_*`), read at each scrape.
class KafkaCollector final : public prometheus::Collectable {
 public:
  explicit KafkaCollector(const KafkaSource& source) : source_(source) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    using metrics::counter_family;
    using metrics::gauge_family;
    const KafkaSourceMetrics k = source_.metrics();
    struct Sample {
      const char* name;
      const char* help;
      std::uint64_t value;
    };
    const Sample counters[] = {
        {"tradecapture_kafka_messages_total", "Kafka messages received.", k.messages},
        {"tradecapture_kafka_invalid_total",
         "Messages rejected by the consumer itself (not JSON, not an event, bad key).", k.invalid},
        {"tradecapture_kafka_replayed_total",
         "Re-read messages found decided before a restart (not reported again; the pipeline "
         "counts them as rejected).",
         k.replayed},
        {"tradecapture_kafka_failed_total", "Messages without an outcome.", k.failed},
        {"tradecapture_kafka_offset_commits_total", "Offsets-only store commits.",
         k.offset_commits},
        {"tradecapture_kafka_offset_commit_failures_total",
         "Offsets-only store commits that failed.", k.offset_commit_failures},
        {"tradecapture_kafka_fenced_total",
         "Partitions given up because another member claimed them.", k.fenced},
        {"tradecapture_kafka_assignments_total", "Partitions assigned (and claimed).",
         k.assignments},
        {"tradecapture_kafka_revocations_total", "Partitions revoked or lost.", k.revocations},
        {"tradecapture_kafka_results_produced_total",
         "Outcome messages delivered to the results topic.", k.results_produced},
        {"tradecapture_kafka_results_failed_total", "Outcome messages that could not be delivered.",
         k.results_failed},
    };
    const Sample gauges[] = {
        {"tradecapture_kafka_partitions_assigned", "Partitions assigned now.", k.partitions},
        {"tradecapture_kafka_in_flight", "Messages in the pipeline now.", k.in_flight},
        {"tradecapture_kafka_lag_messages",
         "Messages between the consumed positions and the partitions' high watermarks.", k.lag},
    };
    std::vector<prometheus::MetricFamily> out;
    for (const Sample& c : counters)
      out.push_back(counter_family(c.name, c.help, static_cast<double>(c.value)));
    for (const Sample& g : gauges)
      out.push_back(gauge_family(g.name, g.help, static_cast<double>(g.value)));
    out.push_back(metrics::histogram_family(
        "tradecapture_kafka_end_to_end_latency_seconds", "Message timestamp to durable outcome.",
        k.end_to_end_us, metrics::HistogramUnit::microseconds_as_seconds));
    return out;
  }

 private:
  const KafkaSource& source_;
};
#endif

}  // namespace

KafkaIngress::KafkaIngress(KafkaSourceOptions o, const std::string& instance_id,
                           Pipeline& pipeline, std::shared_ptr<TradeStore> store)
    : describe_("instance " + instance_id + ": consuming " + std::to_string(o.topics.size()) +
                " topic(s) in group " + o.group + " from " + o.brokers + " into " +
                store->describe()),
      log_(o.logger ? o.logger : spdlog::default_logger()),
      source_(pipeline, std::move(store), std::move(o)) {
#ifdef TRADECAPTURE_HAVE_METRICS
  collector_ = std::make_shared<KafkaCollector>(source_);
#endif
}

KafkaIngress::~KafkaIngress() = default;

void KafkaIngress::start(std::function<void(boost::system::error_code)> on_finished) {
  log_->info("{}", describe_);
  // Consumes on the source's own thread; stop() ends it, and it drains before wait() returns.
  if (auto r = source_.start(std::move(on_finished)); !r)
    throw HostError("cannot start the Kafka source: " + r.error().message());
}

void KafkaIngress::print_summary(const char* command, double seconds,
                                 const result<void>& r) const {
  const KafkaSourceMetrics m = source_.metrics();
  std::fprintf(stderr,
               "tradecapture %s: %llu messages (accepted %llu, duplicate %llu, stale %llu, "
               "rejected %llu of which invalid %llu), %llu replayed after a restart, %llu "
               "failed, in %.3f s\n",
               command, static_cast<unsigned long long>(m.messages),
               static_cast<unsigned long long>(m.accepted),
               static_cast<unsigned long long>(m.duplicate),
               static_cast<unsigned long long>(m.stale),
               static_cast<unsigned long long>(m.rejected),
               static_cast<unsigned long long>(m.invalid),
               static_cast<unsigned long long>(m.replayed),
               static_cast<unsigned long long>(m.failed), seconds);
  if (!r)
    std::fprintf(stderr, "tradecapture %s: failed: %s (%s)\n", command,
                 r.error().message().c_str(), source_.last_error().c_str());
}

const prometheus::Collectable* KafkaIngress::collector() const noexcept {
  return collector_.get();
}
#endif

}  // namespace tradecapture::host
