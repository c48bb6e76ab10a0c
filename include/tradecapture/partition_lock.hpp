#pragma once
/// \file partition_lock.hpp
/// The PartitionLock interface: who may process a partition, with a fencing token.

#include <tradecapture/error.hpp>
#include <tradecapture/types.hpp>

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace tradecapture {

/// A lease on one partition.
struct Grant {
  PartitionKey partition;
  std::uint64_t fence = 0;  ///< increases monotonically per partition, grant after grant
  std::string token;        ///< unique per grant; proves ownership on renew and release
  std::chrono::steady_clock::time_point expires;  ///< when the holder must stop writing
};

/// Decides who may process a partition. A grant carries a fencing token that the TradeStore
/// checks on every write, so a holder whose lease was lost cannot write.
///
/// Thread-safety: every method may be called concurrently from several threads.
/// Guarantees: at most one live grant per partition at any time (as far as the backend's
/// clock goes); fencing tokens of successive grants of one partition strictly increase.
class PartitionLock {
 public:
  PartitionLock() = default;
  virtual ~PartitionLock() = default;
  PartitionLock(const PartitionLock&) = delete;
  PartitionLock& operator=(const PartitionLock&) = delete;

  /// Tries to acquire each partition without waiting. Per partition: a grant, or
  /// `errc::lock_busy` when another holder has it. The outer result fails when the lock
  /// service itself is unreachable (`errc::lock_unavailable`).
  virtual result<std::vector<result<Grant>>> try_acquire(
      std::span<const PartitionKey> partitions) = 0;

  /// Extends each grant by one lease length, updating `expires`. Per grant: success or
  /// `errc::lease_lost` when it is no longer ours.
  virtual result<std::vector<result<void>>> renew(std::span<Grant> grants) = 0;

  /// Gives the grants up (best effort: a lost grant is simply left to expire).
  virtual void release(std::span<const Grant> grants) = 0;

  /// The lease length of a grant.
  virtual std::chrono::milliseconds lease() const = 0;

  /// Answers when the lock service is reachable (health checks).
  virtual result<void> ping() = 0;

  /// A short description for logs ("local:", "redis://host:port").
  virtual std::string describe() const = 0;
};

}  // namespace tradecapture
