#pragma once
/// \file trade_store.hpp
/// The TradeStore interface: durable per-partition state, applied events and idempotency keys.

#include <tradecapture/error.hpp>
#include <tradecapture/metrics.hpp>
#include <tradecapture/types.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tradecapture {

/// Everything one batch changes in one partition, or (no events) a check that the partition is
/// still as the batch's decisions read it.
///
/// A *check-only* update (no `events`, `trades` or `marks`, `new_seq == expected_seq`) writes
/// nothing: the commit fails unless the stored seq is still `expected_seq` and the stored fence
/// is not above `fence`. The pipeline sends one for every partition whose events of the batch were all
/// decided without a write (DUPLICATE, STALE, REJECTED), so those outcomes are validated in the
/// same transaction as the writes (spec section 6, point 1). An update with `marks` but no
/// `events` (nor `trades`, `new_seq == expected_seq`) is checked the same way and, if it holds,
/// writes its marks, and `fence`, `position` as given: the pipeline sends one for a partition
/// whose events of a source were all decided without a write, so that their source mark moves
/// (see `SourceMark`).
struct PartitionUpdate {
  PartitionKey partition;
  /// The writer's fencing token, as issued by `TradeStore::claim_partitions`; the store refuses
  /// a token below the stored fence.
  std::uint64_t fence = 0;
  std::uint64_t expected_seq = 0;  ///< the partition's seq before this batch (optimistic check)
  std::uint64_t new_seq = 0;       ///< the partition's seq after it (= expected + events.size())
  Position position;               ///< the position after this batch
  /// The final state of every trade this batch changed, by trade_id.
  std::vector<std::pair<std::string, TradeRecord>> trades;
  /// How many of `trades`, at their front, the partition did not hold before this batch (the
  /// batch writes each of them first). A store may insert those rows without looking for a
  /// stored one (the PostgreSQL store COPYs them, from 64 in a batch); a store that finds one
  /// stored all the same refuses the commit with `errc::sequence_conflict` (the writer's view of
  /// the partition is stale) and writes nothing. A store may also write them as any other trade.
  /// 0, the default, says nothing about any trade.
  std::size_t new_trades = 0;
  /// The accepted events, with seq expected_seq+1 .. new_seq in order.
  std::vector<StoredEvent> events;
  /// Source marks to store with the events (created or replaced), strictly ascending by
  /// `SourceMark::source`. Without events: a write of the marks alone (see above).
  std::vector<SourceMark> marks;
};

/// The consumed position of one partition of an external source (a Kafka topic partition),
/// written in the same transaction as the events it covers (exactly-once effect).
struct SourceOffset {
  std::string consumer;          ///< the consumer (Kafka consumer group)
  std::string topic;             ///< the topic
  std::int32_t partition = 0;    ///< the source partition
  std::int64_t next_offset = 0;  ///< the first offset not covered yet (where to resume)
  /// The claim epoch of the writer (see `TradeStore::claim_source`); the store refuses a write
  /// whose epoch is below the stored one.
  std::uint64_t epoch = 0;
  friend bool operator==(const SourceOffset&, const SourceOffset&) = default;
};

/// One atomic write: many events of many partitions, and source offsets.
struct CommitBatch {
  std::vector<PartitionUpdate> partitions;  ///< strictly ascending by partition key
  /// Source offsets to store with the events, strictly ascending by (consumer, topic,
  /// partition). A batch may carry offsets only (no partitions).
  std::vector<SourceOffset> sources;
  /// Idempotency keys that the batch's decisions found absent and that no event of the batch
  /// inserts (an AMEND rejected as `unknown trade`, say), strictly ascending. The commit fails
  /// with `errc::key_conflict` when one of them is stored by then (another partition accepted
  /// it concurrently), so such an outcome is never reported on a stale global view.
  std::vector<IdempotencyKey> absent_keys;
};

/// Durable state: applied events with their sequence numbers, per-partition state (position,
/// seq, fencing token, trades, source marks) and the global idempotency keys (trade_id, version).
///
/// Thread-safety: every method may be called concurrently from several threads; an
/// implementation serialises internally or uses a connection per caller.
/// Guarantees: `commit` is atomic (all of a batch or nothing) and durable when it returns
/// success. It fails with `errc::fenced_off` when a partition's stored fence is above the
/// batch's token, `errc::sequence_conflict` when a partition's stored seq is not
/// `expected_seq` (check-only updates included), `errc::key_conflict` when an idempotency key
/// of an event already exists or a key of `absent_keys` exists, and
/// `errc::fenced_off` when a source offset's stored epoch is above the batch's; in each case
/// nothing of the batch is written. Transient faults are `errc::store_busy` or
/// `errc::store_unavailable` and leave nothing written either.
class TradeStore {
 public:
  TradeStore() = default;
  virtual ~TradeStore() = default;
  TradeStore(const TradeStore&) = delete;
  TradeStore& operator=(const TradeStore&) = delete;

  /// Loads the state of each partition, in the order asked (an empty state when never written).
  /// Read-only; a writer uses `claim_partitions` instead.
  virtual result<std::vector<PartitionState>> load_partitions(
      std::span<const PartitionKey> partitions) = 0;

  /// Claims each partition for a new writer and loads its state, in one transaction: the stored
  /// fence of each partition is incremented (a row with seq 0 and fence 1 is created when the
  /// partition was never written) and the states are returned, in the order asked, with the
  /// new fence in `PartitionState::fence`. That fence is the writer's fencing token: it is above
  /// every token issued before for the partition, by any host, lock or clock, so every later
  /// commit of an earlier claimant is refused (`errc::fenced_off`). Fencing tokens are thus
  /// anchored in the store and never depend on a clock or on a lock server's memory (spec
  /// section 6, points 3 and 4). A partition claimed but never written (seq 0) is not listed by
  /// `positions`. `partitions` must be strictly ascending (one global row order).
  virtual result<std::vector<PartitionState>> claim_partitions(
      std::span<const PartitionKey> partitions) = 0;

  /// Looks up idempotency keys: for each key, the accepted event that holds it, if any, with
  /// `StoredEvent::fence` set to the fence its commit carried (0 only for events stored before
  /// the store recorded it).
  virtual result<std::vector<std::optional<StoredEvent>>> find_events(
      std::span<const IdempotencyKey> keys) = 0;

  /// `find_events` into `out`: on success `out` holds one answer per key, in the order asked
  /// (what it held before is replaced); on failure its contents are unspecified. A caller that
  /// keeps `out` from one call to the next reuses its capacity (the pipeline's shards do), so a
  /// store that overrides this allocates nothing for the result. The default calls
  /// `find_events` and moves its result into `out`.
  virtual result<void> find_events_into(std::span<const IdempotencyKey> keys,
                                        std::vector<std::optional<StoredEvent>>& out);

  /// Checks the batch's invariants (sorted partitions, contiguous sequence numbers, consistent
  /// counts), then writes it atomically through `do_commit_`.
  result<void> commit(const CommitBatch& batch);

  /// Every partition with at least one accepted event, sorted by key bytewise.
  virtual result<std::vector<PositionRow>> positions() = 0;

  /// Calls `fn` for every accepted event, sorted by partition key then seq; stops early when
  /// `fn` returns false.
  virtual result<void> scan_events(const std::function<bool(const StoredEvent&)>& fn) = 0;

  /// Claims one partition of an external source for a new owner: atomically increments its
  /// epoch (creating the row, offset 0 and epoch 1, when it does not exist) and returns the
  /// stored row with the new epoch. Every write of an earlier claimant is refused from then on.
  virtual result<SourceOffset> claim_source(std::string_view consumer, std::string_view topic,
                                            std::int32_t partition) = 0;

  /// Every stored source offset of `consumer`, ascending by (topic, partition).
  virtual result<std::vector<SourceOffset>> source_offsets(std::string_view consumer) = 0;

  /// Answers when the store is reachable (health checks).
  virtual result<void> ping() = 0;

  /// Connection-pool use (for metrics); zeros when the store has no connections.
  virtual StoreStats stats() const { return {}; }

  /// A short description for logs ("sqlite:/path", "memory:").
  virtual std::string describe() const = 0;

 protected:
  /// Writes a batch whose invariants `commit` has checked.
  virtual result<void> do_commit_(const CommitBatch& batch) = 0;
};

}  // namespace tradecapture
