#pragma once
/// \file consume.hpp
/// `tradecapture consume`: Kafka ingress (a consumer-group member feeding the pipeline).

#include "pipeline_flags.hpp"

#include <cstddef>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tradecapture::host {

/// Options of `tradecapture consume`.
struct ConsumeOptions {
  std::string brokers;
  std::vector<std::string> topics;
  std::string group;
  std::string results_topic;                ///< empty: none
  std::vector<std::string> kafka_config;    ///< KEY=VALUE librdkafka consumer properties
  std::string metrics_listen;               ///< HOST:PORT; empty: no HTTP endpoint
  long long offsets_interval_ms = 200;
  long long revoke_timeout_ms = 30000;
  long long progress_interval_ms = 10000;
  /// The store and the pipeline, as in `replay` (no partition lock: `lock` and `lease_ms` unused).
  PipelineFlags pipeline;
};

/// Adds the `consume` subcommand and its flags to `app` (`o` must outlive the parse).
CLI::App* add_consume_command(CLI::App& app, ConsumeOptions& o);

/// Consumes until SIGTERM or SIGINT, then drains, stores the final offsets and leaves the group;
/// returns the exit code (0 after a clean stop, 69 after a failure).
int run_consume(const ConsumeOptions& o);

}  // namespace tradecapture::host
