#pragma once
// The global gate on idempotency keys (trade_id, version), shared by every shard of a pipeline.
//
// For each key, the FIFO of submitted, not yet completed ops that carry it, in entry order. An op
// may be decided only when it leads its key (every earlier op with the same key has completed,
// so its outcome is durable and `find_events` sees it). The lead is published in
// `OpState::gate_head`, so the common check needs no lock. One exception, for re-sends: an op
// whose earlier ops of the key are all of its own partition (`OpState::gate_local`) may be
// decided in the same batch as they are, right after them (ShardCore: `taken_behind`), unless
// it comes from a source (a Kafka partition: SubmitOp::source).
//
// The ops are the nodes: each stripe is an open-addressed table (detail/open_table.hpp: linear
// probing, backward-shift deletion) of {hash, head op, tail op}, and an op links to the next op of its key through
// `OpState::gate_next`. Keys are compared through the head op's event, so nothing is copied and
// nothing is allocated per op (a stripe's table grows to its peak and stays). Stripes sit on
// cache lines of their own: submitters enter and shards leave concurrently.
// Thread-safe: striped mutexes.

#include <tradecapture/detail/open_table.hpp>
#include <tradecapture/detail/submit_op.hpp>

#include "op_state.hpp"

#include <array>
#include <cstddef>
#include <mutex>
#include <optional>

namespace tradecapture::detail {

/// Hash of an event's idempotency key (stored in `OpState::key_hash` before `enter`).
std::size_t key_hash_of(const TradeEvent& e) noexcept;

class KeyGate {
 public:
  /// Appends `op` to the FIFO of its key (`state_of(op).key_hash` must be set).
  void enter(SubmitOp* op);

  /// True when `op` leads its key and may be decided.
  static bool may_take(const SubmitOp* op) {
    return state_of(op).gate_head.load(std::memory_order_acquire);
  }

  /// Removes `op` (completed); returns the partition of the op that now leads the key, if that
  /// changed, so its shard can be woken.
  std::optional<PartitionKey> leave(SubmitOp* op);

 private:
  struct Entry {
    std::size_t hash = 0;
    SubmitOp* head = nullptr;  ///< null: the entry is free
    SubmitOp* tail = nullptr;
  };
  struct EntryPolicy {
    static bool is_free(const Entry& e) noexcept { return e.head == nullptr; }
    static std::size_t hash_of(const Entry& e) noexcept { return e.hash; }
  };
  struct alignas(64) Stripe {
    std::mutex mu;
    OpenTable<Entry, EntryPolicy> table{64};
  };
  /// A predicate of the entry of `op`'s key (compared through the entry's head op).
  static auto same_key_(const SubmitOp* op) noexcept {
    return [op](const Entry& e) {
      return e.hash == state_of(op).key_hash && e.head->event.version == op->event.version &&
             e.head->event.trade_id == op->event.trade_id;
    };
  }
  Stripe& stripe_(std::size_t h) { return stripes_[(h >> 7) % stripes_.size()]; }
  std::array<Stripe, 64> stripes_;
};

}  // namespace tradecapture::detail
