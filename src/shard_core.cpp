// The shard state machine (see shard_core.hpp for the protocol and the guarantees).
//
// A batch goes through numbered steps, one I/O action each:
//   1. pick ready partitions round robin until the batch is full;
//   2. renew leases running out, 3. acquire missing leases, 4. claim partitions without state
//      (the store increments their fence and returns their state: our fencing token);
//   5. take events in partition order while the key gate allows, look up their idempotency keys;
//   6. decide every event; 7. commit the batch (writes, check-only updates for partitions decided
//      without a write, keys found absent), then complete. A refused commit decides again on
//      fresh state; a failure past the retry budget fails the batch's partitions entirely.
// With overlap (ShardConfig::overlap), a first commit attempt goes out in the background: the
// batch moves to `flight` and the next batch runs steps 1-5 on other partitions meanwhile, then
// holds (Step::held) until the commit answers: decided on success, put back on failure (the
// failed batch is then the batch under way again, handled as above).
// The cached partition state is the durable state as of our claim: it is updated in place while
// deciding and dropped whenever a commit does not succeed.

#include "shard_core.hpp"
#include "op_state.hpp"

#include "key_gate.hpp"
#include "ring_queue.hpp"
#include <tradecapture/detail/log_limiter.hpp>
#include <tradecapture/detail/open_table.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <limits>
#include <map>
#include <memory>
#include <memory_resource>
#include <queue>

namespace tradecapture::detail {

// ------------------------------------------------------------------------------------------

void Counters::retry(const boost::system::error_code& ec) {
  retries.fetch_add(1, std::memory_order_relaxed);
  RetryCause cause = RetryCause::other;
  if (ec.category() == error_category()) {
    switch (static_cast<errc>(ec.value())) {
      case errc::deadlock: cause = RetryCause::deadlock; break;
      case errc::serialization_failure: cause = RetryCause::serialization; break;
      case errc::store_unavailable:
      case errc::lock_unavailable: cause = RetryCause::connection; break;
      case errc::fenced_off:
      case errc::lease_lost: cause = RetryCause::fenced_off; break;
      case errc::sequence_conflict:
      case errc::key_conflict: cause = RetryCause::conflict; break;
      case errc::store_busy:
      case errc::lock_busy: cause = RetryCause::busy; break;
      default: break;
    }
  }
  retries_by_cause[static_cast<std::size_t>(cause)].fetch_add(1, std::memory_order_relaxed);
}

void Counters::count(const boost::system::error_code& ec, const Outcome& o) {
  if (ec == errc::replayed) {
    replayed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (ec) {
    failed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  switch (o.kind) {
    case OutcomeKind::Accepted: accepted.fetch_add(1, std::memory_order_relaxed); break;
    case OutcomeKind::Duplicate: duplicate.fetch_add(1, std::memory_order_relaxed); break;
    case OutcomeKind::Stale: stale.fetch_add(1, std::memory_order_relaxed); break;
    case OutcomeKind::Rejected: rejected.fetch_add(1, std::memory_order_relaxed); break;
  }
}

result<std::vector<SourceOffset>> read_source_offsets(TradeStore& store,
                                                      std::span<const std::string> consumers) {
  std::vector<SourceOffset> out;
  for (const auto& c : consumers) {
    auto r = store.source_offsets(c);
    if (!r) return r.error();
    for (auto& row : r.value()) out.push_back(std::move(row));
  }
  return out;
}

std::uint64_t micros_between(Time a, Time b) {
  return static_cast<std::uint64_t>(std::max<std::int64_t>(
      0, std::chrono::duration_cast<std::chrono::microseconds>(b - a).count()));
}

// ------------------------------------------------------------------------------------------

struct ShardCore::Impl {
  /// One cached partition. What add() and the housekeeping walk over every cached partition
  /// read comes first, in the first cache line (a Slot starts one): the flags, the hash, the
  /// barrier, the last activity and the queue's size (RingQueue keeps it first).
  struct alignas(64) Slot {
    bool used = false;       // cached: in `slots` (a Slot of the pool's free list is not)
    bool ready = false;      // in ready_
    bool waiting = false;    // in waiting_ (lock backoff)
    bool in_flight = false;  // in the overlapped commit out (never picked meanwhile)
    bool leased = false;     // `lease` holds our grant
    std::size_t hash = 0;    // PartitionKeyHash of `key`, as in its entry of `slots`
    std::uint64_t barrier = 0;  // ops with a lower stamp fail on arrival (predecessor failed)
    Time last_active{};
    RingQueue<SubmitOp*> queue;  // in submission order (stamp)
    PartitionKey key;
    std::optional<PartitionState> state;  // as of our claim; state->fence is our token
    Grant lease;  // meaningful while `leased` only
    int lock_failures = 0;
    Time retry_at{};
    std::optional<Time> lock_trouble_since;  // first lock_busy/unavailable of the current wait
    std::optional<Time> lease_wanted;

    void hold(Grant g) {
      lease = std::move(g);
      leased = true;
    }
    void drop_lease() {
      leased = false;
      lease = Grant{};
    }
  };

  /// The Slots, in chunks that never move (ready, waiting, picked and Taken hold pointers), with
  /// a free list of evicted ones. The housekeeping walk goes through the chunks in memory order,
  /// which the hardware prefetcher follows (a hash table's nodes in table order it cannot).
  class SlotPool {
   public:
    static constexpr std::size_t kChunk = 256;

    /// A fresh Slot (default state, `used` still false).
    Slot* take() {
      if (!free_.empty()) {
        Slot* s = free_.back();
        free_.pop_back();
        return s;
      }
      if (chunks_.empty() || last_taken_ == kChunk) {
        chunks_.push_back(std::make_unique<Slot[]>(kChunk));
        last_taken_ = 0;
      }
      return &chunks_.back()[last_taken_++];
    }
    /// Takes back `s`, already reset to a fresh Slot.
    void give(Slot* s) { free_.push_back(s); }

    /// Calls `fn(Slot&)` for every used Slot, in memory order. `fn` may evict the Slot it is
    /// given (give it back), nothing else.
    template <class Fn>
    void for_each_used(Fn&& fn) {
      for (std::size_t c = 0; c < chunks_.size(); ++c) {
        Slot* chunk = chunks_[c].get();
        const std::size_t n = c + 1 == chunks_.size() ? last_taken_ : kChunk;
        for (std::size_t i = 0; i < n; ++i)
          if (chunk[i].used) fn(chunk[i]);
      }
    }
    template <class Fn>
    void for_each_used(Fn&& fn) const {
      const_cast<SlotPool*>(this)->for_each_used(
          [&](Slot& s) { fn(static_cast<const Slot&>(s)); });
    }

   private:
    std::vector<std::unique_ptr<Slot[]>> chunks_;
    std::size_t last_taken_ = 0;  // Slots of the last chunk handed out so far
    std::vector<Slot*> free_;
  };

  /// An entry of `slots`: a cached partition's hash and Slot (free: no Slot).
  using SlotRef = HashedRef<Slot>;

  // held: the batch's keys are looked up; it waits for the overlapped commit out to succeed
  // before it is decided (found_held).
  enum class Step { start, renew, acquire, claim, take, held, commit, verify, probe };

  /// The events of one source hook in the batch under way (SourceHook::before_commit).
  struct HookBatch {
    SourceHook* hook = nullptr;
    std::vector<SourceEvent> events;
  };

  struct Taken {
    Slot* slot;
    std::size_t first;  // index into ops
    std::size_t count;
  };

  struct DeadlineEntry {
    Time at;
    std::uint64_t stamp;
    PartitionKey key;
    bool operator>(const DeadlineEntry& o) const { return at > o.at; }
  };

  /// The fault-log kind of a store outage (fault_log's "store: " + the error's message), built
  /// once: a successful commit ends that episode, and must not build the string each time.
  const std::string kStoreUnavailable =
      "store: " + make_error_code(errc::store_unavailable).message();

  ShardConfig cfg;
  std::shared_ptr<const Processor> processor;
  Counters& counters;
  std::shared_ptr<spdlog::logger> log;
  std::mt19937_64 rng;
  LogLimiter limiter;
  std::uint64_t stamp_now = 0;

  /// The memory of the cached states' trades (PartitionState::trades): nodes come back here
  /// when a state is dropped and are reused, so deciding a NEW allocates nothing from the heap
  /// in steady state. Single-threaded, as the core is; declared before `slot_pool`, which it
  /// outlives.
  std::pmr::unsynchronized_pool_resource trade_pool;
  /// The buffers of the partitions' queues (Slot::queue): a queue that empties gives its buffer
  /// back, so a queue grows only when all the queues together need more than ever before, not
  /// at each new largest backlog of its own partition. Declared before `slot_pool` too.
  RingPool<SubmitOp*> queue_pool;
  /// The Slots of the cached partitions (and of evicted ones, for reuse); declared before
  /// `slots`, whose entries point into it.
  SlotPool slot_pool;
  /// The cached partitions by PartitionKeyHash (computed once per op: OpState::partition_hash),
  /// an entry matched by its Slot's key: the probe reads small entries, and one Slot.
  RefTable<Slot> slots;
  RingQueue<Slot*> ready;
  std::vector<Slot*> waiting;
  std::priority_queue<DeadlineEntry, std::vector<DeadlineEntry>, std::greater<>> deadlines;
  std::vector<Completion> completions;
  Time last_housekeeping{};
  std::size_t n_active = 0, n_leases = 0;

  // The batch under way.
  Step step = Step::start;
  bool awaiting = false;        // an I/O action is out; its result has not been fed yet
  bool aborting = false;        // abort_all: end the batch at the next result, no retry
  boost::system::error_code abort_ec;
  /// A batch's parts: what it picked, took and decided, and its commit. The batch under way
  /// (`cur`) and the overlapped commit out (`Flight::parts`) have one each; launch_flight and
  /// recover_flight swap them, and one success path (commit_succeeded, complete_parts) serves
  /// both.
  struct BatchParts {
    std::vector<Slot*> picked;
    std::vector<Taken> taken;
    std::vector<SubmitOp*> ops;
    std::vector<Outcome> outcomes;
    std::vector<boost::system::error_code> ends;  // set: completes without an outcome
    std::vector<HookBatch> hook_batches;
    /// The commit: shared with the commit action (the shell, or a simulated server that
    /// outlives a crashed host, may still hold it), never copied.
    std::shared_ptr<CommitBatch> batch = std::make_shared<CommitBatch>();
    Time commit_started{};

    /// Swaps every part: both sides keep their vectors' capacity.
    void swap(BatchParts& o) noexcept {
      picked.swap(o.picked);
      taken.swap(o.taken);
      ops.swap(o.ops);
      outcomes.swap(o.outcomes);
      ends.swap(o.ends);
      hook_batches.swap(o.hook_batches);
      batch.swap(o.batch);
      std::swap(commit_started, o.commit_started);
    }
  };
  BatchParts cur;
  // The parts of the batch under way by their short names, as the steps use them.
  std::vector<Slot*>& picked = cur.picked;
  std::vector<Taken>& taken = cur.taken;
  std::vector<SubmitOp*>& ops = cur.ops;
  std::vector<Outcome>& outcomes = cur.outcomes;
  std::vector<boost::system::error_code>& ends = cur.ends;
  std::vector<HookBatch>& hook_batches = cur.hook_batches;
  std::shared_ptr<CommitBatch>& batch = cur.batch;
  Time& commit_started = cur.commit_started;
  using TradeNode = std::pair<const std::string, TradeRecord>;
  /// A trade a partition's accepted event wrote, and whether the state held it before.
  struct Changed {
    const TradeNode* node;
    bool created;
  };
  std::vector<Changed> changed;  // decide: the trades a partition's accepted events wrote
  const TradeNode* last_trade = nullptr;  // decide_one: the trade its ACCEPTED outcome wrote
  bool last_trade_new = false;            // decide_one: and that trade was not in the state
  /// decide: the keys written by ops taken behind an earlier op of their key (take).
  std::vector<IdempotencyKey> written_behind;
  std::vector<PartitionKey> need;  // of the acquire/claim under way
  std::vector<Grant> renewing;     // of the renew under way
  /// Emptied partition updates of earlier batches (empty_out), by the capacity of their events
  /// vector: spare_updates[k] holds those whose capacity has bit width k (take_update).
  std::array<std::vector<PartitionUpdate>, 24> spare_updates;
  /// The keys of the last find or verify action (Action::idem_keys), refilled in place.
  std::shared_ptr<std::vector<IdempotencyKey>> lookup_keys;
  /// The result of the last key lookup, emptied: its capacity for the next (take_found_buffer).
  std::vector<std::optional<StoredEvent>> found_spare;
  bool uncertain = false;       // a commit attempt failed in a way that may have applied it
  int attempt = 0;              // attempts of the store call under way
  std::optional<Time> failing_since;  // first retryable failure of this batch
  std::optional<Time> store_outage_since;  // a batch was abandoned in this store outage
  std::optional<Time> last_store_failure;  // the latest retryable store failure
  bool retry_pending = false;
  Time retry_at{};
  // Measured (moving averages), to form the next batch as late as the commit out allows: its
  // store's commit time, and the time from picking a batch to having its keys looked up.
  std::chrono::microseconds est_commit{0}, est_lookup{0};
  Time lookup_started{};

  /// Adds the duration from `from` to `to` to the moving average `est` (1/8 weight); a negative
  /// or absurd one (a clock step) is ignored.
  static void measure(std::chrono::microseconds& est, Time from, Time to) {
    if (to < from || to - from > std::chrono::seconds(10)) return;
    const auto d = std::chrono::duration_cast<std::chrono::microseconds>(to - from);
    est = est.count() == 0 ? d : (est * 7 + d) / 8;
  }

  /// The batch of the overlapped commit out (Action::overlapped): what `end_batch` would clear,
  /// moved here when its commit went out, so that the next batch can form meanwhile.
  struct Flight {
    bool out = false;
    std::optional<result<void>> failed;  // its failure, kept until the next batch is put back
    BatchParts parts;  // swapped with `cur` (launch_flight, recover_flight)
  };
  Flight flight;
  std::vector<std::optional<StoredEvent>> found_held;  // Step::held: the lookup's result
  std::vector<std::size_t> looked_up;  // the ops (indexes into ops) whose keys are looked up
  std::vector<std::optional<StoredEvent>> found_all;  // the stored event of each op's key
  std::shared_ptr<CommitBatch> spare_batch;  // an emptied batch to reuse (see launch_flight)
  std::vector<DeadlineEntry> deferred_deadlines;  // of partitions in the flight (expire_deadlines)

  Impl(ShardConfig c, std::shared_ptr<const Processor> p, Counters& k,
       std::shared_ptr<spdlog::logger> l)
      : cfg(std::move(c)),
        processor(std::move(p)),
        counters(k),
        log(l ? std::move(l) : spdlog::default_logger()),
        rng(cfg.seed) {
    if (cfg.max_batch == 0) cfg.max_batch = 1;
    if (cfg.max_batch_per_partition == 0) cfg.max_batch_per_partition = 1;
  }

  // ---- helpers ------------------------------------------------------------------------------

  std::chrono::milliseconds backoff(int attempt_no) {
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    return cfg.retry.backoff(std::max(attempt_no, 1), unit(rng));
  }

  /// The cached Slot of `key`, whose PartitionKeyHash is `hash`, or null.
  Slot* find_slot(const PartitionKey& key, std::size_t hash) {
    SlotRef* r = slots.find(
        hash, [&](const SlotRef& e) { return e.hash == hash && e.ref->key == key; });
    return r != nullptr ? r->ref : nullptr;
  }
  Slot* find_slot(const PartitionKey& key) { return find_slot(key, PartitionKeyHash{}(key)); }

  /// The Slot of `key` (PartitionKeyHash `hash`), cached now if it was not.
  Slot& slot_for(const PartitionKey& key, std::size_t hash) {
    const auto match = [&](const SlotRef& e) { return e.hash == hash && e.ref->key == key; };
    const auto make = [&] {
      Slot* s = slot_pool.take();
      s->used = true;
      s->hash = hash;
      s->key = key;
      s->queue.use_pool(&queue_pool);
      return SlotRef{hash, s};
    };
    return *slots.find_or_insert(hash, match, make).first->ref;
  }

  /// Drops `s` from the cache: its entry leaves `slots`, its queue's buffer goes back to
  /// queue_pool, and the Slot, reset to a fresh one (no state, grant or barrier), to the pool.
  void evict_slot(Slot& s) {
    SlotRef* r = slots.find(s.hash, [&](const SlotRef& e) { return e.ref == &s; });
    if (r != nullptr) slots.erase(r);
    s.queue.release();
    s = Slot{};
    slot_pool.give(&s);
  }

  void make_ready(Slot& s) {
    if (!s.ready && !s.waiting && !s.queue.empty()) {
      s.ready = true;
      ready.push_back(&s);
    }
  }

  /// `in` with its trades copied into a map on trade_pool (a state loaded by the store has
  /// them on the default resource). Once per claim of a partition.
  PartitionState in_trade_pool(PartitionState&& in) {
    if (in.trades.get_allocator().resource() == &trade_pool) return std::move(in);
    PartitionState out{in.position, in.seq, in.fence,
                       std::pmr::unordered_map<std::string, TradeRecord>(&trade_pool),
                       std::move(in.source_marks)};
    out.trades.reserve(in.trades.size());
    for (auto& [id, record] : in.trades) out.trades.emplace(id, record);
    return out;
  }

  /// An empty batch to build, not shared with a commit action still held elsewhere. The
  /// partition updates of the last batch, emptied, are kept with their vectors' capacity for
  /// the next one (spare_updates), so a batch allocates nothing per partition.
  void fresh_batch() {
    if (batch.use_count() == 1) {
      empty_out(*batch);
    } else if (spare_batch) {
      batch = std::move(spare_batch);
    } else {
      batch = std::make_shared<CommitBatch>();
    }
  }

  /// Keeps an emptied batch (and its partition updates' vectors) for reuse, unless someone
  /// else still holds it.
  void recycle(std::shared_ptr<CommitBatch>& b) {
    if (!b) return;
    if (b.use_count() == 1) {
      empty_out(*b);
      if (!spare_batch) spare_batch = std::move(b);
    }
    b.reset();
  }

  /// Empties `b`; its partition updates, emptied, go to spare_updates by size.
  void empty_out(CommitBatch& b) {
    for (PartitionUpdate& u : b.partitions) {
      u.trades.clear();
      u.events.clear();
      u.marks.clear();
      const std::size_t k = std::min<std::size_t>(std::bit_width(u.events.capacity()),
                                                  spare_updates.size() - 1);
      spare_updates[k].push_back(std::move(u));
    }
    b.partitions.clear();
    b.sources.clear();
    b.absent_keys.clear();
  }

  /// The keys of a lookup action to fill, `n` of them: the core's own vector when no action
  /// holds it any more (its strings keep their capacity), else a new one.
  std::vector<IdempotencyKey>& fresh_keys(std::size_t n) {
    if (!lookup_keys || lookup_keys.use_count() != 1)
      lookup_keys = std::make_shared<std::vector<IdempotencyKey>>();
    lookup_keys->resize(n);
    return *lookup_keys;
  }

  /// An update to fill for `events` events: empty vectors, fields reset. The smallest spare
  /// whose events vector holds them, else the largest smaller one (the caller grows it), else
  /// a new one. By size, because the spares of the last batch do not fit the partitions of
  /// the next: taken in any order, almost every partition of every batch grew its vectors.
  PartitionUpdate take_update(std::size_t events) {
    PartitionUpdate u;
    const std::size_t first = std::min<std::size_t>(std::bit_width(events),
                                                    spare_updates.size() - 1);
    bool found = false;
    for (std::size_t k = first; k < spare_updates.size() && !found; ++k) {
      auto& spares = spare_updates[k];
      if (!spares.empty() && spares.back().events.capacity() >= events) {
        u = std::move(spares.back());
        spares.pop_back();
        found = true;
      }
    }
    for (std::size_t k = first + 1; k-- > 0 && !found;) {
      auto& spares = spare_updates[k];
      if (!spares.empty()) {
        u = std::move(spares.back());
        spares.pop_back();
        found = true;
      }
    }
    u.fence = u.expected_seq = u.new_seq = 0;
    u.new_trades = 0;
    u.position = Position{};
    return u;
  }

  void complete(SubmitOp* op, boost::system::error_code ec) {
    completions.push_back(Completion{op, ec, Outcome{}});
  }
  void complete(SubmitOp* op, boost::system::error_code ec, Outcome&& o) {
    completions.push_back(Completion{op, ec, std::move(o)});
  }

  /// Logs a fault line, at most once per episode interval per kind.
  template <class... Args>
  void fault_log(const std::string& kind, Time now, spdlog::format_string_t<Args...> fmt,
                 Args&&... args) {
    fault_log_at(spdlog::level::warn, kind, now, fmt, std::forward<Args>(args)...);
  }
  template <class... Args>
  void fault_log_at(spdlog::level::level_enum level, const std::string& kind, Time now,
                    spdlog::format_string_t<Args...> fmt, Args&&... args) {
    std::uint64_t suppressed = 0, count = 0;
    if (!limiter.occur(kind, now, suppressed, count)) return;
    std::string text = fmt::format(fmt, std::forward<Args>(args)...);
    if (count == 1) {
      log->log(level, "{}", text);
    } else {
      log->log(level, "{} ({} times since the episode began, {} similar lines suppressed)", text,
               count, suppressed);
    }
  }

  void recovered(const std::string& kind, Time now) {
    std::uint64_t count = 0;
    Time since{};
    if (limiter.recover(kind, count, since) && count > 1)
      log->info("{}: recovered after {} failures over {} ms", kind, count,
                std::chrono::duration_cast<std::chrono::milliseconds>(now - since).count());
  }

  /// Ends every queued op of `s` without an outcome: the first with `first_ec`, the others with
  /// predecessor_failed; ops still on their way here (stamp below the barrier) fail on arrival.
  void fail_partition(Slot& s, boost::system::error_code first_ec, bool first_gets_ec = true) {
    bool first = first_gets_ec;
    while (!s.queue.empty()) {
      SubmitOp* op = s.queue.front();
      s.queue.pop_front();
      complete(op, first ? first_ec : make_error_code(errc::predecessor_failed));
      first = false;
    }
    if (cfg.mutation != Mutation::no_failure_barrier) raise_barrier(s);
    s.state.reset();
  }

  void back_off(Slot& s, Time now) {
    ++s.lock_failures;
    s.retry_at = now + backoff(s.lock_failures);
    if (!s.waiting) {
      s.waiting = true;
      waiting.push_back(&s);
    }
  }

  void end_batch() {
    step = Step::start;
    picked.clear();
    taken.clear();
    ops.clear();
    outcomes.clear();
    ends.clear();
    hook_batches.clear();
    need.clear();
    renewing.clear();
    fresh_batch();
    uncertain = false;
    attempt = 0;
    failing_since.reset();
    retry_pending = false;
    found_held.clear();
  }

  // ---- arrival, deadlines --------------------------------------------------------------------

  void add(SubmitOp* op, Time now) {
    OpState& os = state_of(op);
    if (os.partition_hash == 0) os.partition_hash = PartitionKeyHash{}(op->event.partition);
    Slot& s = slot_for(op->event.partition, os.partition_hash);
    if (state_of(op).stamp < s.barrier) {
      complete(op, errc::predecessor_failed);
      return;
    }
    s.queue.push_back(op);
    s.last_active = now;
    if (op->deadline != Time::max() && cfg.mutation != Mutation::ignore_deadlines)
      deadlines.push(DeadlineEntry{op->deadline, state_of(op).stamp, s.key});
    make_ready(s);
  }

  /// Withdraws queued ops whose deadline passed, with every other undecided op of their partition.
  void expire_deadlines(Time now) {
    while (!deadlines.empty() && deadlines.top().at <= now) {
      DeadlineEntry e = deadlines.top();
      deadlines.pop();
      Slot* found = find_slot(e.key);
      if (found == nullptr) continue;
      Slot& s = *found;
      if (s.in_flight) {
        // Not before the events in front of it are decided: they are in the commit out. The
        // entry comes back when that commit ended (end_flight).
        deferred_deadlines.push_back(std::move(e));
        continue;
      }
      auto pos = std::find_if(s.queue.begin(), s.queue.end(),
                              [&](SubmitOp* op) { return state_of(op).stamp == e.stamp; });
      if (pos == s.queue.end()) continue;  // decided, failed or in the batch under way
      withdraw(s, now);
    }
  }

  /// An op of `s` passed its deadline: the partition never moves past it (spec 6.2), so every
  /// undecided op of `s` ends without an outcome: deadline_exceeded for those past their own
  /// deadline, predecessor_failed for the others (in front of it or behind).
  void withdraw(Slot& s, Time now) {
    RingQueue<SubmitOp*> all;
    all.swap(s.queue);
    for (SubmitOp* op : all)
      complete(op, op->deadline <= now ? errc::deadline_exceeded : errc::predecessor_failed);
    raise_barrier(s);
    s.state.reset();
  }

  /// Ops of `s` submitted before now (or, with sticky failures, ever) fail on arrival.
  void raise_barrier(Slot& s) {
    s.barrier = cfg.sticky_failures ? std::numeric_limits<std::uint64_t>::max()
                                    : std::max(s.barrier, stamp_now);
  }

  // ---- housekeeping --------------------------------------------------------------------------

  /// Releases leases of partitions idle for a quarter lease and evicts idle state over the cache
  /// limit. Returns the grants to release.
  ///
  /// It walks every cached partition, so it runs at most every lease/32 (100 ms to 1 s): at the
  /// old fixed 100 ms it took 14% of a replay's CPU over 250,000 partitions (BENCHMARKS.md, issue
  /// #12, session 8). The walk reads the first cache line of each Slot, in the pool's memory
  /// order (the hash table's node order cost a few cache misses per partition). An idle lease is
  /// released within a quarter lease plus one period.
  std::vector<Grant> housekeeping(Time now) {
    std::vector<Grant> release;
    const auto period = std::clamp<std::chrono::milliseconds>(
        std::chrono::duration_cast<std::chrono::milliseconds>(cfg.lease / 32),
        std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
    if (now - last_housekeeping < period && now >= last_housekeeping) return release;
    last_housekeeping = now;
    const auto idle_after = cfg.lease / 4;
    const bool evict = slots.size() > cfg.max_cached_partitions;
    n_active = 0;
    n_leases = 0;
    slot_pool.for_each_used([&](Slot& s) {
      const bool quiet = s.queue.empty() && !s.ready && !s.waiting && !s.in_flight;
      if (!quiet) ++n_active;
      if (quiet && s.leased && (now - s.last_active > idle_after || now < s.last_active)) {
        release.push_back(std::move(s.lease));
        s.drop_lease();
        s.state.reset();
      }
      // A barrier only has to outlive the next absorb of the shell's inbox, which comes first.
      if (quiet && evict && !s.leased && !(cfg.sticky_failures && s.barrier != 0)) {
        evict_slot(s);
        return;
      }
      if (s.leased) ++n_leases;
    });
    return release;
  }

  /// The earliest time something is due without new input, or max().
  Time next_due() const {
    Time t = Time::max();
    for (const Slot* s : waiting) t = std::min(t, s->retry_at);
    if (!deadlines.empty()) t = std::min(t, deadlines.top().at);
    if (n_leases > 0) t = std::min(t, last_housekeeping + cfg.lease / 8);
    return t;
  }

  // ---- the steps -----------------------------------------------------------------------------

  Action next(Time now) {
    if (awaiting) return Action{};  // misuse: an action is still out
    for (;;) {
      if (retry_pending) {
        if (now < retry_at) {
          Action a;
          a.kind = Action::Kind::wait;
          a.until = retry_at;
          return a;
        }
        retry_pending = false;
      }
      switch (step) {
        case Step::start: {
          if (cfg.mutation != Mutation::ignore_deadlines) expire_deadlines(now);
          // Partitions whose lock backoff is over.
          std::erase_if(waiting, [&](Slot* s) {
            if (s->retry_at <= now) {
              s->waiting = false;
              make_ready(*s);
              return true;
            }
            return false;
          });
          auto release = housekeeping(now);
          if (!release.empty()) {
            Action a;
            a.kind = Action::Kind::release;
            a.grants = std::move(release);
            return a;  // no result: next() goes on from here
          }
          if (flight.out && now >= flight.parts.commit_started) {
            // The next batch forms while the commit out runs, but as late as it can: what
            // arrives meanwhile goes into it. Its lookups should end when that commit does
            // (measured), so it is picked then; early, it would hold only what came first.
            const Time form_at = flight.parts.commit_started + (est_commit - est_lookup);
            if (now < form_at) {
              Action a;
              a.kind = Action::Kind::wait;
              a.until = std::min(form_at, next_due());
              return a;
            }
          }
          pick(now);
          if (!picked.empty()) lookup_started = now;
          if (picked.empty()) {
            Action a;
            const Time due = next_due();
            if (due == Time::max()) return a;  // idle
            a.kind = Action::Kind::wait;
            a.until = due;
            return a;
          }
          step = Step::renew;
          continue;
        }
        case Step::renew: {
          step = Step::acquire;
          renewing.clear();
          for (Slot* s : picked)
            if (s->leased && s->lease.expires - now < cfg.lease / 2) renewing.push_back(s->lease);
          if (renewing.empty()) continue;
          Action a;
          a.kind = Action::Kind::renew;
          a.grants = renewing;
          awaiting = true;
          return a;
        }
        case Step::acquire: {
          step = Step::claim;
          need.clear();
          for (Slot* s : picked) {
            if (s->leased) continue;
            if (!s->lease_wanted) s->lease_wanted = now;
            need.push_back(s->key);
          }
          if (need.empty()) continue;
          Action a;
          a.kind = Action::Kind::acquire;
          a.keys = need;
          awaiting = true;
          return a;
        }
        case Step::claim: {
          if (attempt == 0) {
            std::erase_if(picked, [](Slot* s) { return !s->leased || s->queue.empty(); });
            if (picked.empty()) {
              end_batch();
              continue;
            }
            need.clear();
            for (Slot* s : picked)
              if (!s->state) need.push_back(s->key);
            std::sort(need.begin(), need.end());
          }
          if (need.empty()) {
            step = Step::take;
            continue;
          }
          Action a;
          a.kind = cfg.mutation == Mutation::lock_fences ? Action::Kind::load : Action::Kind::claim;
          a.keys = need;
          awaiting = true;
          return a;
        }
        case Step::take: {
          take(now);
          if (ops.empty()) {
            end_batch();
            continue;
          }
          select_lookups();
          if (looked_up.empty()) {
            // No key of the batch can be stored: decided at once, without a lookup.
            found_all.assign(ops.size(), std::nullopt);
            keys_found(now);
            continue;
          }
          Action a;
          a.kind = Action::Kind::find;
          auto& keys = fresh_keys(looked_up.size());
          for (std::size_t k = 0; k < looked_up.size(); ++k) {
            const TradeEvent& e = ops[looked_up[k]]->event;
            keys[k].trade_id = e.trade_id;  // assigned: reuses the string's memory
            keys[k].version = e.version;
          }
          a.idem_keys = lookup_keys;
          awaiting = true;
          return a;
        }
        case Step::commit: {
          if (cfg.mutation != Mutation::ignore_deadlines && withdraw_expired_in_batch(now)) {
            continue;  // the batch was given up; start over
          }
          Action a;
          a.kind = Action::Kind::commit;
          a.batch = batch;  // shared, not copied
          commit_started = now;
          if (cfg.overlap && attempt == 0 && !uncertain && !aborting && !flight.out) {
            a.overlapped = true;
            launch_flight();
            return a;
          }
          awaiting = true;
          return a;
        }
        case Step::held:
          return Action{};  // idle until the commit out answers (on_committed)
        case Step::probe: {
          Action a;
          a.kind = Action::Kind::sources;
          for (const auto& row : batch->sources) a.consumers.push_back(row.consumer);
          std::sort(a.consumers.begin(), a.consumers.end());
          a.consumers.erase(std::unique(a.consumers.begin(), a.consumers.end()),
                            a.consumers.end());
          awaiting = true;
          return a;
        }
        case Step::verify: {
          Action a;
          a.kind = Action::Kind::verify;
          auto& keys = fresh_keys(0);
          for (const auto& p : batch->partitions)
            for (const auto& e : p.events)
              keys.push_back(IdempotencyKey{e.event.trade_id, e.event.version});
          a.idem_keys = lookup_keys;
          awaiting = true;
          return a;
        }
      }
    }
  }

  void pick(Time now) {
    picked.clear();
    std::size_t budget = cfg.max_batch;
    for (std::size_t n = ready.size(); n > 0 && budget > 0; --n) {
      Slot* s = ready.front();
      ready.pop_front();
      s->ready = false;
      // A partition of the commit out waits for it (made ready again when it ends).
      if (s->queue.empty() || s->in_flight) continue;
      picked.push_back(s);
      s->last_active = now;
      budget -= std::min({s->queue.size(), cfg.max_batch_per_partition, budget});
    }
  }

  void take(Time now) {
    ops.clear();
    taken.clear();
    for (Slot* s : picked) {
      if (!s->state || !s->leased) continue;
      Taken t{s, ops.size(), 0};
      while (!s->queue.empty() && t.count < cfg.max_batch_per_partition) {
        SubmitOp* op = s->queue.front();
        // Behind an earlier op of its key. When every such op is of this partition (a re-send),
        // each one is ahead of it in this queue (a partition's queue keeps the gate's order),
        // so it is decided (or completed) by now: taken into this batch, where `decide` reads
        // it, or done. Otherwise it waits until woken by the key's earlier op completing. So
        // does an event of a source: its source check reads the marks as of the batch's start,
        // and a copy of a message decided earlier in the same batch would pass it.
        const bool behind = !KeyGate::may_take(op);
        if (behind && (!state_of(op).gate_local || op->source.hook != nullptr)) break;
        state_of(op).taken_behind = behind;
        s->queue.pop_front();
        ops.push_back(op);
        ++t.count;
      }
      if (t.count > 0) taken.push_back(t);
      // Still has work that is not blocked on a key: back to the end of the line.
      if (!s->queue.empty() && t.count == cfg.max_batch_per_partition) make_ready(*s);
      s->queue.release();  // emptied: its buffer serves the next queue that fills
      s->last_active = now;
    }
  }

  /// Step 6: decide every taken op on the claimed state and build the commit batch.
  void decide(const std::vector<std::optional<StoredEvent>>& found) {
    outcomes.assign(ops.size(), Outcome{});
    ends.assign(ops.size(), {});
    hook_batches.clear();
    written_behind.clear();
    fresh_batch();
    // The updates in partition order (the store's row order), built in that order: `taken` is
    // sorted instead of the updates (each Taken keeps its own range of `ops`).
    std::sort(taken.begin(), taken.end(),
              [](const Taken& a, const Taken& b) { return a.slot->key < b.slot->key; });
    batch->partitions.reserve(taken.size());
    std::map<std::string, std::int64_t, std::less<>> marks;  // moved by this partition's events
    for (const Taken& t : taken) {
      PartitionState& st = *t.slot->state;
      PartitionUpdate up = take_update(t.count);
      up.partition = t.slot->key;
      up.fence = st.fence;
      up.expected_seq = st.seq;
      // Twice the power of two that fits: the spares settle at sizes that serve the next
      // batches (take_update picks by size) instead of growing at each new largest one. The
      // trades (at most one per event) get as much, so that they never grow on their own.
      if (up.events.capacity() < t.count) up.events.reserve(2 * std::bit_ceil(t.count));
      if (up.trades.capacity() < up.events.capacity()) up.trades.reserve(up.events.capacity());
      changed.clear();
      marks.clear();
      for (std::size_t i = t.first; i < t.first + t.count; ++i) {
        SubmitOp* op = ops[i];
        const TradeEvent& e = op->event;
        std::string mark_id;
        if (op->source.hook != nullptr) {
          // The source first: a stream it lost, or an event decided before a restart.
          mark_id = op->source.hook->mark_id(op->source.stream);
          std::optional<std::int64_t> mark;
          if (auto m = st.source_marks.find(mark_id); m != st.source_marks.end()) mark = m->second;
          const SourceVerdict v =
              op->source.hook->check(op->source.stream, op->source.position, mark);
          if (v == SourceVerdict::abandoned) {
            ends[i] = errc::source_abandoned;
            continue;
          }
          if (v == SourceVerdict::replayed &&
              (cfg.mutation != Mutation::redecide_stored || !found[i])) {
            // Decided, and reported, before: whatever its outcome was, it is not decided (nor
            // reported) again; decided now it could differ (an AMEND rejected before its NEW;
            // a DUPLICATE of a key that a later event of the stream has since stored).
            ends[i] = errc::replayed;
            source_event(*op, false);
            continue;
          }
        }
        // A re-send taken behind an earlier op of its key (take): that op is earlier in this
        // partition's range, and if it was ACCEPTED, it is the key's prior event.
        const TradeEvent* prior = found[i] ? &found[i]->event : nullptr;
        const bool prior_here = prior == nullptr && state_of(op).taken_behind &&
                                cfg.mutation != Mutation::batch_blind_keys &&
                                (prior = accepted_here(t.first, i)) != nullptr;
        outcomes[i] = decide_one(e, st, prior);
        const bool written = outcomes[i].kind == OutcomeKind::Accepted;
        if (op->source.hook != nullptr &&
            (written || cfg.mutation != Mutation::accepted_marks)) {
          // Every decided event moves its stream's mark, whatever its outcome: a re-read then
          // never decides (nor reports) again what was reported once, even an outcome that
          // wrote nothing (an AMEND rejected before its NEW that another writer then stored).
          auto [m, fresh] = marks.try_emplace(std::move(mark_id), op->source.position);
          if (!fresh) m->second = std::max(m->second, op->source.position);
        }
        if (written) {
          up.events.emplace_back(e, outcomes[i].seq);
          changed.push_back(Changed{last_trade, last_trade_new});
          // An earlier op of its key in this batch found it absent and wrote nothing: that key
          // is not absent from this commit (the insert itself checks that it is new).
          if (state_of(op).taken_behind)
            written_behind.push_back(IdempotencyKey{e.trade_id, e.version});
        } else if (!found[i] && !prior_here) {
          // Absent when looked up, and still absent when this commits (a prior here is written
          // by this very commit).
          batch->absent_keys.push_back(IdempotencyKey{e.trade_id, e.version});
        }
        if (op->source.hook != nullptr) source_event(*op, written);
      }
      for (const auto& [id, position] : marks) {
        // Sorted by id (std::map); the cached state follows the store's.
        up.marks.push_back(SourceMark{id, position});
        st.source_marks.insert_or_assign(id, position);
      }
      up.new_seq = st.seq;
      up.position = st.position;
      if (up.events.empty()) {
        // Check-only: the partition must still be as we read it when the batch commits; with
        // marks, a write of the marks alone, on the same conditions.
        if (cfg.mutation != Mutation::unvalidated_noop || !up.marks.empty())
          batch->partitions.push_back(std::move(up));
        continue;
      }
      // The final state of every trade the batch changed, once each, by id: the map nodes that
      // decide_one wrote (stable addresses), sorted by id and deduplicated. Those the state did
      // not hold before this batch come first (PartitionUpdate::new_trades): the state is the
      // store's as of the claim and the commits since, which the commit checks (expected_seq),
      // so a store may insert them without looking for a stored row.
      std::sort(changed.begin(), changed.end(), [](const Changed& a, const Changed& b) {
        return a.node->first < b.node->first;
      });
      // One entry per trade (its node: the map's, one per id), created if its first write in
      // this batch created it.
      std::size_t kept = 0;
      for (std::size_t i = 0; i < changed.size(); ++i) {
        if (kept != 0 && changed[kept - 1].node == changed[i].node) {
          changed[kept - 1].created = changed[kept - 1].created || changed[i].created;
        } else {
          changed[kept++] = changed[i];
        }
      }
      changed.resize(kept);
      if (cfg.mutation == Mutation::all_trades_new)
        for (Changed& c : changed) c.created = true;
      if (up.trades.capacity() < changed.size())
        up.trades.reserve(2 * std::bit_ceil(changed.size()));
      for (const Changed& c : changed)
        if (c.created) up.trades.emplace_back(c.node->first, c.node->second);
      up.new_trades = up.trades.size();
      for (const Changed& c : changed)
        if (!c.created) up.trades.emplace_back(c.node->first, c.node->second);
      batch->partitions.push_back(std::move(up));
    }
    if (cfg.mutation == Mutation::unvalidated_noop) batch->absent_keys.clear();
    std::sort(batch->absent_keys.begin(), batch->absent_keys.end());
    batch->absent_keys.erase(std::unique(batch->absent_keys.begin(), batch->absent_keys.end()),
                            batch->absent_keys.end());
    if (!written_behind.empty()) {
      std::sort(written_behind.begin(), written_behind.end());
      std::erase_if(batch->absent_keys, [&](const IdempotencyKey& k) {
        return std::binary_search(written_behind.begin(), written_behind.end(), k);
      });
    }
    for (auto& hb : hook_batches) hb.hook->before_commit(hb.events, *batch);
  }

  /// Records an event of a source that the batch completes (for its hook's calls).
  void source_event(const SubmitOp& op, bool written) {
    auto hb = std::find_if(hook_batches.begin(), hook_batches.end(),
                           [&](const HookBatch& h) { return h.hook == op.source.hook; });
    if (hb == hook_batches.end()) hb = hook_batches.insert(hb, HookBatch{op.source.hook, {}});
    hb->events.push_back(SourceEvent{op.source.stream, op.source.position, written});
  }

  /// Tells every source of the batch how its commit attempt went.
  void after_commit(const boost::system::error_code& ec, std::span<const SourceOffset> stale) {
    for (auto& hb : hook_batches) hb.hook->after_commit(hb.events, ec, stale);
  }

  /// The event of `ops[i]`'s key that this batch accepted before it, among `ops[first, i)` (the
  /// op's partition's range), or null.
  const TradeEvent* accepted_here(std::size_t first, std::size_t i) const {
    const TradeEvent& e = ops[i]->event;
    for (std::size_t j = i; j-- > first;) {
      const TradeEvent& x = ops[j]->event;
      if (outcomes[j].kind == OutcomeKind::Accepted && x.version == e.version &&
          x.trade_id == e.trade_id)
        return &x;
    }
    return nullptr;
  }

  /// The idempotency check (spec section 2), then the processor (section 3). `prior` is the
  /// event that holds the same key, if any: durable, or accepted earlier in this batch.
  Outcome decide_one(const TradeEvent& e, PartitionState& st, const TradeEvent* prior) {
    if (prior) {
      if (prior->same_content(e)) return Outcome::duplicate();
      return Outcome::rejected("conflict: trade " + e.trade_id + " version " +
                               std::to_string(e.version) +
                               " was accepted before with different content");
    }
    Decision d;
    try {
      d = processor->decide(e, st);
    } catch (const std::exception& ex) {
      log->error("processor threw on trade {} version {}: {}", e.trade_id, e.version, ex.what());
      return Outcome::rejected(std::string("processor error: ") + ex.what());
    } catch (...) {
      log->error("processor threw on trade {} version {}", e.trade_id, e.version);
      return Outcome::rejected("processor error: unknown exception");
    }
    if (d.outcome.kind != OutcomeKind::Accepted) return std::move(d.outcome);
    st.position = d.position;
    auto [node, fresh] = st.trades.insert_or_assign(e.trade_id, d.record);
    last_trade = &*node;
    last_trade_new = fresh;
    return Outcome::accepted(++st.seq);
  }

  /// Before a commit attempt: when an op of the batch is past its deadline, the batch is given
  /// up. Partitions with an expired op are withdrawn entirely (see `withdraw`); the others go
  /// back to their queues and are decided again on fresh state.
  bool withdraw_expired_in_batch(Time now) {
    bool any = false;
    for (SubmitOp* op : ops)
      if (op->deadline <= now) any = true;
    if (!any) return false;
    for (auto t = taken.rbegin(); t != taken.rend(); ++t) {
      Slot& s = *t->slot;
      s.state.reset();
      bool expired = false;
      for (std::size_t i = t->first; i < t->first + t->count; ++i)
        if (ops[i]->deadline <= now) expired = true;
      for (std::size_t i = t->first + t->count; i-- > t->first;) s.queue.push_front(ops[i]);
      if (expired) withdraw(s, now);
      make_ready(s);
    }
    end_batch();
    return true;
  }

  // ---- results -------------------------------------------------------------------------------

  void on_renewed(std::vector<Grant> renewed, result<std::vector<result<void>>> r, Time now) {
    awaiting = false;
    for (std::size_t i = 0; i < renewed.size(); ++i) {
      Slot* found = find_slot(renewed[i].partition);
      if (found == nullptr) continue;
      Slot& s = *found;
      if (r && i < r.value().size() && r.value()[i]) {
        s.hold(renewed[i]);
        continue;
      }
      // Lost (or cannot tell): stop using it; re-acquire, claim again.
      counters.lease_losses.fetch_add(1, std::memory_order_relaxed);
      fault_log("lease lost", now, "lease lost on {}: {}", s.key.to_string(),
                !r ? r.error().message()
                   : i < r.value().size() ? r.value()[i].error().message() : "no answer");
      s.drop_lease();
      s.state.reset();
      s.lease_wanted = now;
    }
    if (aborting) abort_batch();
  }

  void on_acquired(result<std::vector<result<Grant>>> r, Time now) {
    awaiting = false;
    if (r) recovered("lock service unavailable", now);
    for (std::size_t i = 0; i < need.size(); ++i) {
      Slot* found = find_slot(need[i]);
      if (found == nullptr) continue;
      Slot& s = *found;
      if (r && i < r.value().size() && r.value()[i]) {
        s.hold(std::move(r.value()[i]).value());
        s.state.reset();  // a new holder claims the partition and reads its state again
        s.lock_failures = 0;
        s.lock_trouble_since.reset();
        counters.lock_grants.fetch_add(1, std::memory_order_relaxed);
        if (limiter.open("no lease")) recovered("no lease", now);
        counters.lock_wait_us.record(micros_between(s.lease_wanted.value_or(now), now));
        s.lease_wanted.reset();
        continue;
      }
      const boost::system::error_code ec =
          !r ? r.error()
             : i < r.value().size() ? r.value()[i].error() : make_error_code(errc::lock_unavailable);
      // The clock went back: start the budget again (a clock step costs time, never events).
      if (!s.lock_trouble_since || now < *s.lock_trouble_since) s.lock_trouble_since = now;
      if (now - *s.lock_trouble_since > cfg.retry.budget) {
        fault_log_at(spdlog::level::err, "no lease", now,
                     "partition {}: no lease from {} within the retry budget ({} ms): {}",
                     s.key.to_string(), cfg.lock_name, cfg.retry.budget.count(), ec.message());
        fail_partition(s, ec);
        s.lock_trouble_since.reset();
        s.lock_failures = 0;
        continue;
      }
      if (ec == errc::lock_busy) {
        counters.lock_busy.fetch_add(1, std::memory_order_relaxed);
      } else {
        counters.retry(ec);
        fault_log("lock service unavailable", now, "lock {}: {}, backing off", cfg.lock_name,
                  ec.message());
      }
      back_off(s, now);
    }
    if (aborting) abort_batch();
  }

  /// A retryable store failure: back off and repeat the call, or give the batch up.
  void store_retry(const char* what, const boost::system::error_code& ec, Time now) {
    ++attempt;
    if (!failing_since || now < *failing_since) failing_since = now;
    // The outage episode ends when the store answered, or when no call failed for a while.
    if (last_store_failure && (now < *last_store_failure ||
                               now - *last_store_failure >
                                   std::max<std::chrono::milliseconds>(
                                       std::chrono::seconds(1), cfg.retry.max_backoff * 4)))
      store_outage_since.reset();
    last_store_failure = now;
    if (store_outage_since && now >= *store_outage_since &&
        now - *store_outage_since > cfg.retry.budget) {
      // An earlier batch already spent the budget on this outage: fail at once, so that a
      // shard's backlog ends within one budget, not one budget per batch.
      abandon(ec);
      return;
    }
    if (attempt >= cfg.retry.max_attempts || now - *failing_since > cfg.retry.budget) {
      fault_log_at(spdlog::level::err, "store gave up", now,
                 "{} on {} failed after {} attempts over {} ms: {}", what, cfg.store_name, attempt,
                 std::chrono::duration_cast<std::chrono::milliseconds>(now - *failing_since).count(),
                 ec.message());
      abandon(ec);
      return;
    }
    counters.retry(ec);
    fault_log(std::string("store: ") + ec.message(), now, "{} on {} failed ({}), retrying", what,
              cfg.store_name, ec.message());
    retry_pending = true;
    retry_at = now + backoff(attempt);
  }

  void on_claimed(result<std::vector<PartitionState>> r, Time now) {
    awaiting = false;
    if (aborting) return abort_batch();
    if (!r) {
      if (classify(r.error()) == retry_class::retry_now) return store_retry("claim", r.error(), now);
      log->error("claim failed: {}", r.error().message());
      return abandon(r.error());
    }
    recovered(kStoreUnavailable, now);
    recovered("store gave up", now);
    store_outage_since.reset();
    for (std::size_t i = 0; i < need.size() && i < r.value().size(); ++i) {
      Slot* found = find_slot(need[i]);
      if (found == nullptr) throw std::out_of_range("claimed partition not cached");
      Slot& s = *found;
      s.state = in_trade_pool(std::move(r.value()[i]));
      if (cfg.mutation == Mutation::lock_fences && s.leased) s.state->fence = s.lease.fence;
    }
    attempt = 0;
    failing_since.reset();
    step = Step::take;
  }

  void on_found(result<std::vector<std::optional<StoredEvent>>> r, Time now) {
    awaiting = false;
    if (aborting) return abort_batch();
    if (!r) {
      if (classify(r.error()) == retry_class::retry_now) {
        store_retry("find events", r.error(), now);
        if (step == Step::take && !ops.empty()) {
          // Repeat the lookup: put the ops back and take them again after the backoff.
          requeue_batch();
        }
        return;
      }
      return abandon(r.error());
    }
    attempt = 0;
    store_outage_since.reset();
    measure(est_lookup, lookup_started, now);
    // The results, in the order of the keys asked (looked_up), by op.
    auto& found = r.value();
    if (found.size() != looked_up.size()) {
      log->error("the store answered a lookup of {} keys with {} results", looked_up.size(),
                 found.size());
      return abandon(make_error_code(errc::store_error));
    }
    found_all.assign(ops.size(), std::nullopt);
    for (std::size_t k = 0; k < looked_up.size(); ++k)
      found_all[looked_up[k]] = std::move(found[k]);
    found_spare = std::move(found);  // only its capacity is of use now
    found_spare.clear();
    keys_found(now);
  }

  /// Which ops of the batch have their key looked up (looked_up, ascending): those whose key
  /// may be stored. A key (trade_id, version) that the partition's state (as of our claim, and
  /// checked by the commit: a partition written meanwhile refuses it) shows it has not stored,
  /// because it holds no record of the trade or one of a lower version, could only be stored in
  /// another partition; its op is decided as if it were not stored, and the commit checks that
  /// (its insert, or absent_keys for an outcome that writes nothing, is refused with
  /// errc::key_conflict if the key is stored), after which its batch is decided again with
  /// every key looked up (OpState::look_up). An op whose key an op of another partition carried
  /// ahead of it in the key gate (OpState::gate_local false) looks up too: its key is likely
  /// stored elsewhere by now. Re-sends and replays look up; fresh events (most of them) do not.
  void select_lookups() {
    looked_up.clear();
    for (const Taken& t : taken) {
      const std::optional<PartitionState>& st = t.slot->state;
      for (std::size_t i = t.first; i < t.first + t.count; ++i) {
        const SubmitOp* op = ops[i];
        bool may_be_stored = true;
        if (st && !state_of(op).look_up && state_of(op).gate_local) {
          const auto it = st->trades.find(op->event.trade_id);
          may_be_stored = it != st->trades.end() && it->second.version >= op->event.version;
        }
        if (may_be_stored) looked_up.push_back(i);
      }
    }
  }

  /// The keys are known (found_all, by op): decided now, or once the commit out succeeded.
  void keys_found(Time now) {
    if (flight.out) {
      // Decided only once the commit out succeeded: its outcome could change what this batch
      // is decided on (a key the two share waits in the key gate, a partition is never in both,
      // but a failed commit fails or re-decides its partitions, and this batch goes back).
      found_held.swap(found_all);
      step = Step::held;
      return;
    }
    decide_and_stage(found_all, now);
  }

  /// Step 6, then step 7 is next.
  void decide_and_stage(const std::vector<std::optional<StoredEvent>>& found, Time now) {
    decide(found);
    if (batch->partitions.empty() && batch->absent_keys.empty() && batch->sources.empty()) {
      // Only possible with the unvalidated_noop mutation: nothing to validate.
      finish_batch(now);
      return;
    }
    step = Step::commit;
  }

  // ---- overlap -------------------------------------------------------------------------------

  /// The commit of the batch under way goes out overlapped: the batch moves into `flight`
  /// (its partitions are not picked until it ends) and the next one starts.
  void launch_flight() {
    flight.out = true;
    flight.failed.reset();
    flight.parts.swap(cur);  // cur gets the flight's emptied vectors and no batch (end_batch)
    for (Slot* s : flight.parts.picked) s->in_flight = true;
    if (cfg.mutation == Mutation::early_outcomes) {
      BatchParts& f = flight.parts;
      for (std::size_t i = 0; i < f.ops.size(); ++i)
        complete(f.ops[i], f.ends[i], std::move(f.outcomes[i]));
      f.ops.clear();
      f.outcomes.clear();
      f.ends.clear();
      f.taken.clear();
    }
    end_batch();
  }

  /// The partitions of the flight are free again; their deferred deadlines come back.
  void end_flight() {
    flight.out = false;
    for (Slot* s : flight.parts.picked) s->in_flight = false;
    for (auto& e : deferred_deadlines) deadlines.push(std::move(e));
    deferred_deadlines.clear();
  }

  /// The overlapped commit succeeded: complete its batch, then decide the held one.
  void flight_committed(Time now) {
    BatchParts& f = flight.parts;
    commit_succeeded(f, now);
    end_flight();
    complete_parts(f, now);
    f.picked.clear();
    f.taken.clear();
    f.ops.clear();
    f.outcomes.clear();
    f.ends.clear();
    f.hook_batches.clear();
    recycle(f.batch);
    if (step == Step::held && !aborting) {
      found_all.swap(found_held);
      found_held.clear();
      decide_and_stage(found_all, now);
    }
  }

  /// The overlapped commit failed and no other action is out: put the batch under way back
  /// (nothing of it is decided), make the flight the batch under way again, and handle the
  /// failure as if its commit had not been overlapped.
  void recover_flight(Time now) {
    if (!flight.failed || awaiting) return;
    if (!ops.empty()) requeue_batch();
    for (Slot* s : picked) make_ready(*s);
    end_batch();
    recycle(batch);
    end_flight();
    cur.swap(flight.parts);  // the flight keeps cur's emptied vectors and no batch
    step = Step::commit;
    result<void> r = std::move(*flight.failed);
    flight.failed.reset();
    committed(std::move(r), now);
  }

  /// Puts the taken ops back at the front of their queues, in order (before a retry of step 5).
  void requeue_batch() {
    for (auto t = taken.rbegin(); t != taken.rend(); ++t)
      for (std::size_t i = t->first + t->count; i-- > t->first;) t->slot->queue.push_front(ops[i]);
    ops.clear();
    taken.clear();
  }

  void on_committed(result<void> r, Time now) {
    if (flight.out && !flight.failed) {
      if (r) return flight_committed(now);
      flight.failed = std::move(r);
      return recover_flight(now);  // at once, or after the result of the action out
    }
    committed(std::move(r), now);
  }

  /// The result of the commit of the batch under way.
  void committed(result<void> r, Time now) {
    awaiting = false;
    if (r) {
      commit_succeeded(cur, now);
      finish_batch(now);
      return;
    }
    counters.commit_failures.fetch_add(1, std::memory_order_relaxed);
    const auto ec = r.error();
    if (ec == errc::store_unavailable) uncertain = true;
    if (ec == errc::fenced_off && !aborting && !uncertain && !hook_batches.empty() &&
        !batch->sources.empty()) {
      // A partition's fence or a source's epoch? Read the source rows: a source that lost its
      // stream must not hold back the other events of the batch.
      step = Step::probe;
      return;
    }
    after_commit(ec, {});
    if (aborting) {
      if (uncertain && has_writes()) {
        step = Step::verify;  // one look: did it apply? (a lost acknowledgement)
        return;
      }
      return abort_batch();
    }
    switch (classify(ec)) {
      case retry_class::retry_now:
        return store_retry("commit", ec, now);
      case retry_class::retry_higher:
        if (uncertain && has_writes()) {
          step = Step::verify;
          return;
        }
        return redecide(ec, now);
      default:
        log->error("commit failed: {}", ec.message());
        return abandon(ec);
    }
  }

  bool has_writes() const {
    for (const auto& p : batch->partitions)
      if (!p.events.empty()) return true;
    return false;
  }

  void on_verified(result<std::vector<std::optional<StoredEvent>>> r, Time now) {
    awaiting = false;
    if (!r) {
      if (!aborting && classify(r.error()) == retry_class::retry_now)
        return store_retry("verify commit", r.error(), now);
      return aborting ? abort_batch() : abandon(r.error());
    }
    // Whose commit stored the batch's events? Each claim has its own fence, and the store keeps
    // the fence of the commit that wrote each event (StoredEvent::fence). A commit is atomic:
    // one event stored by this batch's fence means all are; one missing, different, or written
    // under another fence means this commit did not apply (another claimant may have stored the
    // same events, deciding them the same way or not).
    std::size_t i = 0;
    bool mine = false, not_mine = false, unknown = false;
    for (const auto& p : batch->partitions) {
      for (const auto& e : p.events) {
        const auto& f = i < r.value().size() ? r.value()[i] : std::optional<StoredEvent>{};
        ++i;
        if (!f || f->seq != e.seq || f->event.partition != e.event.partition ||
            !f->event.same_content(e.event)) {
          not_mine = true;
        } else if (f->fence == 0) {
          unknown = true;  // stored before the store kept writers' fences
        } else if (f->fence == p.fence) {
          mine = true;
        } else {
          not_mine = true;
        }
      }
    }
    bool expired = false;
    for (SubmitOp* op : ops)
      if (op->deadline <= now && cfg.mutation != Mutation::ignore_deadlines) expired = true;
    if (mine && !not_mine && !unknown) {
      // Our commit applied: it validated every outcome of the batch, writing or not.
      if (expired) {
        log->warn("commit acknowledgement was lost; the batch is in the store, but past a "
                  "deadline: its events end without an outcome (re-sending is safe)");
        return abandon(make_error_code(errc::deadline_exceeded));
      }
      log->warn("commit acknowledgement was lost, but the batch is in the store");
      counters.commits.fetch_add(1, std::memory_order_relaxed);
      finish_batch(now);
      return;
    }
    if (!not_mine) {
      // Stored as decided, by a writer that cannot be told (no fence recorded): only ACCEPTED
      // outcomes are then known to be true (another host may have decided the same events the
      // same way). Outcomes validated only by our own commit (check-only partitions, absent
      // keys, a REJECTED next to a write), or ops past their deadline, end without an outcome.
      bool only_writes = batch->absent_keys.empty();
      for (const auto& p : batch->partitions)
        if (p.events.empty()) only_writes = false;
      for (const auto& o : outcomes)
        if (o.kind != OutcomeKind::Accepted) only_writes = false;
      if (only_writes && !expired) {
        log->warn("commit acknowledgement was lost, but the batch is in the store");
        counters.commits.fetch_add(1, std::memory_order_relaxed);
        finish_batch(now);
        return;
      }
      log->warn("commit acknowledgement was lost and the batch's events are stored; its outcomes "
                "cannot be confirmed: they end without an outcome (re-sending is safe)");
      return abandon(expired ? make_error_code(errc::deadline_exceeded)
                             : make_error_code(errc::store_unavailable));
    }
    uncertain = false;
    if (aborting) return abort_batch();
    redecide(errc::sequence_conflict, now);
  }

  void on_sources(result<std::vector<SourceOffset>> r, Time now) {
    awaiting = false;
    std::vector<SourceOffset> stale;
    if (r) {
      for (const auto& row : batch->sources) {
        for (const auto& stored : r.value()) {
          if (stored.consumer == row.consumer && stored.topic == row.topic &&
              stored.partition == row.partition && stored.epoch > row.epoch)
            stale.push_back(row);
        }
      }
    }
    after_commit(make_error_code(errc::fenced_off), stale);
    if (aborting) return abort_batch();
    if (!stale.empty()) {
      // The partitions were not fenced: keep their leases; the sources' verdicts change.
      return redecide(errc::fenced_off, now, /*partitions_fenced=*/false);
    }
    redecide(errc::fenced_off, now);
  }

  /// The commit of `b` succeeded: tell its sources, count it, and end a store outage.
  void commit_succeeded(BatchParts& b, Time now) {
    for (auto& hb : b.hook_batches) hb.hook->after_commit(hb.events, {}, {});
    counters.commits.fetch_add(1, std::memory_order_relaxed);
    counters.commit_latency_us.record(micros_between(b.commit_started, now));
    measure(est_commit, b.commit_started, now);
    recovered(kStoreUnavailable, now);
    store_outage_since.reset();
  }

  /// `b` is durable (or, with nothing to validate, decided): complete its ops and make its
  /// partitions ready again. The caller empties `b`.
  void complete_parts(BatchParts& b, Time now) {
    counters.batches.fetch_add(1, std::memory_order_relaxed);
    counters.batch_size.record(b.ops.size());
    for (std::size_t i = 0; i < b.ops.size(); ++i)
      complete(b.ops[i], b.ends[i], std::move(b.outcomes[i]));
    for (const Taken& t : b.taken) {
      t.slot->lock_failures = 0;
      t.slot->last_active = now;
      make_ready(*t.slot);
    }
    for (Slot* s : b.picked) make_ready(*s);
  }

  /// The batch under way is durable (or, with nothing to validate, decided): complete it.
  void finish_batch(Time now) {
    complete_parts(cur, now);
    end_batch();
  }

  /// The batch was decided on a stale view (fenced off, another writer, a key taken
  /// concurrently): drop the cached state, put the events back in order, decide again.
  void redecide(boost::system::error_code ec, Time now, bool partitions_fenced = true) {
    counters.retry(ec);
    fault_log("batch refused", now, "batch of {} events refused ({}); deciding it again", ops.size(),
              ec.message());
    std::vector<Grant> lost;
    for (auto t = taken.rbegin(); t != taken.rend(); ++t) {
      Slot& s = *t->slot;
      s.state.reset();
      if (ec == errc::fenced_off && partitions_fenced && s.leased) {
        // Another holder claimed the partition after us: let it work, come back later.
        counters.lease_losses.fetch_add(1, std::memory_order_relaxed);
        lost.push_back(std::move(s.lease));
        s.drop_lease();
      }
      for (std::size_t i = t->first + t->count; i-- > t->first;) s.queue.push_front(ops[i]);
    }
    for (const Taken& t : taken) {
      bool bounced_out = false;
      for (std::size_t i = t.first; i < t.first + t.count; ++i) {
        if (++state_of(ops[i]).redecides > cfg.retry.max_attempts) bounced_out = true;
        // A key is stored that a skipped lookup took as not: look every key up from now on.
        if (ec == errc::key_conflict && cfg.mutation != Mutation::conflict_blind)
          state_of(ops[i]).look_up = true;
      }
      if (bounced_out) {
        log->error("partition {} kept conflicting; failing its queued events",
                   t.slot->key.to_string());
        fail_partition(*t.slot, ec);
        continue;
      }
      back_off(*t.slot, now);
    }
    // A partition picked but with nothing taken (its first op waits in the key gate) is in no
    // Taken: back in line, or nothing would pick it again (its wake-up may have come already,
    // while it was in this batch).
    for (Slot* s : picked) make_ready(*s);
    end_batch();
    pending_release = std::move(lost);
  }

  /// The store failed past its retry budget (or for good): the batch's partitions never move
  /// past this failure, so every event they have queued ends without an outcome too.
  void abandon(boost::system::error_code ec) {
    if (classify(ec) == retry_class::retry_now && failing_since && !store_outage_since)
      store_outage_since = failing_since;
    if (cfg.mutation == Mutation::no_failure_barrier) {
      for (SubmitOp* op : ops) complete(op, ec);
      for (Slot* s : picked) {
        s->state.reset();
        make_ready(*s);
      }
      end_batch();
      return;
    }
    for (const Taken& t : taken) {
      Slot& s = *t.slot;
      for (std::size_t i = t.first + t.count; i-- > t.first;) s.queue.push_front(ops[i]);
    }
    for (Slot* s : picked) fail_partition(*s, ec);
    end_batch();
  }

  /// abort_all reached the batch under way: its ops end without an outcome.
  void abort_batch() {
    for (const Taken& t : taken) {
      Slot& s = *t.slot;
      for (std::size_t i = t.first + t.count; i-- > t.first;) s.queue.push_front(ops[i]);
    }
    for (Slot* s : picked) fail_partition(*s, abort_ec);
    end_batch();
  }

  void abort_all(boost::system::error_code ec, Time) {
    aborting = true;
    abort_ec = ec;
    if (!awaiting) {
      if (step != Step::start) abort_batch();
    }
    slot_pool.for_each_used([&](Slot& s) {
      if (awaiting && std::find(picked.begin(), picked.end(), &s) != picked.end()) return;
      if (s.in_flight) return;  // its commit ends its batch (settle_abort then fails the rest)
      fail_partition(s, ec);
    });
    if (!awaiting && !flight.out) aborting = false;
  }

  std::vector<Grant> pending_release;

  /// After a result: once an aborted batch has ended, nothing queued here survives the abort.
  void settle_abort() {
    if (!aborting || awaiting || flight.out || step != Step::start) return;
    slot_pool.for_each_used([&](Slot& s) { fail_partition(s, abort_ec); });
    aborting = false;
  }
};

// ------------------------------------------------------------------------------------------

ShardCore::ShardCore(ShardConfig config, std::shared_ptr<const Processor> processor,
                     Counters& counters, std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(processor), counters,
                                   std::move(log))) {}

ShardCore::~ShardCore() = default;

void ShardCore::add(SubmitOp* op, Time now) { impl_->add(op, now); }

void ShardCore::wake(const PartitionKey& key) {
  if (auto* s = impl_->find_slot(key)) impl_->make_ready(*s);
}

Action ShardCore::next(Time now) {
  if (!impl_->pending_release.empty() && !impl_->awaiting) {
    Action a;
    a.kind = Action::Kind::release;
    a.grants = std::move(impl_->pending_release);
    impl_->pending_release.clear();
    return a;
  }
  return impl_->next(now);
}

void ShardCore::on_acquired(result<std::vector<result<Grant>>> r, Time now) {
  impl_->on_acquired(std::move(r), now);
  impl_->recover_flight(now);
  impl_->settle_abort();
}
void ShardCore::on_renewed(std::vector<Grant> renewed, result<std::vector<result<void>>> r,
                           Time now) {
  impl_->on_renewed(std::move(renewed), std::move(r), now);
  impl_->recover_flight(now);
  impl_->settle_abort();
}
void ShardCore::on_claimed(result<std::vector<PartitionState>> r, Time now) {
  impl_->on_claimed(std::move(r), now);
  impl_->recover_flight(now);
  impl_->settle_abort();
}
void ShardCore::on_found(result<std::vector<std::optional<StoredEvent>>> r, Time now) {
  impl_->on_found(std::move(r), now);
  impl_->recover_flight(now);
  impl_->settle_abort();
}
void ShardCore::on_committed(result<void> r, Time now) {
  impl_->on_committed(std::move(r), now);
  impl_->settle_abort();
}
void ShardCore::on_verified(result<std::vector<std::optional<StoredEvent>>> r, Time now) {
  impl_->on_verified(std::move(r), now);
  impl_->recover_flight(now);
  impl_->settle_abort();
}
void ShardCore::on_sources(result<std::vector<SourceOffset>> r, Time now) {
  impl_->on_sources(std::move(r), now);
  impl_->recover_flight(now);
  impl_->settle_abort();
}

void ShardCore::abort_all(boost::system::error_code ec, Time now) { impl_->abort_all(ec, now); }

void ShardCore::set_stamp_now(std::uint64_t stamp_now) { impl_->stamp_now = stamp_now; }

std::vector<Grant> ShardCore::shutdown() {
  std::vector<Grant> out = std::move(impl_->pending_release);
  impl_->pending_release.clear();
  impl_->slot_pool.for_each_used([&](Impl::Slot& s) {
    if (s.leased) out.push_back(s.lease);
  });
  impl_->slots = decltype(impl_->slots){};
  impl_->slot_pool = Impl::SlotPool{};
  impl_->ready.clear();
  impl_->waiting.clear();
  impl_->n_active = impl_->n_leases = 0;
  return out;
}

std::vector<std::optional<StoredEvent>> ShardCore::take_found_buffer() {
  std::vector<std::optional<StoredEvent>> out;
  out.swap(impl_->found_spare);
  out.clear();
  return out;
}

std::vector<Completion> ShardCore::take_completions() {
  std::vector<Completion> out;
  out.swap(impl_->completions);
  return out;
}

void ShardCore::take_completions(std::vector<Completion>& out) {
  out.clear();
  out.swap(impl_->completions);
}

std::size_t ShardCore::cached() const { return impl_->slots.size(); }
std::size_t ShardCore::active() const { return impl_->n_active; }
std::size_t ShardCore::leases() const { return impl_->n_leases; }

bool ShardCore::empty() const {
  if (!impl_->ops.empty() || !impl_->flight.parts.ops.empty()) return false;
  bool none = true;
  impl_->slot_pool.for_each_used([&](const Impl::Slot& s) { none = none && s.queue.empty(); });
  return none;
}

}  // namespace tradecapture::detail
