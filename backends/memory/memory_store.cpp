// The in-memory TradeStore: the reference semantics of the TradeStore contract without
// durability. One shared_mutex guards everything; a commit validates the whole batch before it
// changes anything, so a refused batch leaves no trace. Fencing tokens are issued by
// claim_partitions (the stored fence plus one), never by a clock.
//
// Steady state allocates nothing per event: the events and the trades of every partition live in
// two store-wide arenas of blocks that never move (a block of up to 4,096 records is allocated
// when the last one is full), each partition links its own in order; the idempotency keys and
// the trades are found through two store-wide open-addressed indexes of references to those
// records (a key is compared through the record, never copied), which double as the store grows;
// and a commit's scratch vectors are kept from one commit to the next. A vector per partition
// would allocate at each of its doublings: ~3 allocations every 100 events over 1,000
// partitions (bench_pipeline's BM_MemorySteadyStateAllocs).

#include <tradecapture/memory.hpp>

#include <tradecapture/detail/open_table.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace tradecapture {
namespace {

/// Records at stable addresses: blocks that are never moved nor freed before the arena, each
/// twice the one before, from 64 up to 4,096 records. Appending n records allocates about
/// n / 4,096 times once the arena is large, and never copies what it holds. Not thread-safe.
template <class T>
class Arena {
 public:
  /// A new record, constructed from `args`.
  template <class... Args>
  T& emplace(Args&&... args) {
    if (blocks_.empty() || blocks_.back().size() == blocks_.back().capacity()) {
      std::vector<T> block;
      block.reserve(blocks_.empty() ? first_block
                                    : std::min(2 * blocks_.back().capacity(), max_block));
      blocks_.push_back(std::move(block));  // moving a vector keeps its elements in place
    }
    return blocks_.back().emplace_back(std::forward<Args>(args)...);  // within capacity
  }

 private:
  static constexpr std::size_t first_block = 64, max_block = 4096;
  std::vector<std::vector<T>> blocks_;
};

class MemoryStore final : public TradeStore {
 public:
  result<std::vector<PartitionState>> load_partitions(
      std::span<const PartitionKey> partitions) override {
    std::vector<PartitionState> out;
    out.reserve(partitions.size());
    std::shared_lock lock(mutex_);
    for (const auto& key : partitions) {
      auto it = partitions_.find(key);
      out.push_back(it == partitions_.end() ? PartitionState{} : state_of(it->second));
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
      ++p.fence;
      out.push_back(state_of(p));
    }
    return out;
  }

  result<std::vector<std::optional<StoredEvent>>> find_events(
      std::span<const IdempotencyKey> keys) override {
    std::vector<std::optional<StoredEvent>> out;
    if (auto r = find_events_into(keys, out); !r) return r.error();
    return out;
  }

  result<void> find_events_into(std::span<const IdempotencyKey> keys,
                                std::vector<std::optional<StoredEvent>>& out) override {
    out.clear();  // keeps the capacity: a caller that passes the same vector allocates nothing
    out.reserve(keys.size());
    std::shared_lock lock(mutex_);
    for (const auto& key : keys) {
      if (const StoredEvent* e =
              find_key(key.trade_id, key.version, key_hash(key.trade_id, key.version))) {
        out.emplace_back(*e);
      } else {
        out.emplace_back(std::nullopt);
      }
    }
    return boost::outcome_v2::success();
  }

  result<std::vector<PositionRow>> positions() override {
    std::vector<PositionRow> out;
    std::shared_lock lock(mutex_);
    // std::map orders by PartitionKey, whose std::string parts compare bytewise (unsigned).
    for (const auto& [key, p] : partitions_) {
      if (p.seq > 0) out.push_back(PositionRow{key, p.position, p.seq});
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
        chunk.clear();
        for (const EventNode* n = p->first_event; n != nullptr; n = n->next)
          chunk.push_back(n->stored);
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
    targets_.clear();
    new_hashes_.clear();
    for (const auto& update : batch.partitions) {
      auto it = partitions_.find(update.partition);
      Partition* p = it == partitions_.end() ? nullptr : &it->second;
      const std::uint64_t stored_seq = p == nullptr ? 0 : p->seq;
      const std::uint64_t stored_fence = p == nullptr ? 0 : p->fence;
      if (stored_fence > update.fence) return errc::fenced_off;
      if (stored_seq != update.expected_seq) return errc::sequence_conflict;
      // A trade listed as new must not be stored: the writer's view of the partition is stale
      // (the PostgreSQL store's COPY of new trades fails the same way); nor listed twice (the
      // COPY would insert it twice). Their ids' hashes are kept for the apply below.
      const std::size_t listed_new = std::min(update.new_trades, update.trades.size());
      const std::size_t first_hash = new_hashes_.size();
      for (std::size_t i = 0; i < listed_new; ++i)
        new_hashes_.push_back(std::hash<std::string_view>{}(update.trades[i].first));
      if (listed_new > 1 && listed_twice(update, first_hash)) return errc::sequence_conflict;
      if (p != nullptr) {
        for (std::size_t i = 0; i < listed_new; ++i) {
          const std::string& id = update.trades[i].first;
          if (find_trade(*p, id, trade_hash_of(*p, new_hashes_[first_hash + i])) != nullptr)
            return errc::sequence_conflict;
        }
      }
      targets_.push_back(p);
    }
    for (const auto& key : batch.absent_keys) {
      if (find_key(key.trade_id, key.version, key_hash(key.trade_id, key.version)) != nullptr)
        return errc::key_conflict;
    }
    // Every key the batch inserts must be new: not stored, and not twice in the batch.
    hashes_.clear();
    for (const auto& update : batch.partitions) {
      for (const auto& e : update.events) {
        const std::size_t h = key_hash(e.event.trade_id, e.event.version);
        if (find_key(e.event.trade_id, e.event.version, h) != nullptr) return errc::key_conflict;
        hashes_.push_back(h);
      }
    }
    if (hashes_.size() > 1 && has_repeated_key(batch)) return errc::key_conflict;
    if (!batch.absent_keys.empty() && inserts_absent_key(batch)) return errc::key_conflict;
    // Apply: nothing below can fail except by running out of memory.
    for (const auto& src : batch.sources) {
      auto& row = sources_[std::make_tuple(src.consumer, src.topic, src.partition)];
      row = src;
    }
    keys_.reserve(keys_.size() + hashes_.size());
    std::size_t trades = 0;
    for (const auto& update : batch.partitions) trades += update.trades.size();
    trade_index_.reserve(trade_index_.size() + trades);  // an upper bound: some are replaced
    std::size_t k = 0, listed = 0;
    for (std::size_t u = 0; u < batch.partitions.size(); ++u) {
      const PartitionUpdate& update = batch.partitions[u];
      if (check_only(update)) continue;  // validated above; writes nothing
      Partition& p = targets_[u] != nullptr ? *targets_[u] : partitions_[update.partition];
      p.seq = update.new_seq;
      p.fence = update.fence;
      p.position = update.position;
      // The listed new trades were found absent above (none when the partition is new).
      const std::size_t listed_new = std::min(update.new_trades, update.trades.size());
      for (std::size_t i = 0; i < update.trades.size(); ++i) {
        const auto& [trade_id, record] = update.trades[i];
        if (i < listed_new)
          add_trade(p, trade_id, record, trade_hash_of(p, new_hashes_[listed++]));
        else
          put_trade(p, trade_id, record);
      }
      for (const auto& m : update.marks) p.source_marks[m.source] = m.position;
      for (const auto& e : update.events) {
        EventNode& n = events_.emplace(e);
        n.stored.fence = update.fence;  // the writer, for a lost acknowledgement's check
        (p.last_event == nullptr ? p.first_event : p.last_event->next) = &n;
        p.last_event = &n;
        keys_.insert_reserved(KeySlot{hashes_[k++], &n.stored});
      }
    }
    return boost::outcome_v2::success();
  }

 private:
  /// An update that only checks the partition's seq and fence (see PartitionUpdate).
  static bool check_only(const PartitionUpdate& u) {
    return u.events.empty() && u.trades.empty() && u.marks.empty() && u.new_seq == u.expected_seq;
  }

  struct Partition;

  /// A stored event (in events_), linked to the next one of its partition.
  struct EventNode {
    explicit EventNode(const StoredEvent& e) : stored(e) {}
    StoredEvent stored;
    EventNode* next = nullptr;
  };

  /// A trade's current record (in trades_), linked to the next trade of its partition.
  struct TradeNode {
    TradeNode(const Partition* p, const std::string& i, const TradeRecord& r)
        : owner(p), id(i), record(r) {}
    const Partition* owner;
    std::string id;
    TradeRecord record;
    TradeNode* next = nullptr;
  };

  struct Partition {
    Position position;
    std::uint64_t seq = 0;
    std::uint64_t fence = 0;
    std::map<std::string, std::int64_t, std::less<>> source_marks;
    /// The events in seq order (1, 2, 3, ...); null when none.
    EventNode* first_event = nullptr;
    EventNode* last_event = nullptr;
    /// The trades in the order of their first write, and their number.
    TradeNode* first_trade = nullptr;
    TradeNode* last_trade = nullptr;
    std::size_t trade_count = 0;
  };

  /// An idempotency key's slot: the stored event that holds it (null: free).
  using KeySlot = detail::HashedRef<const StoredEvent>;
  /// A trade's slot: the record of (partition, trade_id) (null: free).
  using TradeSlot = detail::HashedRef<TradeNode>;

  static PartitionState state_of(const Partition& p) {
    PartitionState s;
    s.position = p.position;
    s.seq = p.seq;
    s.fence = p.fence;
    s.trades.reserve(p.trade_count);
    for (const TradeNode* t = p.first_trade; t != nullptr; t = t->next)
      s.trades.insert_or_assign(t->id, t->record);
    s.source_marks = p.source_marks;
    return s;
  }

  /// The trade index's hash of `id` in `p` (a partition's address is stable: std::map nodes
  /// are never erased here).
  static std::size_t trade_hash(const Partition& p, std::string_view id) noexcept {
    return trade_hash_of(p, std::hash<std::string_view>{}(id));
  }
  /// The same from the id's own hash `h`.
  static std::size_t trade_hash_of(const Partition& p, std::size_t h) noexcept {
    return h ^ (reinterpret_cast<std::uintptr_t>(&p) * 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2));
  }

  /// The record of trade `id` in `p`, whose index hash is `h`, or null.
  TradeNode* find_trade(const Partition& p, const std::string& id, std::size_t h) {
    TradeSlot* s = trade_index_.find(h, [&](const TradeSlot& t) {
      return t.hash == h && t.ref->owner == &p && t.ref->id == id;
    });
    return s == nullptr ? nullptr : s->ref;
  }

  /// Inserts or replaces the record of trade `id` in `p`; the index has room (reserved).
  void put_trade(Partition& p, const std::string& id, const TradeRecord& record) {
    const std::size_t h = trade_hash(p, id);
    if (TradeNode* t = find_trade(p, id, h)) {
      t->record = record;
      return;
    }
    add_trade(p, id, record, h);
  }

  /// Adds trade `id`, which `p` does not hold, with its index hash `h`; the index has room.
  void add_trade(Partition& p, const std::string& id, const TradeRecord& record, std::size_t h) {
    TradeNode& n = trades_.emplace(&p, id, record);
    trade_index_.insert_reserved(TradeSlot{h, &n});
    (p.last_trade == nullptr ? p.first_trade : p.last_trade->next) = &n;
    p.last_trade = &n;
    ++p.trade_count;
  }

  /// The index's hash of an idempotency key.
  static std::size_t key_hash(std::string_view trade_id, std::int64_t version) noexcept {
    const std::size_t h = std::hash<std::string_view>{}(trade_id);
    return h ^ (static_cast<std::size_t>(version) * 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2));
  }

  const StoredEvent* find_key(const std::string& trade_id, std::int64_t version,
                              std::size_t hash) const {
    const KeySlot* s = keys_.find(hash, [&](const KeySlot& k) {
      return k.hash == hash && k.ref->event.version == version &&
             k.ref->event.trade_id == trade_id;
    });
    return s == nullptr ? nullptr : s->ref;
  }

  /// True when `update` lists a trade twice among its new ones (their id hashes are those of
  /// new_hashes_ from `first`): sorted hashes first, the ids themselves only if two are equal.
  bool listed_twice(const PartitionUpdate& update, std::size_t first) {
    sorted_new_.assign(new_hashes_.begin() + static_cast<std::ptrdiff_t>(first), new_hashes_.end());
    std::sort(sorted_new_.begin(), sorted_new_.end());
    if (std::adjacent_find(sorted_new_.begin(), sorted_new_.end()) == sorted_new_.end())
      return false;
    new_ids_.clear();
    for (std::size_t i = 0; i < sorted_new_.size(); ++i) new_ids_.push_back(update.trades[i].first);
    std::sort(new_ids_.begin(), new_ids_.end());
    return std::adjacent_find(new_ids_.begin(), new_ids_.end()) != new_ids_.end();
  }

  /// True when two events of the batch carry the same idempotency key (hashes_ holds their
  /// hashes in batch order).
  bool has_repeated_key(const CommitBatch& batch) {
    sorted_.assign(hashes_.begin(), hashes_.end());
    std::sort(sorted_.begin(), sorted_.end());
    if (std::adjacent_find(sorted_.begin(), sorted_.end()) == sorted_.end()) return false;
    // Equal hashes (rare): compare the keys themselves.
    std::vector<std::pair<std::string_view, std::int64_t>> ids;
    for (const auto& update : batch.partitions)
      for (const auto& e : update.events) ids.emplace_back(e.event.trade_id, e.event.version);
    std::sort(ids.begin(), ids.end());
    return std::adjacent_find(ids.begin(), ids.end()) != ids.end();
  }

  /// Whether the batch inserts a key it also lists in `absent_keys`. Such a batch is refused
  /// like one whose absent key is already stored: the SQL stores check the absent keys after
  /// their inserts, and the memory store (the simulator's) must not be more lenient than they.
  /// Needs `hashes_`, and `sorted_` sorted by has_repeated_key when there are two or more.
  bool inserts_absent_key(const CommitBatch& batch) const {
    if (hashes_.empty()) return false;
    const std::vector<std::size_t>& sorted = hashes_.size() > 1 ? sorted_ : hashes_;
    for (const auto& key : batch.absent_keys) {
      if (!std::binary_search(sorted.begin(), sorted.end(), key_hash(key.trade_id, key.version)))
        continue;
      for (const auto& update : batch.partitions)
        for (const auto& e : update.events)
          if (e.event.version == key.version && e.event.trade_id == key.trade_id) return true;
    }
    return false;
  }

  mutable std::shared_mutex mutex_;
  // Declared before what refers to them, so they outlive it.
  Arena<EventNode> events_;  ///< every stored event
  Arena<TradeNode> trades_;  ///< every partition's trades
  std::map<PartitionKey, Partition> partitions_;
  detail::RefTable<const StoredEvent> keys_{1024};  ///< the stored events' idempotency keys
  detail::RefTable<TradeNode> trade_index_{1024};      ///< trades by (partition, id)
  std::map<std::tuple<std::string, std::string, std::int32_t>, SourceOffset> sources_;
  // Scratch of do_commit_ (under the exclusive lock), kept for its capacity.
  std::vector<Partition*> targets_;
  std::vector<std::size_t> hashes_;
  std::vector<std::size_t> sorted_;
  std::vector<std::size_t> new_hashes_;    // the listed new trades' id hashes, in batch order
  std::vector<std::size_t> sorted_new_;    // one update's of them, sorted
  std::vector<std::string_view> new_ids_;  // one update's listed new trades, sorted
};

}  // namespace

std::shared_ptr<TradeStore> make_memory_store() { return std::make_shared<MemoryStore>(); }

}  // namespace tradecapture
