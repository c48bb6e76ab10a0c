#pragma once
/// \file kafka_ingress.hpp
/// The Kafka ingress of the host: its flags (one place, so that every command that consumes
/// Kafka, `consume` and `serve`, reads the same options), the KafkaSourceOptions they describe,
/// and `KafkaIngress`, the KafkaSource a command runs over its pipeline, with its log lines and
/// its Prometheus families.

#include "pipeline_flags.hpp"

#ifdef TRADECAPTURE_HAVE_KAFKA
#include <tradecapture/kafka_source.hpp>
#endif

#include <spdlog/fwd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace CLI {
class App;
}
namespace prometheus {
class Collectable;
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

  /// Whether the flags ask for Kafka at all (`--brokers` given).
  bool enabled() const { return !brokers.empty(); }
};

/// Adds `--brokers`, `--topic`, `--group`, `--results-topic`, `--kafka-config`,
/// `--offsets-interval-ms`, `--revoke-timeout-ms` and `--progress-interval-ms` to `cmd`, in the
/// help group "Kafka". `required`: the first three must be given; else (`serve`) each of them
/// needs the others. `flags` must outlive the parse.
void add_kafka_flags(CLI::App& cmd, KafkaFlags& flags, bool required);

#ifdef TRADECAPTURE_HAVE_KAFKA
/// The source the flags describe: at most `pipeline.max_in_flight` messages in flight, the
/// pipeline's retry budget for its own store calls. Throws HostError (exit 64) for a
/// `--kafka-config` that is not KEY=VALUE.
KafkaSourceOptions make_kafka_source_options(const KafkaFlags& flags,
                                             const PipelineFlags& pipeline,
                                             std::shared_ptr<spdlog::logger> logger);

/// The KafkaSource of a host command, over the command's pipeline (which it shares with the
/// command's other ingresses): built from the flags, started and stopped by the command, which
/// stops the pipeline after it.
class KafkaIngress {
 public:
  /// The source `options` describe (`make_kafka_source_options`, called before the store is
  /// opened, so that a usage error creates nothing) as instance `instance_id` of the host.
  /// `pipeline` and `store` (the pipeline's) must outlive the ingress.
  KafkaIngress(KafkaSourceOptions options, const std::string& instance_id, Pipeline& pipeline,
               std::shared_ptr<TradeStore> store);
  ~KafkaIngress();
  KafkaIngress(const KafkaIngress&) = delete;
  KafkaIngress& operator=(const KafkaIngress&) = delete;

  /// Logs what it consumes, then starts the source on its own thread (KafkaSource::start).
  void start(std::function<void(boost::system::error_code)> on_finished = {});
  /// KafkaSource::stop (async-signal-safe).
  void stop() noexcept { source_.stop(); }
  /// KafkaSource::wait: drained, offsets stored, group left.
  result<void> wait() { return source_.wait(); }
  bool finished() const noexcept { return source_.finished(); }
  const KafkaSource& source() const noexcept { return source_; }

  /// Prints "tradecapture COMMAND: N messages (accepted ...), ... in S s" to stderr, and after a
  /// failure `r` a second line with the source's description of it.
  void print_summary(const char* command, double seconds, const result<void>& r) const;

  /// The source's families (`tradecapture_kafka_*`), read at each scrape; null without
  /// prometheus-cpp.
  const prometheus::Collectable* collector() const noexcept;

 private:
  std::string describe_;
  std::shared_ptr<spdlog::logger> log_;
  KafkaSource source_;
  std::shared_ptr<const prometheus::Collectable> collector_;  // null without prometheus-cpp
};
#endif

}  // namespace tradecapture::host
