#pragma once
/// \file redis_lock.hpp
/// The Redis PartitionLock (hiredis): leases with SET NX PX, fencing tokens, pipelined renewals.

#include <tradecapture/error.hpp>
#include <tradecapture/partition_lock.hpp>

#include <spdlog/fwd.h>

#include <chrono>
#include <memory>
#include <string>

namespace tradecapture {

/// Options of the Redis lock.
struct RedisLockOptions {
  std::chrono::milliseconds lease{10000};       ///< lease length of a grant
  std::chrono::milliseconds io_timeout{2000};   ///< connect and command timeout
  std::string instance_id;                      ///< part of every grant token, for diagnosis
  std::string key_prefix = "tc:";               ///< namespace of the lock and fence keys
  /// Reconnect backoff: after a failed connect, no new attempt before this delay (doubling with
  /// each failed attempt, up to `reconnect_backoff_max`); calls in between fail at once with
  /// `errc::lock_unavailable`. A connection lost after working is reopened at the next call.
  std::chrono::milliseconds reconnect_backoff_min{100};
  std::chrono::milliseconds reconnect_backoff_max{2000};
  /// Where the lock logs (bounded: one line per fault episode, a summary every 5 s, one line on
  /// recovery); null means spdlog's default logger.
  std::shared_ptr<spdlog::logger> logger;
};

/// Connects to `redis://[[user]:password@]host:port[/db]` (`user:password@` is a Redis 6 ACL
/// user: `AUTH user password`; `:password@` the default user; user and password may be
/// percent-encoded; `[::1]` for an IPv6 address) and returns the lock. It keeps one connection,
/// reopened with backoff when lost. `rediss://` (TLS) is refused: this build has no TLS. Fails
/// with `errc::bad_uri` for a malformed URI and `errc::lock_unavailable` when Redis does not
/// answer or refuses the credentials; the reason (host:port and hiredis' error or Redis' reply)
/// is logged.
result<std::shared_ptr<PartitionLock>> open_redis_lock(const std::string& uri,
                                                       const RedisLockOptions& options = {});

}  // namespace tradecapture
