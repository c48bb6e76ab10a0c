#pragma once
/// \file kafka_ingress.hpp
/// The Kafka flags of the host (`consume`; one place, so that every command that consumes Kafka
/// reads the same options) and the KafkaSourceOptions they describe.

#include "pipeline_flags.hpp"

#ifdef TRADECAPTURE_HAVE_KAFKA
#include <tradecapture/kafka_source.hpp>
#endif

#include <spdlog/fwd.h>

#include <memory>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tradecapture::host {

/// The Kafka flags: the consumer group member and its results topic.
struct KafkaFlags {
  std::string brokers;
  std::vector<std::string> topics;
  std::string group;
  std::string results_topic;              ///< empty: none
  std::vector<std::string> kafka_config;  ///< KEY=VALUE librdkafka consumer properties
  long long offsets_interval_ms = 200;
  long long revoke_timeout_ms = 30000;
  long long progress_interval_ms = 10000;
};

/// Adds `--brokers`, `--topic`, `--group`, `--results-topic`, `--kafka-config`,
/// `--offsets-interval-ms`, `--revoke-timeout-ms` and `--progress-interval-ms` to `cmd`;
/// `required`: the first three must be given. `flags` must outlive the parse.
void add_kafka_flags(CLI::App& cmd, KafkaFlags& flags, bool required);

#ifdef TRADECAPTURE_HAVE_KAFKA
/// The source the flags describe, over the pipeline `pipeline` describes (its max_in_flight
/// bounds the source's). Throws HostError (exit 64) for a `--kafka-config` that is not
/// KEY=VALUE.
KafkaSourceOptions make_kafka_source_options(const KafkaFlags& flags,
                                             const PipelineFlags& pipeline,
                                             std::shared_ptr<spdlog::logger> logger);
#endif

}  // namespace tradecapture::host
