#pragma once
/// \file partition_lock.hpp
/// The PartitionLock interface: who may process a partition, for how long.

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
  /// The lock's own grant counter for the partition, for logs and diagnostics only. It increases
  /// grant after grant while the lock service remembers the partition, and may start again
  /// after it forgets (a restart without persistence, a failover). It is NOT the write token:
  /// a writer's fencing token comes from `TradeStore::claim_partitions`.
  std::uint64_t fence = 0;
  std::string token;  ///< unique per grant; proves ownership on renew and release
  std::chrono::steady_clock::time_point expires;  ///< when the holder must stop writing
};

/// Decides who may process a partition, for a lease. The lock keeps writers out of each other's
/// way (efficiency); it is not what makes writes safe. Safety comes from the store: a new holder
/// claims the partition with `TradeStore::claim_partitions`, whose store-issued fence is the
/// token of its writes, so a holder whose lease was lost, or that a forgetting lock server let
/// in twice, cannot write (its commit is `errc::fenced_off`; spec section 6, points 3 and 4).
///
/// Thread-safety: every method may be called concurrently from several threads.
/// Guarantees: while the lock service keeps its state, at most one live grant per partition at
/// any time (as far as the backend's clock and lease bookkeeping go) and `Grant::fence` strictly
/// increases grant after grant. A lock service that loses its state (restart without
/// persistence, failover to a replica that missed writes, eviction) may grant a partition that
/// is still held and may hand out a `Grant::fence` it handed out before; that costs the
/// earlier holder a retry (its commits are fenced off by the store), never a wrong outcome.
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
