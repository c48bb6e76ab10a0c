// The in-memory TradeStore: the reference semantics of the TradeStore contract without
// durability. One shared_mutex guards everything; a commit validates the whole batch before it
// changes anything, so a refused batch leaves no trace. Fencing tokens are issued by
// claim_partitions (the stored fence plus one), never by a clock.

#include <tradecapture/memory.hpp>

#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>

namespace tradecapture {
namespace {

class MemoryStore final : public TradeStore {
 public:
  result<std::vector<PartitionState>> load_partitions(
      std::span<const PartitionKey> partitions) override {
    std::vector<PartitionState> out;
    out.reserve(partitions.size());
    std::shared_lock lock(mutex_);
    for (const auto& key : partitions) {
      auto it = partitions_.find(key);
      out.push_back(it == partitions_.end() ? PartitionState{} : it->second.state);
    }
    return out;
  }

  result<std::vector<PartitionState>> claim_partitions(
      std::span<const PartitionKey> partitions) override {
    for (std::size_t i = 1; i < partitions.size(); ++i) {
      if (!(partitions[i - 1] < partitions[i])) return errc::internal;  // strictly ascending
    }
    std::vector<PartitionState> out;
    out.reserve(partitions.size());
    std::unique_lock lock(mutex_);
    for (const auto& key : partitions) {
      // A partition never written gets its row now: seq 0, fence 1, the empty position.
      Partition& p = partitions_[key];
      ++p.state.fence;
      out.push_back(p.state);
    }
    return out;
  }

  result<std::vector<std::optional<StoredEvent>>> find_events(
      std::span<const IdempotencyKey> keys) override {
    std::vector<std::optional<StoredEvent>> out;
    out.reserve(keys.size());
    std::shared_lock lock(mutex_);
    for (const auto& key : keys) {
      auto it = keys_.find(key);
      if (it == keys_.end()) {
        out.emplace_back(std::nullopt);
      } else {
        out.emplace_back(it->second.partition->events[it->second.seq - 1]);
      }
    }
    return out;
  }

  result<std::vector<PositionRow>> positions() override {
    std::vector<PositionRow> out;
    std::shared_lock lock(mutex_);
    // std::map orders by PartitionKey, whose std::string parts compare bytewise (unsigned).
    for (const auto& [key, p] : partitions_) {
      if (p.state.seq > 0) out.push_back(PositionRow{key, p.state.position, p.state.seq});
    }
    return out;
  }

  result<void> scan_events(const std::function<bool(const StoredEvent&)>& fn) override {
    // Streams partition by partition, copying one partition's events under the lock and
    // calling `fn` without it, so `fn` may call back into the store.
    std::vector<const Partition*> order;
    {
      std::shared_lock lock(mutex_);
      order.reserve(partitions_.size());
      for (const auto& [key, p] : partitions_) order.push_back(&p);  // nodes are never erased
    }
    std::vector<StoredEvent> chunk;
    for (const Partition* p : order) {
      {
        std::shared_lock lock(mutex_);
        chunk.assign(p->events.begin(), p->events.end());
      }
      for (const auto& e : chunk) {
        if (!fn(e)) return boost::outcome_v2::success();
      }
    }
    return boost::outcome_v2::success();
  }

  result<SourceOffset> claim_source(std::string_view consumer, std::string_view topic,
                                    std::int32_t partition) override {
    std::unique_lock lock(mutex_);
    auto key = std::make_tuple(std::string(consumer), std::string(topic), partition);
    auto [it, inserted] =
        sources_.try_emplace(key, SourceOffset{std::string(consumer), std::string(topic),
                                               partition, 0, 0});
    ++it->second.epoch;
    return it->second;
  }

  result<std::vector<SourceOffset>> source_offsets(std::string_view consumer) override {
    std::vector<SourceOffset> out;
    std::shared_lock lock(mutex_);
    for (const auto& [key, row] : sources_)
      if (row.consumer == consumer) out.push_back(row);
    return out;
  }

  result<void> ping() override { return boost::outcome_v2::success(); }

  std::string describe() const override { return "memory:"; }

 protected:
  result<void> do_commit_(const CommitBatch& batch) override {
    std::unique_lock lock(mutex_);
    // Validate everything first, in batch order (the order a SQL store meets the errors in).
    for (const auto& src : batch.sources) {
      auto it = sources_.find(std::make_tuple(src.consumer, src.topic, src.partition));
      if (it != sources_.end() && it->second.epoch > src.epoch) return errc::fenced_off;
    }
    for (const auto& update : batch.partitions) {
      auto it = partitions_.find(update.partition);
      const std::uint64_t stored_seq = it == partitions_.end() ? 0 : it->second.state.seq;
      const std::uint64_t stored_fence = it == partitions_.end() ? 0 : it->second.state.fence;
      if (stored_fence > update.fence) return errc::fenced_off;
      if (stored_seq != update.expected_seq) return errc::sequence_conflict;
    }
    for (const auto& key : batch.absent_keys) {
      if (keys_.contains(key)) return errc::key_conflict;
    }
    // Claim the keys; on a collision (stored, or twice in this batch) give back what was claimed.
    std::vector<decltype(keys_)::iterator> claimed;
    claimed.reserve(batch.partitions.size() * 4);
    for (const auto& update : batch.partitions) {
      for (const auto& e : update.events) {
        auto [it, inserted] =
            keys_.try_emplace(IdempotencyKey{e.event.trade_id, e.event.version}, EventRef{});
        if (!inserted) {
          for (auto c : claimed) keys_.erase(c);
          return errc::key_conflict;
        }
        claimed.push_back(it);
      }
    }
    // Apply: nothing below can fail except by running out of memory.
    for (const auto& src : batch.sources) {
      auto& row = sources_[std::make_tuple(src.consumer, src.topic, src.partition)];
      row = src;
    }
    for (const auto& update : batch.partitions) {
      if (check_only(update)) continue;  // validated above; writes nothing
      Partition& p = partitions_[update.partition];
      p.state.seq = update.new_seq;
      p.state.fence = update.fence;
      p.state.position = update.position;
      for (const auto& [trade_id, record] : update.trades) p.state.trades[trade_id] = record;
      for (const auto& m : update.marks) p.state.source_marks[m.source] = m.position;
      for (const auto& e : update.events) {
        p.events.push_back(e);
        p.events.back().fence = update.fence;  // the writer, for a lost acknowledgement's check
      }
    }
    std::size_t i = 0;
    for (const auto& update : batch.partitions) {
      if (check_only(update)) continue;
      Partition& p = partitions_.find(update.partition)->second;
      for (const auto& e : update.events) claimed[i++]->second = EventRef{&p, e.seq};
    }
    return boost::outcome_v2::success();
  }

 private:
  /// An update that only checks the partition's seq and fence (see PartitionUpdate).
  static bool check_only(const PartitionUpdate& u) {
    return u.events.empty() && u.trades.empty() && u.marks.empty() && u.new_seq == u.expected_seq;
  }

  struct Partition {
    PartitionState state;
    std::vector<StoredEvent> events;  ///< events[i].seq == i + 1
  };
  struct EventRef {
    const Partition* partition;
    std::uint64_t seq;
  };

  mutable std::shared_mutex mutex_;
  std::map<PartitionKey, Partition> partitions_;
  std::unordered_map<IdempotencyKey, EventRef, IdempotencyKeyHash> keys_;
  std::map<std::tuple<std::string, std::string, std::int32_t>, SourceOffset> sources_;
};

}  // namespace

std::shared_ptr<TradeStore> make_memory_store() { return std::make_shared<MemoryStore>(); }

}  // namespace tradecapture
