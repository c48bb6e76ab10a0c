#include "key_gate.hpp"

#include <functional>
#include <string_view>
#include <utility>

namespace tradecapture::detail {

std::size_t key_hash_of(const TradeEvent& e) noexcept {
  std::size_t h = std::hash<std::string_view>{}(e.trade_id);
  return h ^ (static_cast<std::size_t>(e.version) * 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2));
}

void KeyGate::enter(SubmitOp* op) {
  OpState& st = state_of(op);
  Stripe& s = stripe_(st.key_hash);
  std::lock_guard lk(s.mu);
  auto [e, inserted] =
      s.table.find_or_insert(st.key_hash, same_key_(op), [&] { return Entry{st.key_hash, op, op}; });
  if (inserted) {
    st.gate_local = true;
    st.gate_head.store(true, std::memory_order_release);
    return;
  }
  // Local when every op ahead is: the tail's flag covers the ops ahead of the tail.
  st.gate_local = state_of(e->tail).gate_local && e->tail->event.partition == op->event.partition;
  state_of(e->tail).gate_next = op;
  e->tail = op;
}

std::optional<PartitionKey> KeyGate::leave(SubmitOp* op) {
  Stripe& s = stripe_(state_of(op).key_hash);
  std::lock_guard lk(s.mu);
  Entry* e = s.table.find(state_of(op).key_hash, same_key_(op));
  if (e == nullptr) return std::nullopt;
  const bool was_head = e->head == op;
  if (was_head) {
    e->head = state_of(op).gate_next;
  } else {
    SubmitOp* prev = e->head;
    while (prev != nullptr && state_of(prev).gate_next != op) prev = state_of(prev).gate_next;
    if (prev == nullptr) return std::nullopt;
    state_of(prev).gate_next = state_of(op).gate_next;
    if (e->tail == op) e->tail = prev;
  }
  state_of(op).gate_next = nullptr;
  if (e->head == nullptr) {
    s.table.erase(e);
    return std::nullopt;
  }
  if (!was_head) return std::nullopt;
  // The entry's key is compared through its head, now the next op of the same key.
  SubmitOp* head = e->head;
  state_of(head).gate_head.store(true, std::memory_order_release);
  return head->event.partition;
}

}  // namespace tradecapture::detail
