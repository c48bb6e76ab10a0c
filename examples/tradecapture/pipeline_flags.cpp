// The backend and pipeline flags shared by `replay`, `serve` and `consume`.

#include "pipeline_flags.hpp"

#include "host.hpp"

#include <tradecapture/processor.hpp>

#include <CLI/CLI.hpp>

#include <unistd.h>
#include <algorithm>
#include <chrono>

namespace tradecapture::host {

std::string default_instance_id() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host[0] ? host : "host") + "-" + std::to_string(::getpid());
}

void add_store_flag(CLI::App& cmd, std::string& store) {
  cmd.add_option("--store", store,
                 "store URI: sqlite:PATH, memory: (one process) or "
                 "postgresql://user@host:port/db")
      ->envname("TRADECAPTURE_STORE")
      ->capture_default_str();
}

void add_pipeline_flags(CLI::App& cmd, PipelineFlags& f, const PipelineFlagsHelp& help) {
  add_store_flag(cmd, f.store);
  if (help.lock)
    cmd.add_option("--lock", f.lock,
                   "partition lock URI: local: (one process) or "
                   "redis://[:password@]host:port[/db]")
        ->envname("TRADECAPTURE_LOCK")
        ->capture_default_str();
  cmd.add_option("--threads", f.threads, "pipeline worker shards")
      ->envname("TRADECAPTURE_THREADS")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd.add_option("--max-in-flight", f.max_in_flight, help.max_in_flight)
      ->envname("TRADECAPTURE_MAX_IN_FLIGHT")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  cmd.add_option("--batch", f.batch, "events per store transaction, at most")
      ->envname("TRADECAPTURE_BATCH")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd.add_option("--log-level", f.log_level, "log level on stderr")
      ->envname("TRADECAPTURE_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  cmd.add_option("--instance-id", f.instance_id,
                 help.lock ? "name of this host instance in logs (and, with a shared lock, its "
                             "owner id; default: HOSTNAME-PID)"
                           : "name of this instance in logs (default: HOSTNAME-PID)")
      ->envname("TRADECAPTURE_INSTANCE_ID");
  if (help.lock)
    cmd.add_option("--lease-ms", f.lease_ms, "partition lease length in milliseconds")
        ->envname("TRADECAPTURE_LEASE_MS")
        ->check(CLI::Range(1LL, 3600LL * 1000))
        ->capture_default_str();
  cmd.add_option("--retry-budget-ms", f.retry_budget_ms,
                 std::string("how long a batch may retry a failing store") +
                     (help.lock ? ", or a partition wait for its lease," : "") +
                     " before its events end without an outcome" + help.retry_budget_effect)
      ->envname("TRADECAPTURE_RETRY_BUDGET_MS")
      ->check(CLI::Range(1LL, 24LL * 3600 * 1000))
      ->capture_default_str();
}

PipelineOptions make_pipeline_options(const PipelineFlags& f,
                                      std::shared_ptr<spdlog::logger> logger) {
  PipelineOptions options;
  options.threads = f.threads;
  options.max_in_flight = f.max_in_flight;
  options.max_batch = f.batch;
  options.max_batch_per_partition = std::min(options.max_batch_per_partition, f.batch);
  options.on_overload = OverloadPolicy::wait;
  options.retry.budget = std::chrono::milliseconds(f.retry_budget_ms);
  options.logger = std::move(logger);
  return options;
}

std::shared_ptr<PartitionLock> open_lock(const PipelineFlags& f) {
  return open_lock(f.lock, std::chrono::milliseconds(f.lease_ms), f.instance_id);
}

HostPipeline open_pipeline(const PipelineFlags& f, std::size_t other_callers,
                           std::shared_ptr<spdlog::logger> logger) {
  HostPipeline h;
  h.store = open_store(f.store, {.concurrency = f.threads + other_callers, .must_exist = false});
  h.lock = open_lock(f);
  h.pipeline = std::make_unique<Pipeline>(h.store, h.lock, make_position_processor(),
                                          make_pipeline_options(f, std::move(logger)));
  return h;
}

}  // namespace tradecapture::host
