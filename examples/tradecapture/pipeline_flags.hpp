#pragma once
/// \file pipeline_flags.hpp
/// The backend and pipeline flags of the commands that run a pipeline (`replay`, `serve`,
/// `consume`): one struct, one CLI11 registration, one PipelineOptions built from it. Every flag
/// also reads its TRADECAPTURE_* environment variable (flags win); `positions` and `events`
/// share `--store` only.

#include <tradecapture/partition_lock.hpp>
#include <tradecapture/pipeline.hpp>

#include <spdlog/fwd.h>

#include <cstddef>
#include <memory>
#include <string>

namespace CLI {
class App;
}

namespace tradecapture::host {

/// The default `--store` of every command.
inline constexpr const char* default_store_uri = "sqlite:tradecapture.db";

/// HOSTNAME-PID: the default `--instance-id`.
std::string default_instance_id();

/// The flags shared by the pipeline commands.
struct PipelineFlags {
  std::string store = default_store_uri;
  /// Not a flag of `consume`, which keeps `local:`: a Kafka member's commits are fenced by the
  /// store (claim tokens, source epochs), whoever else holds a lease.
  std::string lock = "local:";
  std::size_t threads = 2;
  std::size_t max_in_flight = 65536;
  std::size_t batch = 8192;
  std::string log_level = "info";
  std::string instance_id = default_instance_id();
  long long lease_ms = 30000;         ///< with `lock` only
  long long retry_budget_ms = 15000;  ///< RetryPolicy::budget
};

/// What the shared flags mean in one command (the rest of their help is the same everywhere).
struct PipelineFlagsHelp {
  /// The command takes a partition lock: `--lock` and `--lease-ms` exist.
  bool lock = true;
  /// Help of `--max-in-flight`: what is counted and what happens at the limit.
  std::string max_in_flight;
  /// Appended to the help of `--retry-budget-ms`: what the command does then (may be empty).
  std::string retry_budget_effect;
};

/// Adds `--store` (TRADECAPTURE_STORE) to `cmd`.
void add_store_flag(CLI::App& cmd, std::string& store);

/// Adds `--store`, `--lock`, `--threads`, `--max-in-flight`, `--batch`, `--log-level`,
/// `--instance-id`, `--lease-ms` and `--retry-budget-ms` (each with its TRADECAPTURE_*
/// variable) to `cmd`. `flags` must outlive the parse.
void add_pipeline_flags(CLI::App& cmd, PipelineFlags& flags, const PipelineFlagsHelp& help);

/// The pipeline the flags describe: threads, in-flight limit (waiting at it), batch sizes, retry
/// budget and logger. A command adds what is its own (replay: sticky failures).
PipelineOptions make_pipeline_options(const PipelineFlags& flags,
                                      std::shared_ptr<spdlog::logger> logger);

/// Opens the flags' `--lock` with their lease and instance id. Throws HostError.
std::shared_ptr<PartitionLock> open_lock(const PipelineFlags& flags);

/// The store, the lock and the pipeline of a long-running command (`serve`, `consume`), which
/// every ingress of the command shares; the command stops the pipeline after its ingresses.
struct HostPipeline {
  std::shared_ptr<TradeStore> store;
  std::shared_ptr<PartitionLock> lock;
  std::unique_ptr<Pipeline> pipeline;
};

/// Opens `--store` (its connection pool sized for the pipeline's shards plus `other_callers`)
/// and `--lock`, and starts a pipeline over them with the reference processor and
/// `make_pipeline_options`. Throws HostError.
HostPipeline open_pipeline(const PipelineFlags& flags, std::size_t other_callers,
                           std::shared_ptr<spdlog::logger> logger);

}  // namespace tradecapture::host
