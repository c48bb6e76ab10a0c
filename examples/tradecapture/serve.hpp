#pragma once
/// \file serve.hpp
/// `tradecapture serve`: the HTTP gateway of spec section 5.

#include "kafka_ingress.hpp"
#include "pipeline_flags.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

namespace CLI {
class App;
}

namespace tradecapture::host {

/// Options of `tradecapture serve` (each also read from a TRADECAPTURE_* environment variable).
struct ServeOptions {
  std::string listen = "127.0.0.1:8080";
  PipelineFlags pipeline;  ///< the backends and the pipeline, as in `replay`
  // HTTP.
  std::size_t http_threads = 2;    ///< I/O threads (the io_context)
  std::size_t worker_threads = 4;  ///< threads for bodies over 4 KiB, store reads, health checks
  std::size_t max_connections = 1024;
  std::uint64_t max_body_bytes = std::uint64_t{64} << 20;
  std::uint64_t max_bodies_bytes = std::uint64_t{256} << 20;  ///< all connections together
  /// Each POST /v1/trades must be decided within this from its arrival (X-Request-Deadline-Ms
  /// may shorten it); events not decided by then are withdrawn and the request is answered 503.
  long long request_deadline_ms = 20000;
  std::uint32_t max_header_bytes = 16 * 1024;
  long long idle_timeout_ms = 60000;
  long long read_timeout_ms = 30000;
  long long write_timeout_ms = 30000;
  long long shutdown_timeout_ms = 30000;
  std::string auth_token_file;  ///< empty: no authentication
  std::string port_file;        ///< empty: not written
  /// With `--brokers`: also a Kafka consumer-group member feeding the same pipeline.
  KafkaFlags kafka;
};

/// Adds the `serve` subcommand, its flags and their environment variables to `app`.
/// `o` must outlive the parse.
CLI::App* add_serve_command(CLI::App& app, ServeOptions& o);

/// Runs the gateway (and, with Kafka flags, the Kafka source, into the same pipeline) until
/// SIGTERM or SIGINT, then drains; returns the exit code (0 after a drain, 69 when the Kafka
/// source failed). Throws HostError for bad options or an unreachable store or lock at start.
int run_serve(const ServeOptions& o);

}  // namespace tradecapture::host
