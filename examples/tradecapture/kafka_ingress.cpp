// The Kafka flags of the host and the KafkaSourceOptions they describe.

#include "kafka_ingress.hpp"

#include "host.hpp"

#include <CLI/CLI.hpp>

#include <chrono>

namespace tradecapture::host {

void add_kafka_flags(CLI::App& cmd, KafkaFlags& f, bool required) {
  auto* brokers =
      cmd.add_option("--brokers", f.brokers, "Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]");
  auto* topic = cmd.add_option("--topic", f.topics, "input topic (repeat for several)");
  auto* group =
      cmd.add_option("--group", f.group, "consumer group id (also names the stored offsets)");
  if (required) {
    brokers->required();
    topic->required();
    group->required();
  }
  cmd.add_option("--results-topic", f.results_topic,
                 "topic for one outcome JSON per message (keyed like the input)");
  cmd.add_option("--kafka-config", f.kafka_config,
                 "extra librdkafka consumer property KEY=VALUE (repeat; e.g. "
                 "session.timeout.ms=10000, security.protocol=ssl)");
  cmd.add_option("--offsets-interval-ms", f.offsets_interval_ms,
                 "how often offsets moved by outcomes without a commit (rejects, duplicates) "
                 "are stored")
      ->check(CLI::Range(1LL, 3600LL * 1000))
      ->capture_default_str();
  cmd.add_option("--revoke-timeout-ms", f.revoke_timeout_ms,
                 "how long a revoked partition's in-flight events may take before they are "
                 "abandoned to the next owner")
      ->check(CLI::Range(1LL, 3600LL * 1000))
      ->capture_default_str();
  cmd.add_option("--progress-interval-ms", f.progress_interval_ms,
                 "a progress line at info level every N ms (0: none)")
      ->check(CLI::Range(0LL, 3600LL * 1000))
      ->capture_default_str();
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
  options.offsets_interval = std::chrono::milliseconds(f.offsets_interval_ms);
  options.revoke_timeout = std::chrono::milliseconds(f.revoke_timeout_ms);
  options.progress_interval = std::chrono::milliseconds(f.progress_interval_ms);
  options.pipeline = make_pipeline_options(p, logger);
  options.logger = std::move(logger);
  return options;
}
#endif

}  // namespace tradecapture::host
