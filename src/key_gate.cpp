#include "key_gate.hpp"

#include <functional>

namespace tradecapture::detail {

std::size_t key_hash_of(const TradeEvent& e) noexcept {
  std::size_t h = std::hash<std::string_view>{}(e.trade_id);
  return h ^ (static_cast<std::size_t>(e.version) * 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2));
}

void KeyGate::enter(SubmitOp* op) {
  Stripe& s = stripe_(state_of(op).key_hash);
  std::lock_guard lk(s.mu);
  auto [it, inserted] = s.fifo.try_emplace(view_(op), Entry{op, op});
  if (inserted) {
    state_of(op).gate_head.store(true, std::memory_order_release);
  } else {
    state_of(it->second.tail).gate_next = op;
    it->second.tail = op;
  }
}

std::optional<PartitionKey> KeyGate::leave(SubmitOp* op) {
  Stripe& s = stripe_(state_of(op).key_hash);
  std::lock_guard lk(s.mu);
  auto it = s.fifo.find(view_(op));
  if (it == s.fifo.end()) return std::nullopt;
  Entry& e = it->second;
  const bool was_head = e.head == op;
  if (was_head) {
    e.head = state_of(op).gate_next;
  } else {
    SubmitOp* prev = e.head;
    while (prev != nullptr && state_of(prev).gate_next != op) prev = state_of(prev).gate_next;
    if (prev == nullptr) return std::nullopt;
    state_of(prev).gate_next = state_of(op).gate_next;
    if (e.tail == op) e.tail = prev;
  }
  state_of(op).gate_next = nullptr;
  if (e.head == nullptr) {
    s.fifo.erase(it);
    return std::nullopt;
  }
  if (!was_head) return std::nullopt;
  // The map key views the head's trade_id, which dies with `op`: re-key it on the new head.
  auto node = s.fifo.extract(it);
  SubmitOp* head = node.mapped().head;
  node.key() = view_(head);
  PartitionKey next = head->event.partition;
  s.fifo.insert(std::move(node));
  state_of(head).gate_head.store(true, std::memory_order_release);
  return next;
}

}  // namespace tradecapture::detail
