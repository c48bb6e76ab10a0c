#pragma once
/// \file trade_store.hpp
/// The TradeStore interface: durable per-partition state, applied events and idempotency keys.

#include <tradecapture/error.hpp>
#include <tradecapture/types.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace tradecapture {

/// Everything one batch changes in one partition.
struct PartitionUpdate {
  PartitionKey partition;
  std::uint64_t fence = 0;         ///< the writer's fencing token; the store refuses older ones
  std::uint64_t expected_seq = 0;  ///< the partition's seq before this batch (optimistic check)
  std::uint64_t new_seq = 0;       ///< the partition's seq after it (= expected + events.size())
  Position position;               ///< the position after this batch
  /// The final state of every trade this batch changed, by trade_id.
  std::vector<std::pair<std::string, TradeRecord>> trades;
  /// The accepted events, with seq expected_seq+1 .. new_seq in order.
  std::vector<StoredEvent> events;
};

/// One atomic write: many events of many partitions.
struct CommitBatch {
  std::vector<PartitionUpdate> partitions;  ///< strictly ascending by partition key
};

/// Durable state: applied events with their sequence numbers, per-partition state (position,
/// seq, fencing token, trades) and the global idempotency keys (trade_id, version).
///
/// Thread-safety: every method may be called concurrently from several threads; an
/// implementation serialises internally or uses a connection per caller.
/// Guarantees: `commit` is atomic (all of a batch or nothing) and durable when it returns
/// success. It fails with `errc::fenced_off` when a partition's stored fence is above the
/// batch's token, `errc::sequence_conflict` when a partition's stored seq is not
/// `expected_seq`, and `errc::key_conflict` when an idempotency key already exists; in each
/// case nothing of the batch is written. Transient faults are `errc::store_busy` or
/// `errc::store_unavailable` and leave nothing written either.
class TradeStore {
 public:
  TradeStore() = default;
  virtual ~TradeStore() = default;
  TradeStore(const TradeStore&) = delete;
  TradeStore& operator=(const TradeStore&) = delete;

  /// Loads the state of each partition, in the order asked (an empty state when never written).
  virtual result<std::vector<PartitionState>> load_partitions(
      std::span<const PartitionKey> partitions) = 0;

  /// Looks up idempotency keys: for each key, the accepted event that holds it, if any.
  virtual result<std::vector<std::optional<StoredEvent>>> find_events(
      std::span<const IdempotencyKey> keys) = 0;

  /// Checks the batch's invariants (sorted partitions, contiguous sequence numbers, consistent
  /// counts), then writes it atomically through `do_commit_`.
  result<void> commit(const CommitBatch& batch);

  /// Every partition with at least one accepted event, sorted by key bytewise.
  virtual result<std::vector<PositionRow>> positions() = 0;

  /// Calls `fn` for every accepted event, sorted by partition key then seq; stops early when
  /// `fn` returns false.
  virtual result<void> scan_events(const std::function<bool(const StoredEvent&)>& fn) = 0;

  /// Answers when the store is reachable (health checks).
  virtual result<void> ping() = 0;

  /// A short description for logs ("sqlite:/path", "memory:").
  virtual std::string describe() const = 0;

 protected:
  /// Writes a batch whose invariants `commit` has checked.
  virtual result<void> do_commit_(const CommitBatch& batch) = 0;
};

}  // namespace tradecapture
