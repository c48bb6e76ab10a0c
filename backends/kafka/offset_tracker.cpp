#include "offset_tracker.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace tradecapture::kafka_detail {

std::string replay_marker_id(std::string_view group, std::string_view topic,
                             std::int32_t partition) {
  // "\x1f" is a control character (no valid trade id has one) and sorts before every byte a
  // valid trade id can start with.
  std::string id = "\x1fkafka\x1f";
  id += group;
  id += '\x1f';
  id += topic;
  id += '\x1f';
  id += std::to_string(partition);
  return id;
}

OffsetTracker::OffsetTracker(std::string group) : group_(std::move(group)) {}

const OffsetTracker::Slot* OffsetTracker::slot_(SlotIndex i) const {
  if (i == 0 || i >= slots_.size() || !slots_[i].open) return nullptr;
  return &slots_[i];
}

OffsetTracker::Slot* OffsetTracker::slot_(SlotIndex i) {
  if (i == 0 || i >= slots_.size() || !slots_[i].open) return nullptr;
  return &slots_[i];
}

std::int64_t OffsetTracker::watermark_(const Slot& s) {
  return s.in_flight.empty() ? s.position : *s.in_flight.begin();
}

SourceOffset OffsetTracker::row_(const std::string& group, const Slot& s, std::int64_t next) {
  // A dead slot's rows carry epoch 0: below every claimed epoch, so the store refuses them.
  return SourceOffset{group, s.topic, s.partition, next,
                      s.state == SlotState::dead ? 0 : s.epoch};
}

// ---- assignment -----------------------------------------------------------------------------

SlotIndex OffsetTracker::open(std::string topic, std::int32_t partition, std::uint64_t epoch,
                              std::int64_t start) {
  SlotIndex i;
  if (!free_.empty()) {
    i = free_.back();
    free_.pop_back();
  } else {
    i = static_cast<SlotIndex>(slots_.size());
    slots_.emplace_back();
  }
  Slot& s = slots_[i];
  s = Slot{};
  s.open = true;
  s.marker_id = replay_marker_id(group_, topic, partition);
  s.topic = std::move(topic);
  s.partition = partition;
  s.epoch = epoch;
  s.generation = ++generations_;
  s.state = SlotState::live;
  s.position = std::max<std::int64_t>(start, 0);
  s.start = s.position;
  return i;
}

std::optional<SlotIndex> OffsetTracker::find(std::string_view topic,
                                             std::int32_t partition) const {
  for (SlotIndex i = 1; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (s.open && s.partition == partition && s.topic == topic) return i;
  }
  return std::nullopt;
}

void OffsetTracker::set_state(SlotIndex slot, SlotState state) {
  Slot* s = slot_(slot);
  if (s == nullptr) return;
  if (s->state == SlotState::dead) return;  // never revived
  if (state == SlotState::live) return;
  s->state = state;
}

bool OffsetTracker::idle(SlotIndex slot) const {
  const Slot* s = slot_(slot);
  return s == nullptr || s->in_flight.empty();
}

void OffsetTracker::close(SlotIndex slot) {
  Slot* s = slot_(slot);
  if (s == nullptr || !s->in_flight.empty()) return;
  *s = Slot{};
  free_.push_back(slot);
}

SlotView OffsetTracker::view(SlotIndex slot) const {
  SlotView v;
  const Slot* s = slot_(slot);
  if (s == nullptr) return v;
  v.index = slot;
  v.topic = s->topic;
  v.partition = s->partition;
  v.epoch = s->epoch;
  v.generation = s->generation;
  v.state = s->state;
  v.start = s->start;
  v.position = s->position;
  v.watermark = watermark_(*s);
  v.flushed = s->flushed;
  v.in_flight = s->in_flight.size();
  return v;
}

std::vector<SlotView> OffsetTracker::slots() const {
  std::vector<SlotView> out;
  for (SlotIndex i = 1; i < slots_.size(); ++i)
    if (slots_[i].open) out.push_back(view(i));
  return out;
}

// ---- messages -------------------------------------------------------------------------------

Admit OffsetTracker::check(SlotIndex slot, std::int64_t offset) const {
  const Slot* s = slot_(slot);
  if (s == nullptr || s->state != SlotState::live) return Admit::not_live;
  if (offset < s->position) return Admit::stale;
  return Admit::submit;
}

std::uint64_t OffsetTracker::submitted(SlotIndex slot, std::int64_t offset) {
  Slot& s = *slot_(slot);
  s.in_flight.insert(offset);
  s.position = offset + 1;
  return make_tag(slot, offset);
}

void OffsetTracker::answered(SlotIndex slot, std::int64_t offset) {
  Slot* s = slot_(slot);
  if (s != nullptr && offset >= s->position) s->position = offset + 1;
}

Completion OffsetTracker::completed(std::uint64_t tag) {
  Completion c;
  Slot* s = slot_(tag_slot(tag));
  if (s == nullptr) return c;
  auto it = s->in_flight.find(tag_offset(tag));
  if (it == s->in_flight.end()) return c;
  c.known = true;
  c.state = s->state;
  c.topic = s->topic;
  c.partition = s->partition;
  c.offset = *it;
  s->in_flight.erase(it);
  return c;
}

// ---- pipeline hooks -------------------------------------------------------------------------

void OffsetTracker::add_sources(std::span<const SourceEvent> events, CommitBatch& batch) const {
  if (events.empty()) return;
  // Per slot: the offsets of this batch.
  std::map<SlotIndex, std::vector<std::int64_t>> per_slot;
  std::set<SlotIndex> dead_writes;  // dead slots with an event this batch writes
  for (const SourceEvent& e : events) {
    const SlotIndex si = e.stream;
    const Slot* s = slot_(si);
    if (s == nullptr) continue;
    per_slot[si].push_back(e.position);
    if (e.written && s->state == SlotState::dead) dead_writes.insert(si);
  }

  std::vector<SourceOffset> rows;
  for (auto& [si, offsets] : per_slot) {
    const Slot& s = *slot_(si);
    if (s.state == SlotState::dead) {
      // Its events were decided without a write: nothing of it lands, so it needs no row (its
      // offset stays where it is for the next owner). A write decided before the slot died must
      // not land: epoch 0 refuses the batch, which is then decided again (and abandoned).
      if (dead_writes.count(si) != 0) rows.push_back(row_(group_, s, s.start));
      continue;
    }
    std::sort(offsets.begin(), offsets.end());
    // The smallest offset in flight that is not decided by this batch.
    std::int64_t next = s.position;
    auto o = offsets.begin();
    for (const std::int64_t offset : s.in_flight) {
      while (o != offsets.end() && *o < offset) ++o;
      if (o != offsets.end() && *o == offset) continue;
      next = offset;
      break;
    }
    rows.push_back(row_(group_, s, next));
  }
  for (auto& r : batch.sources) rows.push_back(std::move(r));
  auto key = [](const SourceOffset& r) { return std::tie(r.consumer, r.topic, r.partition); };
  std::sort(rows.begin(), rows.end(), [&](const SourceOffset& a, const SourceOffset& b) {
    return key(a) < key(b) || (key(a) == key(b) && a.epoch < b.epoch);
  });
  // Two rows of one partition (a dead generation and a new one): keep the one that refuses.
  batch.sources.clear();
  for (auto& r : rows) {
    if (!batch.sources.empty() && key(batch.sources.back()) == key(r)) {
      batch.sources.back().next_offset = std::min(batch.sources.back().next_offset, r.next_offset);
      continue;
    }
    batch.sources.push_back(std::move(r));
  }
}

std::string OffsetTracker::mark_id(SlotIndex slot) const {
  const Slot* s = slot_(slot);
  return s == nullptr ? std::string() : s->marker_id;
}

bool OffsetTracker::dead(SlotIndex slot) const {
  const Slot* s = slot_(slot);
  return s == nullptr || s->state == SlotState::dead;
}

std::vector<SlotView> OffsetTracker::lost(std::span<const SourceOffset> stale) {
  std::vector<SlotView> killed;
  for (const auto& r : stale) {
    if (r.consumer != group_) continue;
    auto i = find(r.topic, r.partition);
    if (!i) continue;
    Slot& s = slots_[*i];
    if (s.state == SlotState::dead || r.epoch != s.epoch) continue;
    killed.push_back(view(*i));
    s.state = SlotState::dead;
  }
  return killed;
}

// ---- offsets-only commits -------------------------------------------------------------------

std::vector<SourceOffset> OffsetTracker::due_offsets(std::span<const SlotIndex> only,
                                                     bool all) const {
  std::vector<SourceOffset> rows;
  for (SlotIndex i = 1; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (!s.open || s.state == SlotState::dead) continue;
    if (!only.empty() && std::find(only.begin(), only.end(), i) == only.end()) continue;
    const std::int64_t w = watermark_(s);
    if (w == s.flushed && !all) continue;
    rows.push_back(row_(group_, s, w));
  }
  std::sort(rows.begin(), rows.end(), [](const SourceOffset& a, const SourceOffset& b) {
    return std::tie(a.consumer, a.topic, a.partition) < std::tie(b.consumer, b.topic, b.partition);
  });
  return rows;
}

void OffsetTracker::flushed(std::span<const SourceOffset> rows) {
  for (const auto& r : rows) {
    auto i = find(r.topic, r.partition);
    if (!i) continue;
    Slot& s = slots_[*i];
    if (s.epoch == r.epoch) s.flushed = std::max(s.flushed, r.next_offset);
  }
}

}  // namespace tradecapture::kafka_detail
