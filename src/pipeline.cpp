// The partition-sequential pipeline.
//
// Shape: every partition belongs to one shard (by hash). A submission enters the global key gate
// and its shard's inbox under that shard's inbox lock, so the order of events of one partition and
// the order of events sharing an idempotency key are one consistent order (no waiting cycles: an
// event only ever waits for events that entered before it). A shard runs on a strand: it moves
// its inbox into per-partition queues, takes what is queued for many partitions (round robin,
// capped per partition), makes sure it holds their leases and has their state, decides every
// event in partition order, commits the accepted ones in one store transaction and only then
// completes the submissions. The cached partition state is only ever the durable state: it is
// updated in place while deciding and dropped whenever a commit does not succeed.

#include <tradecapture/pipeline.hpp>

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

namespace tradecapture {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using detail::SubmitOp;

namespace {

std::uint64_t micros_between(Clock::time_point a, Clock::time_point b) {
  return static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(b - a).count()));
}

std::size_t key_hash_of(const TradeEvent& e) {
  std::size_t h = std::hash<std::string_view>{}(e.trade_id);
  return h ^ (static_cast<std::size_t>(e.version) * 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2));
}

/// The global gate on idempotency keys: for each key, the FIFO of submitted, not yet completed
/// events that carry it, in entry order. The map key views the head op's trade_id (no copy).
/// An event may be decided only when it leads its key (every earlier event with the same key has
/// completed, so its outcome is durable and `find_events` sees it). The lead is published in
/// `SubmitOp::gate_head`, so the common check needs no lock.
class KeyGate {
 public:
  void enter(SubmitOp* op) {
    Stripe& s = stripe_(op->key_hash);
    std::lock_guard lk(s.mu);
    auto [it, inserted] = s.fifo.try_emplace(view_(op), Entry{op, op});
    if (inserted) {
      op->gate_head.store(true, std::memory_order_release);
    } else {
      it->second.tail->gate_next = op;
      it->second.tail = op;
    }
  }

  static bool may_take(const SubmitOp* op) {
    return op->gate_head.load(std::memory_order_acquire);
  }

  /// Removes `op`; returns the partition of the op that now leads the key, if that changed.
  std::optional<PartitionKey> leave(SubmitOp* op) {
    Stripe& s = stripe_(op->key_hash);
    std::lock_guard lk(s.mu);
    auto it = s.fifo.find(view_(op));
    if (it == s.fifo.end()) return std::nullopt;
    Entry& e = it->second;
    const bool was_head = e.head == op;
    if (was_head) {
      e.head = op->gate_next;
    } else {
      SubmitOp* prev = e.head;
      while (prev != nullptr && prev->gate_next != op) prev = prev->gate_next;
      if (prev == nullptr) return std::nullopt;
      prev->gate_next = op->gate_next;
      if (e.tail == op) e.tail = prev;
    }
    op->gate_next = nullptr;
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
    head->gate_head.store(true, std::memory_order_release);
    return next;
  }

 private:
  struct View {
    std::string_view trade_id;
    std::int64_t version;
    std::size_t hash;
    bool operator==(const View& o) const {
      return version == o.version && trade_id == o.trade_id;
    }
  };
  struct ViewHash {
    std::size_t operator()(const View& v) const { return v.hash; }
  };
  struct Entry {
    SubmitOp* head;
    SubmitOp* tail;
  };
  struct Stripe {
    std::mutex mu;
    std::unordered_map<View, Entry, ViewHash> fifo;
  };
  static View view_(const SubmitOp* op) {
    return View{op->event.trade_id, op->event.version, op->key_hash};
  }
  Stripe& stripe_(std::size_t h) { return stripes_[(h >> 7) % stripes_.size()]; }
  std::array<Stripe, 64> stripes_;
};

/// Counters shared by the shards.
struct Counters {
  std::atomic<std::uint64_t> accepted{0}, duplicate{0}, stale{0}, rejected{0}, failed{0};
  std::atomic<std::uint64_t> batches{0}, commits{0}, commit_failures{0}, retries{0};
  std::atomic<std::uint64_t> lock_grants{0}, lock_busy{0}, lease_losses{0};
  std::atomic<std::uint64_t> queue_depth{0};
  std::array<std::atomic<std::uint64_t>, retry_cause_count> retries_by_cause{};
  Histogram batch_size, commit_latency_us, latency_us, lock_wait_us;

  /// Counts one retry after `ec`.
  void retry(const boost::system::error_code& ec) {
    retries.fetch_add(1, std::memory_order_relaxed);
    retries_by_cause[static_cast<std::size_t>(cause_of(ec))].fetch_add(1, std::memory_order_relaxed);
  }

  static RetryCause cause_of(const boost::system::error_code& ec) {
    if (ec.category() != error_category()) return RetryCause::other;
    switch (static_cast<errc>(ec.value())) {
      case errc::deadlock: return RetryCause::deadlock;
      case errc::serialization_failure: return RetryCause::serialization;
      case errc::store_unavailable:
      case errc::lock_unavailable: return RetryCause::connection;
      case errc::fenced_off:
      case errc::lease_lost: return RetryCause::fenced_off;
      case errc::sequence_conflict:
      case errc::key_conflict: return RetryCause::conflict;
      case errc::store_busy: return RetryCause::busy;
      default: return RetryCause::other;
    }
  }
};

}  // namespace

// ------------------------------------------------------------------------------------------

struct Pipeline::Impl {
  struct Shard;

  std::shared_ptr<TradeStore> store;
  std::shared_ptr<PartitionLock> lock;
  std::shared_ptr<const Processor> processor;
  PipelineOptions opt;
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<asio::thread_pool> pool;
  asio::any_io_executor exec;
  std::vector<std::unique_ptr<Shard>> shards;
  KeyGate gate;
  Counters counters;

  // Admission: in-flight accounting, back-pressure and drain.
  std::atomic<std::size_t> in_flight{0};
  std::atomic<bool> stopping{false};
  std::atomic<int> waiters{0};
  std::mutex admit_mu;
  std::condition_variable admit_cv;
  std::mutex stop_mu;
  bool stopped = false;

  Impl(std::shared_ptr<TradeStore> s, std::shared_ptr<PartitionLock> l,
       std::shared_ptr<const Processor> p, PipelineOptions o);

  Shard& shard_for(const PartitionKey& k) {
    return *shards[PartitionKeyHash{}(k) % shards.size()];
  }

  /// Reserves an in-flight slot; fails with overloaded (fail-fast) or stopped.
  boost::system::error_code admit() {
    if (in_flight.fetch_add(1, std::memory_order_acq_rel) < opt.max_in_flight) return {};
    in_flight.fetch_sub(1, std::memory_order_acq_rel);
    if (opt.on_overload == OverloadPolicy::fail_fast) return errc::overloaded;
    std::unique_lock lk(admit_mu);
    waiters.fetch_add(1);
    admit_cv.wait(lk, [&] {
      return stopping.load() || in_flight.load(std::memory_order_acquire) < opt.max_in_flight;
    });
    waiters.fetch_sub(1);
    if (stopping.load()) return errc::stopped;
    in_flight.fetch_add(1, std::memory_order_acq_rel);
    return {};
  }

  void finished(std::size_t n) {
    in_flight.fetch_sub(n, std::memory_order_acq_rel);
    if (waiters.load(std::memory_order_acquire) > 0) {
      std::lock_guard lk(admit_mu);
      admit_cv.notify_all();
    }
  }

  void count(const boost::system::error_code& ec, const Outcome& o) {
    if (ec) {
      counters.failed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    switch (o.kind) {
      case OutcomeKind::Accepted: counters.accepted.fetch_add(1, std::memory_order_relaxed); break;
      case OutcomeKind::Duplicate: counters.duplicate.fetch_add(1, std::memory_order_relaxed); break;
      case OutcomeKind::Stale: counters.stale.fetch_add(1, std::memory_order_relaxed); break;
      case OutcomeKind::Rejected: counters.rejected.fetch_add(1, std::memory_order_relaxed); break;
    }
  }

  /// Completes an op that went through the gate and the in-flight count.
  void complete(SubmitOp* op, boost::system::error_code ec, Outcome o, Clock::time_point now);

  std::chrono::milliseconds backoff(int attempt) {
    thread_local std::minstd_rand rng{std::random_device{}()};
    auto base = opt.retry.initial_backoff.count() << std::min(attempt, 20);
    auto capped = std::min<std::int64_t>(base, opt.retry.max_backoff.count());
    std::uniform_int_distribution<std::int64_t> d(capped / 2, std::max<std::int64_t>(capped, 1));
    return std::chrono::milliseconds(d(rng));
  }

  /// Runs a store call, retrying transient failures with jittered backoff within the budget.
  template <class F>
  auto with_retry(const char* what, F&& f) -> decltype(f()) {
    const auto start = Clock::now();
    for (int attempt = 1;; ++attempt) {
      auto r = f();
      if (r || classify(r.error()) != retry_class::retry_now) return r;
      if (attempt >= opt.retry.max_attempts || Clock::now() - start > opt.retry.budget) {
        log->error("{} failed after {} attempts: {}", what, attempt, r.error().message());
        return r;
      }
      counters.retry(r.error());
      auto wait = backoff(attempt);
      log->warn("{} failed ({}), retry {} in {} ms", what, r.error().message(), attempt,
                wait.count());
      std::this_thread::sleep_for(wait);
    }
  }

  void stop();
};

// ------------------------------------------------------------------------------------------

struct Pipeline::Impl::Shard {
  struct Slot {
    PartitionKey key;
    std::deque<SubmitOp*> queue;
    std::optional<PartitionState> state;
    std::optional<Grant> grant;
    bool ready = false;    // in ready_
    bool waiting = false;  // in waiting_ (lock backoff)
    int lock_failures = 0;
    Clock::time_point retry_at{};
    Clock::time_point failing_since{};
    Clock::time_point last_active{};
    Clock::time_point lease_wanted{};  // when it first needed the lease it does not hold yet
  };

  Impl& impl;
  asio::strand<asio::any_io_executor> strand;
  asio::steady_timer timer;

  std::mutex inbox_mu;
  std::vector<SubmitOp*> inbox;       // guarded by inbox_mu
  std::vector<PartitionKey> wakes;    // guarded by inbox_mu
  bool scheduled = false;             // guarded by inbox_mu

  // Owned by the strand.
  std::unordered_map<PartitionKey, std::unique_ptr<Slot>, PartitionKeyHash> slots;
  std::deque<Slot*> ready;
  std::vector<Slot*> waiting;
  Clock::time_point timer_at = Clock::time_point::max();
  Clock::time_point last_housekeeping{};
  std::atomic<std::size_t> cached{0};  // partitions known to this shard, for metrics
  std::atomic<std::size_t> active{0};  // partitions with queued or in-progress events
  std::atomic<std::size_t> leases{0};  // leases held

  // Scratch space reused by every batch.
  struct Taken {
    Slot* slot;
    std::size_t first;  // index into ops
    std::size_t count;
  };
  std::vector<Slot*> picked;
  std::vector<Taken> taken;
  std::vector<SubmitOp*> ops;
  std::vector<Outcome> outcomes;
  std::vector<IdempotencyKey> keys;
  std::vector<std::string_view> changed_ids;
  std::vector<std::uint64_t> tags;

  Shard(Impl& i, asio::any_io_executor ex) : impl(i), strand(asio::make_strand(ex)), timer(strand) {}

  /// Called with inbox_mu held: posts `run` unless already scheduled.
  void schedule_locked() {
    if (!scheduled) {
      scheduled = true;
      asio::post(strand, [this] { run(); });
    }
  }

  void push(SubmitOp* op) {
    std::lock_guard lk(inbox_mu);
    impl.gate.enter(op);
    inbox.push_back(op);
    impl.counters.queue_depth.fetch_add(1, std::memory_order_relaxed);
    schedule_locked();
  }

  void wake(PartitionKey key) {
    std::lock_guard lk(inbox_mu);
    wakes.push_back(std::move(key));
    schedule_locked();
  }

  Slot& slot_for(const PartitionKey& key) {
    auto& s = slots[key];
    if (!s) {
      s = std::make_unique<Slot>();
      s->key = key;
    }
    return *s;
  }

  void make_ready(Slot& s) {
    if (!s.ready && !s.waiting && !s.queue.empty()) {
      s.ready = true;
      ready.push_back(&s);
    }
  }

  /// Moves the inbox into the partition queues; returns false when there is nothing to do.
  bool absorb() {
    std::vector<SubmitOp*> in;
    std::vector<PartitionKey> wk;
    {
      std::lock_guard lk(inbox_mu);
      in.swap(inbox);
      wk.swap(wakes);
      if (in.empty() && wk.empty() && ready.empty()) {
        scheduled = false;
        return false;
      }
    }
    impl.counters.queue_depth.fetch_sub(in.size(), std::memory_order_relaxed);
    Slot* last = nullptr;
    for (SubmitOp* op : in) {
      Slot& s = (last != nullptr && last->key == op->event.partition) ? *last
                                                                       : slot_for(op->event.partition);
      s.queue.push_back(op);
      make_ready(s);
      last = &s;
    }
    for (auto& k : wk) {
      auto it = slots.find(k);
      if (it != slots.end()) make_ready(*it->second);
    }
    return true;
  }

  void run() {
    for (int round = 0; round < 16; ++round) {
      if (!absorb()) {
        housekeeping(Clock::now(), true);
        return;
      }
      if (!ready.empty()) process_batch();
    }
    // Still scheduled: yield the thread to other work on the executor, then go on.
    asio::post(strand, [this] { run(); });
  }

  /// Puts a partition into lock backoff and arms the timer for it.
  void back_off(Slot& s, Clock::time_point now) {
    ++s.lock_failures;
    s.retry_at = now + impl.backoff(s.lock_failures);
    if (!s.waiting) {
      s.waiting = true;
      waiting.push_back(&s);
    }
    arm_timer(s.retry_at);
  }

  void arm_timer(Clock::time_point at) {
    if (at >= timer_at) return;
    timer_at = at;
    timer.expires_at(at);
    timer.async_wait(asio::bind_executor(strand, [this](boost::system::error_code ec) {
      if (ec) return;  // cancelled: `this` may be gone
      on_timer();
    }));
  }

  void on_timer() {
    timer_at = Clock::time_point::max();
    const auto now = Clock::now();
    Clock::time_point next = Clock::time_point::max();
    std::erase_if(waiting, [&](Slot* s) {
      if (s->retry_at <= now) {
        s->waiting = false;
        make_ready(*s);
        return true;
      }
      next = std::min(next, s->retry_at);
      return false;
    });
    if (next != Clock::time_point::max()) arm_timer(next);
    if (!ready.empty()) {
      std::lock_guard lk(inbox_mu);
      schedule_locked();
    }
  }

  /// Fails every queued op of a partition (lock unavailable past the retry budget).
  void fail_queue(Slot& s, boost::system::error_code ec) {
    const auto now = Clock::now();
    std::size_t n = s.queue.size();
    while (!s.queue.empty()) {
      SubmitOp* op = s.queue.front();
      s.queue.pop_front();
      impl.complete(op, ec, Outcome{}, now);
    }
    impl.finished(n);
  }

  /// Gets or renews the leases of the picked partitions; drops those we cannot hold now.
  void ensure_leases(Clock::time_point now) {
    std::vector<PartitionKey> need;
    std::vector<Grant> renew;
    const auto lease = impl.lock->lease();
    for (Slot* s : picked) {
      if (!s->grant) {
        if (s->lease_wanted == Clock::time_point{}) s->lease_wanted = now;
        need.push_back(s->key);
      } else if (s->grant->expires - now < lease / 2) {
        renew.push_back(*s->grant);
      }
    }
    if (!renew.empty()) {
      auto r = impl.lock->renew(renew);
      for (std::size_t i = 0; i < renew.size(); ++i) {
        Slot& s = *slots.at(renew[i].partition);
        if (r && r.value()[i]) {
          s.grant = renew[i];
        } else {
          // Lost (or cannot tell): stop using it; re-acquire with a fresh fence and state.
          impl.counters.lease_losses.fetch_add(1, std::memory_order_relaxed);
          impl.log->warn("lease lost on {}: {}", s.key.to_string(),
                         r ? r.value()[i].error().message() : r.error().message());
          s.grant.reset();
          s.state.reset();
          s.lease_wanted = now;
          need.push_back(s.key);
        }
      }
    }
    if (!need.empty()) {
      auto r = impl.lock->try_acquire(need);
      for (std::size_t i = 0; i < need.size(); ++i) {
        Slot& s = *slots.at(need[i]);
        if (r && r.value()[i]) {
          s.grant = std::move(r.value()[i]).value();
          s.state.reset();  // a new holder must read the durable state again
          s.lock_failures = 0;
          s.failing_since = {};
          impl.counters.lock_grants.fetch_add(1, std::memory_order_relaxed);
          impl.counters.lock_wait_us.record(micros_between(s.lease_wanted, now));
          s.lease_wanted = {};
          impl.log->debug("lease granted on {} fence {}", s.key.to_string(), s.grant->fence);
          continue;
        }
        auto ec = r ? r.value()[i].error() : r.error();
        if (ec == errc::lock_busy) {
          impl.counters.lock_busy.fetch_add(1, std::memory_order_relaxed);
        } else {
          if (s.failing_since == Clock::time_point{}) s.failing_since = now;
          if (now - s.failing_since > impl.opt.retry.budget) {
            impl.log->error("lock for {} unavailable past the retry budget: {}",
                            s.key.to_string(), ec.message());
            fail_queue(s, ec);
            s.failing_since = {};
            continue;
          }
          impl.counters.retry(ec);
          impl.log->warn("lock for {} unavailable ({}), backing off", s.key.to_string(),
                         ec.message());
        }
        back_off(s, now);
      }
    }
    std::erase_if(picked, [](Slot* s) { return !s->grant || s->queue.empty(); });
  }

  /// Loads the state of picked partitions that have none cached; false when the store failed.
  bool ensure_states() {
    std::vector<PartitionKey> need;
    for (Slot* s : picked)
      if (!s->state) need.push_back(s->key);
    if (need.empty()) return true;
    auto r = impl.with_retry("load partitions", [&] { return impl.store->load_partitions(need); });
    if (!r) {
      fail_picked(r.error());
      return false;
    }
    for (std::size_t i = 0; i < need.size(); ++i) slots.at(need[i])->state = std::move(r.value()[i]);
    return true;
  }

  /// Fails what the picked partitions have queued and taken (store unusable past the budget).
  void fail_picked(boost::system::error_code ec) {
    for (Slot* s : picked) fail_queue(*s, ec);
  }

  void process_batch() {
    const auto now = Clock::now();
    const auto& opt = impl.opt;

    // 1. Pick partitions round robin until the batch is full.
    picked.clear();
    std::size_t budget = opt.max_batch;
    for (std::size_t n = ready.size(); n > 0 && budget > 0; --n) {
      Slot* s = ready.front();
      ready.pop_front();
      s->ready = false;
      if (s->queue.empty()) continue;
      picked.push_back(s);
      budget -= std::min({s->queue.size(), opt.max_batch_per_partition, budget});
    }

    // 2. Leases and state.
    ensure_leases(now);
    if (picked.empty() || !ensure_states()) return;

    // 3. Take events: in partition order, while the key gate allows.
    ops.clear();
    taken.clear();
    for (Slot* s : picked) {
      Taken t{s, ops.size(), 0};
      while (!s->queue.empty() && t.count < opt.max_batch_per_partition) {
        SubmitOp* op = s->queue.front();
        if (!KeyGate::may_take(op)) break;  // woken when the key's earlier event completes
        s->queue.pop_front();
        ops.push_back(op);
        ++t.count;
      }
      if (t.count > 0) taken.push_back(t);
      // Still has work that is not blocked on a key: back to the end of the line.
      if (!s->queue.empty() && (t.count == opt.max_batch_per_partition)) make_ready(*s);
      s->last_active = now;
    }
    if (ops.empty()) return;

    // 4. Idempotency keys, one store round trip for the batch.
    keys.clear();
    keys.reserve(ops.size());
    for (SubmitOp* op : ops) keys.push_back(IdempotencyKey{op->event.trade_id, op->event.version});
    auto found = impl.with_retry("find events", [&] { return impl.store->find_events(keys); });
    if (!found) {
      abandon(found.error(), now);
      return;
    }

    // 5. Decide.
    outcomes.assign(ops.size(), Outcome{});
    CommitBatch batch;
    batch.partitions.reserve(taken.size());
    for (const Taken& t : taken) {
      PartitionState& st = *t.slot->state;
      PartitionUpdate up;
      up.partition = t.slot->key;
      up.fence = t.slot->grant->fence;
      up.expected_seq = st.seq;
      for (std::size_t i = t.first; i < t.first + t.count; ++i) {
        const TradeEvent& e = ops[i]->event;
        outcomes[i] = decide_one(e, st, found.value()[i]);
        if (outcomes[i].kind == OutcomeKind::Accepted)
          up.events.push_back(StoredEvent{e, outcomes[i].seq});
      }
      if (up.events.empty()) continue;
      up.new_seq = st.seq;
      up.position = st.position;
      // The final state of every trade the batch changed, once each (sorted, deduplicated ids).
      changed_ids.clear();
      for (const auto& se : up.events) changed_ids.push_back(se.event.trade_id);
      std::sort(changed_ids.begin(), changed_ids.end());
      changed_ids.erase(std::unique(changed_ids.begin(), changed_ids.end()), changed_ids.end());
      up.trades.reserve(changed_ids.size());
      for (std::string_view id : changed_ids) {
        std::string key(id);
        const TradeRecord& rec = st.trades.at(key);
        up.trades.emplace_back(std::move(key), rec);
      }
      batch.partitions.push_back(std::move(up));
    }

    // 6. Commit, then complete.
    if (!batch.partitions.empty()) {
      std::sort(batch.partitions.begin(), batch.partitions.end(),
                [](const PartitionUpdate& a, const PartitionUpdate& b) {
                  return a.partition < b.partition;
                });
      if (impl.opt.before_commit) {
        tags.clear();
        for (SubmitOp* op : ops)
          if (op->source_tag != 0) tags.push_back(op->source_tag);
        impl.opt.before_commit(tags, batch);
      }
      auto r = commit(batch);
      if (!r) {
        if (classify(r.error()) == retry_class::retry_higher) {
          redecide(r.error());
        } else {
          abandon(r.error(), Clock::now());
        }
        return;
      }
    }
    const auto done = Clock::now();
    impl.counters.batches.fetch_add(1, std::memory_order_relaxed);
    impl.counters.batch_size.record(ops.size());
    for (std::size_t i = 0; i < ops.size(); ++i) {
      impl.complete(ops[i], {}, std::move(outcomes[i]), done);
    }
    impl.finished(ops.size());
    for (const Taken& t : taken) {
      t.slot->lock_failures = 0;
      if (t.slot->grant) t.slot->state->fence = t.slot->grant->fence;
    }
    housekeeping(done, false);
  }

  /// The idempotency check (spec section 2), then the processor (section 3). `prior` is the
  /// durable event that holds the same key, if any: the key gate lets an event be decided only
  /// once every earlier event with its key has completed.
  Outcome decide_one(const TradeEvent& e, PartitionState& st,
                     const std::optional<StoredEvent>& prior) {
    if (prior) {
      if (prior->event.same_content(e)) return Outcome::duplicate();
      return Outcome::rejected("conflict: trade " + e.trade_id + " version " +
                               std::to_string(e.version) +
                               " was accepted before with different content");
    }
    Decision d;
    try {
      d = impl.processor->decide(e, st);
    } catch (const std::exception& ex) {
      impl.log->error("processor threw on trade {} version {}: {}", e.trade_id, e.version,
                      ex.what());
      return Outcome::rejected(std::string("processor error: ") + ex.what());
    } catch (...) {
      impl.log->error("processor threw on trade {} version {}", e.trade_id, e.version);
      return Outcome::rejected("processor error: unknown exception");
    }
    if (d.outcome.kind != OutcomeKind::Accepted) return std::move(d.outcome);
    st.position = d.position;
    st.trades[e.trade_id] = d.record;
    return Outcome::accepted(++st.seq);
  }

  result<void> commit(const CommitBatch& batch) {
    // A lease about to run out cannot cover the commit: give the partition up first.
    const auto now = Clock::now();
    for (const Taken& t : taken) {
      if (t.slot->grant && t.slot->grant->expires <= now) return errc::lease_lost;
    }
    bool uncertain = false;  // a failed attempt may have committed before the error reached us
    auto r = impl.with_retry("commit", [&]() -> result<void> {
      const auto start = Clock::now();
      auto c = impl.store->commit(batch);
      if (c) {
        impl.counters.commits.fetch_add(1, std::memory_order_relaxed);
        impl.counters.commit_latency_us.record(micros_between(start, Clock::now()));
      } else {
        impl.counters.commit_failures.fetch_add(1, std::memory_order_relaxed);
        if (c.error() == errc::store_unavailable) uncertain = true;
      }
      return c;
    });
    if (!r && uncertain && classify(r.error()) == retry_class::retry_higher &&
        already_applied(batch)) {
      impl.log->warn("commit acknowledgement was lost, but the batch is in the store");
      return boost::outcome_v2::success();
    }
    return r;
  }

  /// True when every event of `batch` is stored, in its partition, with its sequence number:
  /// the batch committed although the connection died before we heard so.
  bool already_applied(const CommitBatch& batch) {
    std::vector<IdempotencyKey> ks;
    std::vector<const StoredEvent*> want;
    for (const auto& p : batch.partitions) {
      for (const auto& e : p.events) {
        ks.push_back(IdempotencyKey{e.event.trade_id, e.event.version});
        want.push_back(&e);
      }
    }
    auto found = impl.with_retry("verify commit", [&] { return impl.store->find_events(ks); });
    if (!found) return false;
    for (std::size_t i = 0; i < want.size(); ++i) {
      const auto& f = found.value()[i];
      if (!f || f->seq != want[i]->seq || !f->event.same_content(want[i]->event)) return false;
    }
    return true;
  }

  /// The batch was decided on a stale view (fenced off, lease lost, another writer): drop the
  /// cached state, put the events back at the front of their queues in order, decide again.
  void redecide(boost::system::error_code ec) {
    impl.counters.retry(ec);
    impl.log->warn("batch of {} events refused ({}); deciding it again on fresh state", ops.size(),
                   ec.message());
    const auto now = Clock::now();
    std::vector<Grant> lost;
    for (auto t = taken.rbegin(); t != taken.rend(); ++t) {
      Slot& s = *t->slot;
      s.state.reset();
      if ((ec == errc::fenced_off || ec == errc::lease_lost) && s.grant) {
        impl.counters.lease_losses.fetch_add(1, std::memory_order_relaxed);
        lost.push_back(std::move(*s.grant));  // give it back if it is still ours
        s.grant.reset();
      }
      for (std::size_t i = t->first + t->count; i-- > t->first;) {
        SubmitOp* op = ops[i];
        s.queue.push_front(op);
      }
    }
    if (!lost.empty()) impl.lock->release(lost);
    // Ops that keep bouncing fail instead of looping forever.
    for (const Taken& t : taken) {
      bool bounced_out = false;
      for (std::size_t i = t.first; i < t.first + t.count; ++i)
        if (++ops[i]->redecides > impl.opt.retry.max_attempts) bounced_out = true;
      if (bounced_out) {
        impl.log->error("partition {} kept conflicting; failing its queued events",
                        t.slot->key.to_string());
        fail_queue(*t.slot, ec);
        continue;
      }
      back_off(*t.slot, now);
    }
  }

  /// The store failed past its retry budget: fail the taken events, drop cached state.
  void abandon(boost::system::error_code ec, Clock::time_point now) {
    for (const Taken& t : taken) t.slot->state.reset();
    for (SubmitOp* op : ops) impl.complete(op, ec, Outcome{}, now);
    impl.finished(ops.size());
    for (Slot* s : picked) make_ready(*s);
  }

  /// Releases leases of partitions idle for a while and evicts idle state over the cache limit.
  void housekeeping(Clock::time_point now, bool idle) {
    if (!idle && now - last_housekeeping < std::chrono::milliseconds(100)) return;
    last_housekeeping = now;
    const auto idle_after = impl.lock->lease() / 4;
    std::vector<Grant> release;
    const bool evict = slots.size() > impl.opt.max_cached_partitions;
    std::size_t n_active = 0, n_leases = 0;
    for (auto it = slots.begin(); it != slots.end();) {
      Slot& s = *it->second;
      const bool quiet = s.queue.empty() && !s.ready && !s.waiting;
      if (!quiet) ++n_active;
      if (quiet && s.grant && now - s.last_active > idle_after) {
        release.push_back(*s.grant);
        s.grant.reset();
        s.state.reset();
      }
      if (quiet && evict && !s.grant) {
        it = slots.erase(it);
        continue;
      }
      if (s.grant) ++n_leases;
      ++it;
    }
    if (!release.empty()) impl.lock->release(release);
    cached.store(slots.size(), std::memory_order_relaxed);
    active.store(n_active, std::memory_order_relaxed);
    leases.store(n_leases, std::memory_order_relaxed);
  }

  /// Gives every lease back (at stop).
  void shutdown() {
    timer.cancel();
    std::vector<Grant> release;
    for (auto& [k, s] : slots)
      if (s->grant) release.push_back(*s->grant);
    if (!release.empty()) impl.lock->release(release);
    slots.clear();
    cached.store(0);
    active.store(0);
    leases.store(0);
  }
};

// ------------------------------------------------------------------------------------------

Pipeline::Impl::Impl(std::shared_ptr<TradeStore> s, std::shared_ptr<PartitionLock> l,
                     std::shared_ptr<const Processor> p, PipelineOptions o)
    : store(std::move(s)), lock(std::move(l)), processor(std::move(p)), opt(std::move(o)) {
  log = opt.logger ? opt.logger : spdlog::default_logger();
  if (opt.threads == 0) opt.threads = 1;
  if (opt.max_in_flight == 0) opt.max_in_flight = 1;
  if (opt.max_batch == 0) opt.max_batch = 1;
  if (opt.max_batch_per_partition == 0) opt.max_batch_per_partition = 1;
  if (opt.executor) {
    exec = *opt.executor;
  } else {
    pool = std::make_unique<asio::thread_pool>(opt.threads);
    exec = pool->get_executor();
  }
  for (std::size_t i = 0; i < opt.threads; ++i) shards.push_back(std::make_unique<Shard>(*this, exec));
  log->info("pipeline started: {} shards, store {}, lock {}, max in flight {}, max batch {}",
            opt.threads, store->describe(), lock->describe(), opt.max_in_flight, opt.max_batch);
}

void Pipeline::Impl::complete(SubmitOp* op, boost::system::error_code ec, Outcome o,
                              Clock::time_point now) {
  count(ec, o);
  counters.latency_us.record(micros_between(op->submitted, now));
  if (auto next = gate.leave(op)) shard_for(*next).wake(std::move(*next));
  op->complete(ec, std::move(o));
}

void Pipeline::Impl::stop() {
  std::lock_guard stop_lk(stop_mu);
  if (stopped) return;
  stopping.store(true);
  {
    std::lock_guard lk(admit_mu);
    admit_cv.notify_all();
  }
  // Finish every accepted submission.
  {
    std::unique_lock lk(admit_mu);
    waiters.fetch_add(1);
    admit_cv.wait(lk, [&] { return in_flight.load() == 0; });
    waiters.fetch_sub(1);
  }
  for (auto& sh : shards) {
    std::promise<void> done;
    asio::post(sh->strand, [&] {
      sh->shutdown();
      done.set_value();
    });
    done.get_future().wait();
  }
  if (pool) pool->join();
  stopped = true;
  log->info("pipeline stopped");
}

// ------------------------------------------------------------------------------------------

Pipeline::Pipeline(std::shared_ptr<TradeStore> store, std::shared_ptr<PartitionLock> lock,
                   std::shared_ptr<const Processor> processor, PipelineOptions options)
    : impl_(std::make_unique<Impl>(std::move(store), std::move(lock), std::move(processor),
                                   std::move(options))) {}

Pipeline::~Pipeline() { impl_->stop(); }

void Pipeline::enqueue_(std::unique_ptr<SubmitOp> op) {
  Impl& im = *impl_;
  if (im.stopping.load(std::memory_order_acquire)) {
    im.count(errc::stopped, {});
    op.release()->complete(errc::stopped, Outcome{});
    return;
  }
  if (std::string reason = validate(op->event); !reason.empty()) {
    Outcome o = Outcome::rejected(std::move(reason));
    im.count({}, o);
    op.release()->complete({}, std::move(o));
    return;
  }
  if (auto ec = im.admit()) {
    im.count(ec, {});
    op.release()->complete(ec, Outcome{});
    return;
  }
  op->key_hash = key_hash_of(op->event);
  im.shard_for(op->event.partition).push(op.release());
}

result<Outcome> Pipeline::submit(TradeEvent event) {
  std::promise<result<Outcome>> p;
  auto f = p.get_future();
  async_submit(std::move(event), [&p](boost::system::error_code ec, Outcome o) {
    if (ec) {
      p.set_value(ec);
    } else {
      p.set_value(std::move(o));
    }
  });
  return f.get();
}

void Pipeline::drain() {
  Impl& im = *impl_;
  std::unique_lock lk(im.admit_mu);
  im.waiters.fetch_add(1);
  im.admit_cv.wait(lk, [&] { return im.in_flight.load() == 0; });
  im.waiters.fetch_sub(1);
}

void Pipeline::stop() { impl_->stop(); }

PipelineMetrics Pipeline::metrics() const {
  const Counters& c = impl_->counters;
  PipelineMetrics m;
  m.accepted = c.accepted.load();
  m.duplicate = c.duplicate.load();
  m.stale = c.stale.load();
  m.rejected = c.rejected.load();
  m.failed = c.failed.load();
  m.batches = c.batches.load();
  m.commits = c.commits.load();
  m.commit_failures = c.commit_failures.load();
  m.retries = c.retries.load();
  m.lock_grants = c.lock_grants.load();
  m.lock_busy = c.lock_busy.load();
  m.lease_losses = c.lease_losses.load();
  m.queue_depth = c.queue_depth.load();
  m.in_flight = impl_->in_flight.load();
  for (std::size_t i = 0; i < retry_cause_count; ++i) m.retries_by_cause[i] = c.retries_by_cause[i].load();
  for (const auto& sh : impl_->shards) {
    m.partitions_cached += sh->cached.load();
    m.partitions_active += sh->active.load();
    m.leases_held += sh->leases.load();
  }
  m.lock_wait_us = c.lock_wait_us.snapshot();
  m.store = impl_->store->stats();
  m.batch_size = c.batch_size.snapshot();
  m.commit_latency_us = c.commit_latency_us.snapshot();
  m.latency_us = c.latency_us.snapshot();
  return m;
}

}  // namespace tradecapture
