#pragma once
/// \file redis_lock.hpp
/// The Redis PartitionLock (hiredis): leases with SET NX PX, fencing tokens, pipelined renewals.

#include <tradecapture/error.hpp>
#include <tradecapture/partition_lock.hpp>

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
};

/// Connects to `redis://[:password@]host:port[/db]` and returns the lock. Fails with
/// `errc::bad_uri` for a malformed URI and `errc::lock_unavailable` when Redis does not answer.
result<std::shared_ptr<PartitionLock>> open_redis_lock(const std::string& uri,
                                                       const RedisLockOptions& options = {});

}  // namespace tradecapture
