#include <tradecapture/trade_store.hpp>

namespace tradecapture {

result<void> TradeStore::commit(const CommitBatch& batch) {
  const PartitionKey* previous = nullptr;
  for (const auto& p : batch.partitions) {
    // Ascending keys give every writer one global row order: no deadlocks by construction.
    if (previous != nullptr && !(*previous < p.partition)) return errc::internal;
    previous = &p.partition;
    if (p.new_seq != p.expected_seq + p.events.size()) return errc::internal;
    std::uint64_t seq = p.expected_seq;
    for (const auto& e : p.events) {
      if (e.seq != ++seq || e.event.partition != p.partition) return errc::internal;
    }
  }
  return do_commit_(batch);
}

}  // namespace tradecapture
