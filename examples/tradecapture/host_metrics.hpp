#pragma once
/// \file host_metrics.hpp
/// GET /metrics of the host commands that run a pipeline (`serve`, `consume --metrics-listen`):
/// one exposition of the pipeline's families, the command's own, its Kafka source's when it has
/// one, and the process's. Empty in a build without prometheus-cpp.

#include <tradecapture/pipeline.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace prometheus {
class Collectable;
}

namespace tradecapture::host {

class KafkaIngress;

/// The metrics of one command, read at each scrape. Thread-safe.
class HostMetrics {
 public:
  /// `rejected_elsewhere` (may be empty): outcomes REJECTED by an ingress before the pipeline
  /// (the gateway's parse rejections), counted in the pipeline's `rejected` so that
  /// tradecapture_trades_total counts every outcome; so are the messages `kafka` (may be null)
  /// rejected itself. `pipeline` and `kafka` must outlive this.
  HostMetrics(const Pipeline& pipeline, std::function<std::uint64_t()> rejected_elsewhere,
              const KafkaIngress* kafka);
  ~HostMetrics();
  HostMetrics(const HostMetrics&) = delete;
  HostMetrics& operator=(const HostMetrics&) = delete;

  /// The body of GET /metrics, the command's own families `own` (may be null) included.
  std::string text(const prometheus::Collectable* own = nullptr) const;
  /// Its Content-Type (Prometheus text format 0.0.4).
  static std::string content_type();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tradecapture::host
