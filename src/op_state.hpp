#pragma once
// Internal: the pipeline's bookkeeping of one submitted op, stored in place in
// `SubmitOp::scheduler_state` (the installed header keeps it opaque) and reached with `state_of`.

#include <tradecapture/detail/submit_op.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

namespace tradecapture::detail {

/// What the key gate and the shard keep per op.
struct OpState {
  SubmitOp* gate_next = nullptr;       ///< next op waiting on the same idempotency key
  std::size_t key_hash = 0;            ///< hash of (trade_id, version)
  std::uint64_t stamp = 0;             ///< submission order within the pipeline (set on entry)
  /// PartitionKeyHash of the event's partition, computed once on entry (0: not computed yet).
  std::size_t partition_hash = 0;
  int redecides = 0;                   ///< times its batch was decided again after a conflict
  std::atomic<bool> gate_head{false};  ///< first of the ops carrying its key: may be decided
  /// Every op that entered the key gate before it with the same key (every op ahead of it in
  /// its key's FIFO, then and ever after) is of its own partition. Set by KeyGate::enter.
  bool gate_local = false;
  /// Taken by its shard while an earlier op of its key was still ahead of it in the gate: that
  /// op is of the same partition and was taken into the same batch (ShardCore's take/decide).
  bool taken_behind = false;
  /// Its key is looked up in the store before every decision, whatever its partition's state
  /// says: a batch of it was refused for a key (errc::key_conflict), which only a key stored in
  /// another partition explains when the lookup was skipped (ShardCore: Step::take).
  bool look_up = false;
};

static_assert(sizeof(OpState) <= sizeof(SubmitOp::scheduler_state),
              "SubmitOp::scheduler_state is too small for OpState");
static_assert(alignof(OpState) <= 8, "SubmitOp::scheduler_state is not aligned for OpState");
static_assert(std::is_trivially_destructible_v<OpState>,
              "SubmitOp's destructor does not destroy its OpState");

/// The bookkeeping of `op` (constructed by SubmitOp's constructor).
inline OpState& state_of(SubmitOp* op) noexcept {
  return *std::launder(reinterpret_cast<OpState*>(op->scheduler_state));
}

/// The bookkeeping of `op`, read-only.
inline const OpState& state_of(const SubmitOp* op) noexcept {
  return *std::launder(reinterpret_cast<const OpState*>(op->scheduler_state));
}

}  // namespace tradecapture::detail
