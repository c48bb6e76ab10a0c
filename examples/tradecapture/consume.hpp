#pragma once
/// \file consume.hpp
/// `tradecapture consume`: Kafka ingress (a consumer-group member feeding the pipeline).

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
  std::string store = "sqlite:tradecapture.db";
  std::string results_topic;                ///< empty: none
  std::vector<std::string> kafka_config;    ///< KEY=VALUE librdkafka consumer properties
  std::string metrics_listen;               ///< HOST:PORT; empty: no HTTP endpoint
  std::size_t threads = 2;
  std::size_t max_in_flight = 65536;
  std::size_t batch = 8192;
  long long offsets_interval_ms = 200;
  long long revoke_timeout_ms = 30000;
  long long progress_interval_ms = 10000;
  std::string log_level = "info";
  long long retry_budget_ms = 15000;  ///< RetryPolicy::budget
  std::string instance_id;
};

/// Adds the `consume` subcommand and its flags to `app` (`o` must outlive the parse).
CLI::App* add_consume_command(CLI::App& app, ConsumeOptions& o);

/// Consumes until SIGTERM or SIGINT, then drains, stores the final offsets and leaves the group;
/// returns the exit code (0 after a clean stop, 69 after a failure).
int run_consume(const ConsumeOptions& o);

}  // namespace tradecapture::host
