#pragma once
/// \file types.hpp
/// Value types: partition keys, trade events, outcomes, positions and per-partition state.

#include <tradecapture/decimal.hpp>

#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory_resource>
#include <string>
#include <string_view>
#include <unordered_map>

namespace tradecapture {

/// The partition of an event: the triple (account, book, security). Compared bytewise, part by
/// part, so ("A_B","C") and ("A","B_C") are different partitions.
struct PartitionKey {
  std::string account;   ///< 1..64 bytes of UTF-8
  std::string book;      ///< 1..64 bytes of UTF-8
  std::string security;  ///< 1..64 bytes of UTF-8

  friend auto operator<=>(const PartitionKey&, const PartitionKey&) = default;
  friend bool operator==(const PartitionKey&, const PartitionKey&) = default;

  /// A byte-unambiguous single-string encoding: each part prefixed by its length and ':'
  /// ("1:A3:B_C2:S1"), for Redis keys and logs.
  std::string encode() const;
  /// A readable form for logs: account/book/security with '/' and '\\' escaped.
  std::string to_string() const;
};

/// Hash of a PartitionKey (combines the three parts; never joins them with a separator).
struct PartitionKeyHash {
  std::size_t operator()(const PartitionKey& k) const noexcept;
};

/// The kind of a trade event.
enum class TradeType : std::uint8_t { New, Amend, Cancel };
/// Buy or sell.
enum class Side : std::uint8_t { Buy, Sell };

/// "NEW", "AMEND" or "CANCEL".
std::string_view to_string(TradeType t) noexcept;
/// "BUY" or "SELL".
std::string_view to_string(Side s) noexcept;

/// One trade event (spec section 1), already parsed. For a `Cancel`, `side`, `quantity` and
/// `price` carry no meaning and are ignored everywhere (they are left at their defaults).
struct TradeEvent {
  std::string trade_id;      ///< 1..64 bytes of UTF-8, no control characters
  std::int64_t version = 0;  ///< 1 for New, >= 2 for Amend/Cancel
  TradeType type = TradeType::New;
  PartitionKey partition;
  Side side = Side::Buy;
  Decimal quantity;  ///< > 0, <= 1e12, at most 6 fractional digits
  Decimal price;     ///< >= 0, <= 1e9, at most 8 fractional digits

  /// True when `other` has identical content in the sense of spec section 2 (same type and
  /// partition and, unless a cancel, same side and numerically equal quantity and price).
  bool same_content(const TradeEvent& other) const noexcept;
};

/// The global idempotency key of an event: (trade_id, version).
struct IdempotencyKey {
  std::string trade_id;
  std::int64_t version = 0;
  friend auto operator<=>(const IdempotencyKey&, const IdempotencyKey&) = default;
  friend bool operator==(const IdempotencyKey&, const IdempotencyKey&) = default;
};

/// Hash of an IdempotencyKey.
struct IdempotencyKeyHash {
  std::size_t operator()(const IdempotencyKey& k) const noexcept;
};

/// An accepted event as the store keeps it: the event, its partition sequence number and the
/// fence of the claim whose commit wrote it.
struct StoredEvent {
  TradeEvent event;
  std::uint64_t seq = 0;  ///< 1, 2, 3, ... per partition
  /// The writer's fencing token (`PartitionUpdate::fence` of the commit that stored the event;
  /// the store sets it). Each claim of a partition gets a fence no other claim had, so after a
  /// lost acknowledgement it tells whether this writer's commit stored the event or another
  /// writer's did. 0 when unknown: events stored before schema version 3 of the SQL stores
  /// (`TradeStore::find_events` fills it; `scan_events` need not). Not part of an event's identity or content.
  std::uint64_t fence = 0;
};

/// The kind of an outcome (spec section 2).
enum class OutcomeKind : std::uint8_t { Accepted, Duplicate, Stale, Rejected };
/// "ACCEPTED", "DUPLICATE", "STALE" or "REJECTED".
std::string_view to_string(OutcomeKind k) noexcept;

/// The outcome of one event: exactly one per event.
struct Outcome {
  OutcomeKind kind = OutcomeKind::Rejected;
  std::uint64_t seq = 0;  ///< the partition sequence number when Accepted, else 0
  std::string reason;     ///< non-empty only when Rejected ("invalid: ...", "conflict: ...", ...)

  /// An ACCEPTED outcome with sequence number `seq`.
  static Outcome accepted(std::uint64_t seq) { return {OutcomeKind::Accepted, seq, {}}; }
  /// A DUPLICATE outcome.
  static Outcome duplicate() { return {OutcomeKind::Duplicate, 0, {}}; }
  /// A STALE outcome.
  static Outcome stale() { return {OutcomeKind::Stale, 0, {}}; }
  /// A REJECTED outcome with a reason.
  static Outcome rejected(std::string reason) {
    return {OutcomeKind::Rejected, 0, std::move(reason)};
  }
  friend bool operator==(const Outcome&, const Outcome&) = default;
};

/// The position of one partition (spec section 3).
struct Position {
  Decimal net_quantity;
  Decimal bought_quantity;
  Decimal sold_quantity;
  Decimal bought_notional;
  Decimal sold_notional;
  std::int64_t live_trades = 0;
  friend bool operator==(const Position&, const Position&) = default;
};

/// The current state of one trade within its partition.
struct TradeRecord {
  std::int64_t version = 0;  ///< the current version
  Side side = Side::Buy;     ///< of the current effect
  Decimal quantity;          ///< of the current effect
  Decimal price;             ///< of the current effect
  bool cancelled = false;    ///< true once a CANCEL was accepted
  friend bool operator==(const TradeRecord&, const TradeRecord&) = default;
};

/// How far one stream of an external source (a Kafka topic partition, say) is decided in one
/// partition: the position (offset) of the stream's last event decided there, whatever its
/// outcome (ACCEPTED, DUPLICATE, STALE, REJECTED). Stored in the same transaction as the events
/// and checks of the decisions it covers (`PartitionUpdate::marks`), in the store's own table,
/// never among the trades.
struct SourceMark {
  /// The stream's id, chosen by its source (`SourceHook::mark_id`): stable across restarts and
  /// unique among every source feeding the store (Kafka: group, topic and partition).
  std::string source;
  std::int64_t position = 0;  ///< the stream position of the last event decided, >= 0
  friend auto operator<=>(const SourceMark&, const SourceMark&) = default;
  friend bool operator==(const SourceMark&, const SourceMark&) = default;
};

/// Everything a Processor needs to know about a partition.
struct PartitionState {
  Position position;
  std::uint64_t seq = 0;    ///< the last sequence number taken (0 before the first event)
  std::uint64_t fence = 0;  ///< the highest fencing token that wrote this partition
  /// By trade_id; only trades. Allocator-aware (std::pmr): the pipeline keeps the trades of the
  /// partitions it caches in a pool of its own, so that a NEW allocates no node from the heap;
  /// a default-constructed or copied map uses the default resource (new and delete).
  std::pmr::unordered_map<std::string, TradeRecord> trades;
  /// The source marks of the partition: stream id -> position (see `SourceMark`). Loaded with
  /// the partition; the pipeline consults them, processors need not.
  std::map<std::string, std::int64_t, std::less<>> source_marks;
};

/// A partition's position as reported by `TradeStore::positions`.
struct PositionRow {
  PartitionKey partition;
  Position position;
  std::uint64_t seq = 0;  ///< the last sequence number
  friend bool operator==(const PositionRow&, const PositionRow&) = default;
};

/// Checks an event against spec section 1 (lengths, control characters, versions, ranges and
/// digits of quantity and price). Returns an empty string when valid, else a reason that starts
/// with "invalid: ".
std::string validate(const TradeEvent& e);

}  // namespace tradecapture
