#pragma once
// The global gate on idempotency keys (trade_id, version), shared by every shard of a pipeline.
//
// For each key, the FIFO of submitted, not yet completed ops that carry it, in entry order. The
// map key views the head op's trade_id (no copy). An op may be decided only when it leads its key
// (every earlier op with the same key has completed, so its outcome is durable and `find_events`
// sees it). The lead is published in `SubmitOp::gate_head`, so the common check needs no lock.
// Thread-safe: striped mutexes.

#include <tradecapture/detail/submit_op.hpp>

#include "op_state.hpp"

#include <array>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>

namespace tradecapture::detail {

/// Hash of an event's idempotency key (stored in `SubmitOp::key_hash` before `enter`).
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
  struct View {
    std::string_view trade_id;
    std::int64_t version;
    std::size_t hash;
    bool operator==(const View& o) const {
      return version == o.version && trade_id == o.trade_id;
    }
  };
  struct ViewHash {
    std::size_t operator()(const View& v) const { return v.hash; }
  };
  struct Entry {
    SubmitOp* head;
    SubmitOp* tail;
  };
  struct Stripe {
    std::mutex mu;
    std::unordered_map<View, Entry, ViewHash> fifo;
  };
  static View view_(const SubmitOp* op) {
    return View{op->event.trade_id, op->event.version, state_of(op).key_hash};
  }
  Stripe& stripe_(std::size_t h) { return stripes_[(h >> 7) % stripes_.size()]; }
  std::array<Stripe, 64> stripes_;
};

}  // namespace tradecapture::detail
