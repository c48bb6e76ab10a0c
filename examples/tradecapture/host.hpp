#pragma once
/// \file host.hpp
/// Pieces shared by the subcommands of the example host `tradecapture`.

#include "conventions.hpp"
#include "pipeline_flags.hpp"

#include <tradecapture/partition_lock.hpp>
#include <tradecapture/trade_store.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace tradecapture::host {

using cli::exit_cantcreat;
using cli::exit_ioerr;
using cli::exit_noinput;
using cli::exit_unavailable;
using cli::exit_usage;

/// A fatal, user-facing error: printed as "tradecapture: <what>"; the host exits `code()`
/// (conventions.hpp: 64 usage, 66 no input, 69 infrastructure, 73/74 output).
class HostError : public std::runtime_error {
 public:
  explicit HostError(const std::string& what, int code = exit_unavailable)
      : std::runtime_error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// Options of the store factory that the host can set.
struct StoreSettings {
  std::size_t concurrency = 4;  ///< expected concurrent callers (SQL connection pool size)
  /// Read-only commands: a `sqlite:PATH` that does not exist is an error (exit 66), never
  /// created; a `memory:` store is empty (a warning).
  bool must_exist = false;
};

/// Opens a store from its URI: `sqlite:PATH`, `memory:`. Throws HostError for anything else.
/// New schemes are added here.
std::shared_ptr<TradeStore> open_store(const std::string& uri, const StoreSettings& settings);

/// Opens a partition lock from its URI: `local:`. Throws HostError for anything else.
/// New schemes are added here.
std::shared_ptr<PartitionLock> open_lock(const std::string& uri, std::chrono::milliseconds lease,
                                         const std::string& instance_id);

/// A file descriptor written through a large buffer. Not thread-safe.
class Output {
 public:
  /// Standard output.
  Output();
  /// Creates or truncates `path` ("-" is standard output). Throws HostError.
  explicit Output(const std::string& path);
  ~Output();
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;

  /// The buffer to append to; call `maybe_flush` after appending.
  std::string& buffer() noexcept { return buf_; }
  /// Writes the buffer out once it holds more than the threshold. Throws HostError.
  void maybe_flush() {
    if (buf_.size() >= threshold) flush();
  }
  /// Writes everything buffered. Throws HostError.
  void flush();
  /// The path for messages.
  const std::string& name() const noexcept { return name_; }

  static constexpr std::size_t threshold = std::size_t{1} << 20;

 private:
  int fd_ = 1;
  bool owned_ = false;
  std::string name_;
  std::string buf_;
};

/// Options of `tradecapture replay`.
struct ReplayOptions {
  std::string input;
  std::string outcomes;  ///< empty: outcomes are not written
  PipelineFlags pipeline;
};

/// Runs `tradecapture replay`; returns the exit code.
int run_replay(const ReplayOptions& options);

/// Runs `tradecapture positions`; returns the exit code.
int run_positions(const std::string& store_uri);

/// Runs `tradecapture events`; returns the exit code.
int run_events(const std::string& store_uri);

}  // namespace tradecapture::host
