#pragma once
/// \file consume.hpp
/// `tradecapture consume`: Kafka ingress (a consumer-group member feeding the pipeline).

#include "kafka_ingress.hpp"
#include "pipeline_flags.hpp"

#include <string>

namespace CLI {
class App;
}

namespace tradecapture::host {

/// Options of `tradecapture consume`.
struct ConsumeOptions {
  KafkaFlags kafka;                         ///< the consumer group member (kafka_ingress.hpp)
  std::string metrics_listen;               ///< HOST:PORT; empty: no HTTP endpoint
  /// The store and the pipeline, as in `replay` (no partition lock: `lock` and `lease_ms` unused).
  PipelineFlags pipeline;
};

/// Adds the `consume` subcommand and its flags to `app` (`o` must outlive the parse).
CLI::App* add_consume_command(CLI::App& app, ConsumeOptions& o);

/// Consumes until SIGTERM or SIGINT, then drains, stores the final offsets and leaves the group;
/// returns the exit code (0 after a clean stop, 69 after a failure).
int run_consume(const ConsumeOptions& o);

}  // namespace tradecapture::host
