// GET /metrics of the host commands: the pipeline's, the command's, the Kafka source's and the
// process's families in one exposition.

#include "host_metrics.hpp"

#include "kafka_ingress.hpp"

#ifdef TRADECAPTURE_HAVE_METRICS
#include <tradecapture/prometheus_metrics.hpp>
#endif

namespace tradecapture::host {

struct HostMetrics::Impl {
#ifdef TRADECAPTURE_HAVE_METRICS
  Impl(const Pipeline& pipeline, std::function<std::uint64_t()> rejected_elsewhere,
       const KafkaIngress* k)
      : kafka(k),
        pipeline_collector([&pipeline, rejected = std::move(rejected_elsewhere), k] {
          PipelineMetrics m = pipeline.metrics();
          if (rejected) m.rejected += rejected();
#ifdef TRADECAPTURE_HAVE_KAFKA
          if (k != nullptr) m.rejected += k->source().metrics().invalid;
#endif
          return m;
        }) {}

  const KafkaIngress* kafka;
  metrics::PipelineCollector pipeline_collector;
  metrics::ProcessCollector process_collector;
#else
  Impl(const Pipeline&, std::function<std::uint64_t()>, const KafkaIngress*) {}
#endif
};

HostMetrics::HostMetrics(const Pipeline& pipeline, std::function<std::uint64_t()> rejected,
                         const KafkaIngress* kafka)
    : impl_(std::make_unique<Impl>(pipeline, std::move(rejected), kafka)) {}

HostMetrics::~HostMetrics() = default;

std::string HostMetrics::text([[maybe_unused]] const prometheus::Collectable* own) const {
#ifdef TRADECAPTURE_HAVE_METRICS
  const prometheus::Collectable* kafka = nullptr;
#ifdef TRADECAPTURE_HAVE_KAFKA
  if (impl_->kafka != nullptr) kafka = impl_->kafka->collector();
#endif
  return metrics::serialize({&impl_->pipeline_collector, own, kafka, &impl_->process_collector});
#else
  return {};
#endif
}

std::string HostMetrics::content_type() {
#ifdef TRADECAPTURE_HAVE_METRICS
  return std::string(metrics::content_type);
#else
  return "text/plain; version=0.0.4; charset=utf-8";
#endif
}

}  // namespace tradecapture::host
