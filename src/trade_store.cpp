#include <tradecapture/trade_store.hpp>

#include <tuple>

namespace tradecapture {

result<void> TradeStore::find_events_into(std::span<const IdempotencyKey> keys,
                                          std::vector<std::optional<StoredEvent>>& out) {
  auto r = find_events(keys);
  if (!r) return r.error();
  out = std::move(r).value();
  return boost::outcome_v2::success();
}

result<void> TradeStore::commit(const CommitBatch& batch) {
  const PartitionKey* previous = nullptr;
  for (const auto& p : batch.partitions) {
    // Ascending keys give every writer one global row order: no deadlocks by construction.
    if (previous != nullptr && !(*previous < p.partition)) return errc::internal;
    previous = &p.partition;
    if (p.new_seq != p.expected_seq + p.events.size()) return errc::internal;
    if (p.events.empty() && !p.trades.empty())
      return errc::internal;  // no events: a check, or a write of source marks alone
    for (std::size_t i = 0; i < p.marks.size(); ++i) {
      if (p.marks[i].position < 0) return errc::internal;
      if (i > 0 && !(p.marks[i - 1].source < p.marks[i].source)) return errc::internal;
    }
    std::uint64_t seq = p.expected_seq;
    for (const auto& e : p.events) {
      if (e.seq != ++seq || e.event.partition != p.partition) return errc::internal;
    }
  }
  const SourceOffset* prev_source = nullptr;
  for (const auto& s : batch.sources) {
    if (prev_source != nullptr &&
        !(std::tie(prev_source->consumer, prev_source->topic, prev_source->partition) <
          std::tie(s.consumer, s.topic, s.partition)))
      return errc::internal;
    if (s.next_offset < 0) return errc::internal;
    prev_source = &s;
  }
  for (std::size_t i = 1; i < batch.absent_keys.size(); ++i)
    if (!(batch.absent_keys[i - 1] < batch.absent_keys[i])) return errc::internal;
  if (batch.partitions.empty() && batch.sources.empty() && batch.absent_keys.empty())
    return boost::outcome_v2::success();
  return do_commit_(batch);
}

}  // namespace tradecapture
