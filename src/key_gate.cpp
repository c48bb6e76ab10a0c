#include "key_gate.hpp"

#include <functional>
#include <string_view>
#include <utility>

namespace tradecapture::detail {

std::size_t key_hash_of(const TradeEvent& e) noexcept {
  std::size_t h = std::hash<std::string_view>{}(e.trade_id);
  return h ^ (static_cast<std::size_t>(e.version) * 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2));
}

bool KeyGate::same_key_(const Entry& e, const SubmitOp* op) noexcept {
  return e.hash == state_of(op).key_hash && e.head->event.version == op->event.version &&
         e.head->event.trade_id == op->event.trade_id;
}

KeyGate::Entry* KeyGate::find_(Stripe& s, const SubmitOp* op) noexcept {
  if (s.table.empty()) return nullptr;
  const std::size_t mask = s.table.size() - 1;
  for (std::size_t i = home_(state_of(op).key_hash, mask);; i = (i + 1) & mask) {
    Entry& e = s.table[i];
    if (e.head == nullptr) return nullptr;
    if (same_key_(e, op)) return &e;
  }
}

void KeyGate::grow_(Stripe& s) {
  std::vector<Entry> old(s.table.empty() ? 64 : s.table.size() * 2);
  old.swap(s.table);
  const std::size_t mask = s.table.size() - 1;
  for (const Entry& e : old) {
    if (e.head == nullptr) continue;
    std::size_t i = home_(e.hash, mask);
    while (s.table[i].head != nullptr) i = (i + 1) & mask;
    s.table[i] = e;
  }
}

void KeyGate::erase_(Stripe& s, Entry* e) noexcept {
  // Backward-shift deletion: later entries of the probe run move into the hole when their home
  // is not between the hole and where they sit.
  const std::size_t mask = s.table.size() - 1;
  std::size_t hole = static_cast<std::size_t>(e - s.table.data());
  std::size_t j = hole;
  for (;;) {
    j = (j + 1) & mask;
    Entry& next = s.table[j];
    if (next.head == nullptr) break;
    const std::size_t home = home_(next.hash, mask);
    const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    s.table[hole] = next;
    hole = j;
  }
  s.table[hole] = Entry{};
  --s.used;
}

void KeyGate::enter(SubmitOp* op) {
  OpState& st = state_of(op);
  Stripe& s = stripe_(st.key_hash);
  std::lock_guard lk(s.mu);
  if (Entry* e = find_(s, op)) {
    state_of(e->tail).gate_next = op;
    e->tail = op;
    return;
  }
  if ((s.used + 1) * 2 > s.table.size()) grow_(s);
  const std::size_t mask = s.table.size() - 1;
  std::size_t i = home_(st.key_hash, mask);
  while (s.table[i].head != nullptr) i = (i + 1) & mask;
  s.table[i] = Entry{st.key_hash, op, op};
  ++s.used;
  st.gate_head.store(true, std::memory_order_release);
}

std::optional<PartitionKey> KeyGate::leave(SubmitOp* op) {
  Stripe& s = stripe_(state_of(op).key_hash);
  std::lock_guard lk(s.mu);
  Entry* e = find_(s, op);
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
    erase_(s, e);
    return std::nullopt;
  }
  if (!was_head) return std::nullopt;
  // The entry's key is compared through its head, now the next op of the same key.
  SubmitOp* head = e->head;
  state_of(head).gate_head.store(true, std::memory_order_release);
  return head->event.partition;
}

}  // namespace tradecapture::detail
