// The partition-sequential pipeline: the Asio shell around the shard state machines.
//
// Every partition belongs to one shard (by hash). A submission is validated, admitted (in-flight
// bound, admission.hpp), gets its shard's next stamp, enters the global key gate (key_gate.hpp)
// and its shard's inbox, all under that shard's inbox lock, so the order of events of one
// partition and the order of events sharing an idempotency key are one consistent order. A shard
// runs on a strand: it moves its inbox into its ShardCore (shard_core.hpp), which decides
// everything; the shell only executes the core's actions against the store and the lock, arms a
// timer when the core asks to wait (never a sleep on an executor thread), and delivers the
// completions the core produces. An overlapped commit (PipelineOptions::overlap_commits) runs on
// a commit thread of its own while the strand goes on with the next batch; its result comes back
// to the strand.

#include <tradecapture/pipeline.hpp>

#include "admission.hpp"
#include "op_state.hpp"
#include "key_gate.hpp"
#include "shard_core.hpp"

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <future>
#include <mutex>
#include <random>

namespace tradecapture {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using detail::Action;
using detail::SubmitOp;

using detail::micros_between;

// ------------------------------------------------------------------------------------------

struct Pipeline::Impl {
  struct Shard;

  std::shared_ptr<TradeStore> store;
  std::shared_ptr<PartitionLock> lock;
  std::shared_ptr<const Processor> processor;
  PipelineOptions opt;
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<asio::thread_pool> pool;
  /// Runs the overlapped commits (PipelineOptions::overlap_commits): one thread per shard, so a
  /// commit never waits for a shard's executor thread, nor a shard for a commit.
  std::unique_ptr<asio::thread_pool> commit_pool;
  asio::any_io_executor exec;
  std::vector<std::unique_ptr<Shard>> shards;
  detail::KeyGate gate;
  detail::Counters counters;
  /// The memory of submissions (SubmitOpImpl::make); outlives every op: stop() completes them.
  struct PoolDeleter {
    void operator()(detail::OpPool* p) const noexcept { detail::destroy_op_pool(p); }
  };
  std::unique_ptr<detail::OpPool, PoolDeleter> op_pool{detail::make_op_pool()};
  std::shared_ptr<detail::Admission> admission = std::make_shared<detail::Admission>();
  std::mutex stop_mu;
  bool stopped = false;

  Impl(std::shared_ptr<TradeStore> s, std::shared_ptr<PartitionLock> l,
       std::shared_ptr<const Processor> p, PipelineOptions o);

  Shard& shard_for(const PartitionKey& k) {
    return *shards[PartitionKeyHash{}(k) % shards.size()];
  }

  /// The shard of `op`'s partition; the partition's hash is kept in the op for the shard's map.
  Shard& shard_for(SubmitOp* op) {
    const std::size_t h = PartitionKeyHash{}(op->event.partition);
    detail::state_of(op).partition_hash = h;
    return *shards[h % shards.size()];
  }

  /// Completes an op that went through the gate and the in-flight count.
  void complete(SubmitOp* op, boost::system::error_code ec, Outcome o, Clock::time_point now) {
    counters.count(ec, o);
    counters.latency_us.record(micros_between(op->submitted, now));
    if (auto next = gate.leave(op)) wake(*next);
    op->complete(ec, std::move(o));
  }

  void wake(const PartitionKey& key);
  bool stop(std::optional<std::chrono::milliseconds> timeout);
};

// ------------------------------------------------------------------------------------------

struct Pipeline::Impl::Shard {
  Impl& impl;
  asio::strand<asio::any_io_executor> strand;
  asio::steady_timer timer;
  detail::ShardCore core;

  std::mutex inbox_mu;
  std::vector<SubmitOp*> inbox;     // guarded by inbox_mu
  std::vector<PartitionKey> wakes;  // guarded by inbox_mu
  bool scheduled = false;           // guarded by inbox_mu
  std::atomic<std::uint64_t> next_stamp{1};

  // Owned by the strand.
  Clock::time_point timer_at = Clock::time_point::max();
  std::vector<SubmitOp*> absorbed;          // absorb's share of the inbox
  std::vector<PartitionKey> absorbed_wakes;  // absorb's share of the wakes
  std::vector<detail::Completion> delivered;  // deliver's, kept for its capacity
  std::atomic<std::size_t> cached{0}, active{0}, leases{0};  // for metrics

  Shard(Impl& i, asio::any_io_executor ex, std::size_t index)
      : impl(i),
        strand(asio::make_strand(ex)),
        timer(strand),
        core(config(i, index), i.processor, i.counters, i.log) {}

  static detail::ShardConfig config(const Impl& i, std::size_t index) {
    detail::ShardConfig c;
    c.max_batch = i.opt.max_batch;
    c.max_batch_per_partition = i.opt.max_batch_per_partition;
    c.max_cached_partitions = i.opt.max_cached_partitions;
    c.retry = i.opt.retry;
    c.lease = i.lock->lease();
    c.sticky_failures = i.opt.sticky_failures;
    c.overlap = i.opt.overlap_commits;
    c.store_name = i.store->describe();
    c.lock_name = i.lock->describe();
    c.seed = std::random_device{}() ^ (index * 0x9E3779B97F4A7C15ull);
    return c;
  }

  /// Called with inbox_mu held: posts `run` unless already scheduled.
  void schedule_locked() {
    if (!scheduled) {
      scheduled = true;
      asio::post(strand, [this] { run(); });
    }
  }

  void push(SubmitOp* op) {
    std::lock_guard lk(inbox_mu);
    state_of(op).stamp = next_stamp.fetch_add(1, std::memory_order_acq_rel);
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

  /// Moves the inbox into the core.
  void absorb(Clock::time_point now) {
    // Swapped with the inbox: the vectors' capacity goes back and forth, never reallocated.
    std::vector<SubmitOp*>& in = absorbed;
    std::vector<PartitionKey>& wk = absorbed_wakes;
    in.clear();
    wk.clear();
    {
      std::lock_guard lk(inbox_mu);
      in.swap(inbox);
      wk.swap(wakes);
    }
    if (in.empty() && wk.empty()) return;
    impl.counters.queue_depth.fetch_sub(in.size(), std::memory_order_relaxed);
    core.set_stamp_now(next_stamp.load(std::memory_order_acquire));
    for (SubmitOp* op : in) core.add(op, now);
    for (auto& k : wk) core.wake(k);
    deliver();
  }

  /// Before each result is fed: a failure decided now covers everything submitted until now.
  void stamp() { core.set_stamp_now(next_stamp.load(std::memory_order_acquire)); }

  void deliver() {
    auto& done = delivered;
    core.take_completions(done);
    if (done.empty()) return;
    const auto now = Clock::now();
    // The slots are free before the handlers run: a handler that submits again is not refused.
    impl.admission->completing(done.size());
    for (auto& c : done) impl.complete(c.op, c.ec, std::move(c.outcome), now);
    impl.admission->completed(done.size());
  }

  /// Runs the core until it waits or idles (yielding the thread now and then).
  void run() {
    for (int round = 0; round < 64; ++round) {
      absorb(Clock::now());
      Action a = core.next(Clock::now());
      deliver();
      if (!execute(a)) {
        publish_metrics();
        std::lock_guard lk(inbox_mu);
        if (inbox.empty() && wakes.empty()) {
          scheduled = false;
          return;
        }
      }
    }
    publish_metrics();
    asio::post(strand, [this] { run(); });  // still busy: let other work on the executor run
  }

  /// Executes one action; false when the core has nothing to do right now.
  bool execute(Action& a) {
    switch (a.kind) {
      case Action::Kind::idle:
        return false;
      case Action::Kind::wait:
        arm_timer(a.until);
        return false;
      case Action::Kind::release:
        impl.lock->release(a.grants);
        return true;
      case Action::Kind::acquire: {
        auto r = impl.lock->try_acquire(a.keys);
        stamp();
        core.on_acquired(std::move(r), Clock::now());
        break;
      }
      case Action::Kind::renew: {
        auto r = impl.lock->renew(a.grants);
        stamp();
        core.on_renewed(std::move(a.grants), std::move(r), Clock::now());
        break;
      }
      case Action::Kind::claim: {
        auto r = impl.store->claim_partitions(a.keys);
        stamp();
        core.on_claimed(std::move(r), Clock::now());
        break;
      }
      case Action::Kind::load: {
        auto r = impl.store->load_partitions(a.keys);
        stamp();
        core.on_claimed(std::move(r), Clock::now());
        break;
      }
      case Action::Kind::find: {
        // Into the core's vector of the last lookup, handed back: a lookup allocates nothing.
        auto found = core.take_found_buffer();
        auto r = impl.store->find_events_into(*a.idem_keys, found);
        stamp();
        if (r) {
          core.on_found(std::move(found), Clock::now());
        } else {
          core.on_found(r.error(), Clock::now());
        }
        break;
      }
      case Action::Kind::commit: {
        if (a.overlapped) {
          commit_in_background(std::move(a.batch));
          return true;
        }
        auto r = impl.store->commit(*a.batch);
        // Let go of the batch before the result is fed: the core reuses it (and its partition
        // updates' vectors) for the next batch only when nothing else holds it.
        a.batch.reset();
        stamp();
        core.on_committed(std::move(r), Clock::now());
        break;
      }
      case Action::Kind::verify: {
        auto r = impl.store->find_events(*a.idem_keys);
        stamp();
        core.on_verified(std::move(r), Clock::now());
        break;
      }
      case Action::Kind::sources: {
        auto r = detail::read_source_offsets(*impl.store, a.consumers);
        stamp();
        core.on_sources(std::move(r), Clock::now());
        break;
      }
    }
    deliver();
    return true;
  }

  /// An overlapped commit: runs on the commit pool while the core goes on with the next batch;
  /// its result is fed on the strand.
  void commit_in_background(std::shared_ptr<const CommitBatch> batch) {
    asio::post(*impl.commit_pool, [this, batch = std::move(batch)]() mutable {
      auto r = impl.store->commit(*batch);
      batch.reset();  // before the result is fed: the core reuses the batch (see below)
      asio::post(strand, [this, r = std::move(r)]() mutable {
        stamp();
        core.on_committed(std::move(r), Clock::now());
        deliver();
        run();  // on the strand already: the next batch's commit goes out now
      });
    });
  }

  void arm_timer(Clock::time_point at) {
    if (at >= timer_at) return;
    timer_at = at;
    timer.expires_at(at);
    timer.async_wait(asio::bind_executor(strand, [this](boost::system::error_code ec) {
      if (ec) return;  // cancelled: `this` may be gone, or a new wait replaced this one
      timer_at = Clock::time_point::max();
      std::lock_guard lk(inbox_mu);
      schedule_locked();
    }));
  }

  void publish_metrics() {
    cached.store(core.cached(), std::memory_order_relaxed);
    active.store(core.active(), std::memory_order_relaxed);
    leases.store(core.leases(), std::memory_order_relaxed);
  }

  /// Withdraws everything not under way (stop timeout).
  void abort(boost::system::error_code ec) {
    absorb(Clock::now());
    stamp();
    core.abort_all(ec, Clock::now());
    deliver();
  }

  /// Gives every lease back (at stop).
  void shutdown() {
    timer.cancel();
    auto grants = core.shutdown();
    if (!grants.empty()) impl.lock->release(grants);
    publish_metrics();
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
  admission->configure(opt.max_in_flight, opt.on_overload);
  if (opt.executor) {
    exec = *opt.executor;
  } else {
    pool = std::make_unique<asio::thread_pool>(opt.threads);
    exec = pool->get_executor();
  }
  if (opt.overlap_commits) commit_pool = std::make_unique<asio::thread_pool>(opt.threads);
  for (std::size_t i = 0; i < opt.threads; ++i)
    shards.push_back(std::make_unique<Shard>(*this, exec, i));
  log->info("pipeline started: {} shards, store {}, lock {}, max in flight {}, max batch {}",
            opt.threads, store->describe(), lock->describe(), opt.max_in_flight, opt.max_batch);
}

void Pipeline::Impl::wake(const PartitionKey& key) { shard_for(key).wake(key); }

bool Pipeline::Impl::stop(std::optional<std::chrono::milliseconds> timeout) {
  std::lock_guard stop_lk(stop_mu);
  if (stopped) return true;
  admission->begin_stop();
  bool in_time = true;
  if (timeout) {
    in_time = admission->wait_empty_for(*timeout);
    if (!in_time) {
      log->warn("pipeline stop: {} submissions not finished after {} ms; withdrawing them",
                admission->in_flight(), timeout->count());
      for (auto& sh : shards) {
        std::promise<void> done;
        asio::post(sh->strand, [&] {
          sh->abort(errc::stopped);
          done.set_value();
        });
        done.get_future().wait();
      }
    }
  }
  // Finish every accepted submission (after an abort: only the store calls under way).
  admission->wait_empty();
  for (auto& sh : shards) {
    std::promise<void> done;
    asio::post(sh->strand, [&] {
      sh->shutdown();
      done.set_value();
    });
    done.get_future().wait();
  }
  if (commit_pool) commit_pool->join();
  if (pool) pool->join();
  stopped = true;
  log->info("pipeline stopped");
  return in_time;
}

// ------------------------------------------------------------------------------------------

Pipeline::Pipeline(std::shared_ptr<TradeStore> store, std::shared_ptr<PartitionLock> lock,
                   std::shared_ptr<const Processor> processor, PipelineOptions options)
    : impl_(std::make_unique<Impl>(std::move(store), std::move(lock), std::move(processor),
                                   std::move(options))) {}

Pipeline::~Pipeline() { impl_->stop(std::nullopt); }

detail::OpPool* Pipeline::op_pool_() const noexcept { return impl_->op_pool.get(); }

void Pipeline::enqueue_(detail::SubmitOpPtr op, bool validated) {
  Impl& im = *impl_;
  if (im.admission->stopping()) {
    im.counters.count(errc::stopped, {});
    op.release()->complete(errc::stopped, Outcome{});
    return;
  }
  // Every submission is validated here, unless it comes from an ingress of the library that
  // validated it itself (detail::PrevalidatedSubmit: the gateway, the Kafka source).
  if (std::string reason = validated ? std::string() : validate(op->event); !reason.empty()) {
    Outcome o = Outcome::rejected(std::move(reason));
    im.counters.count({}, o);
    op.release()->complete({}, std::move(o));
    return;
  }
  if (auto ec = im.admission->admit()) {
    im.counters.count(ec, {});
    op.release()->complete(ec, Outcome{});
    return;
  }
  detail::state_of(op.get()).key_hash = detail::key_hash_of(op->event);
  im.shard_for(op.get()).push(op.release());
}

// ---- whole-batch admission -----------------------------------------------------------------

Pipeline::Reservation::Reservation(Reservation&& other) noexcept
    : admission_(std::move(other.admission_)), size_(std::exchange(other.size_, 0)) {}

Pipeline::Reservation& Pipeline::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    release();
    admission_ = std::move(other.admission_);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

Pipeline::Reservation::~Reservation() { release(); }

void Pipeline::Reservation::release() noexcept {
  if (admission_ && size_ != 0) admission_->release_reserved(size_);
  admission_.reset();
  size_ = 0;
}

result<Pipeline::Reservation> Pipeline::try_reserve(std::size_t n) {
  if (auto ec = impl_->admission->reserve(n)) return ec;
  return Reservation(impl_->admission, n);
}

std::size_t Pipeline::in_flight() const noexcept { return impl_->admission->in_flight(); }

std::size_t Pipeline::max_in_flight() const noexcept { return impl_->admission->max_in_flight(); }

namespace {

/// The results of one batch, filled by its events' completions (each writes its own slot).
struct BatchState {
  std::unique_ptr<detail::BatchOp> op;
  std::vector<Outcome> outcomes;
  std::vector<boost::system::error_code> errors;
  /// Events not completed, plus one held by the submitting thread until every event is in.
  std::atomic<std::size_t> remaining;

  BatchState(std::unique_ptr<detail::BatchOp> o, std::size_t n)
      : op(std::move(o)), outcomes(n), errors(n), remaining(n + 1) {}

  void done(std::size_t i, boost::system::error_code ec, Outcome o) {
    if (ec) {
      errors[i] = ec;
    } else {
      outcomes[i] = std::move(o);
    }
    arrive();
  }

  void arrive() {
    if (remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    boost::system::error_code first;
    std::vector<result<Outcome>> results;
    results.reserve(outcomes.size());
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
      if (errors[i]) {
        if (!first) first = errors[i];
        results.emplace_back(errors[i]);
      } else {
        results.emplace_back(std::move(outcomes[i]));
      }
    }
    op.release()->complete(first, std::move(results));
  }
};

/// One event of a batch: its completion goes into the batch's results.
struct BatchMemberOp final : SubmitOp {
  std::shared_ptr<BatchState> state;
  std::size_t index;
  BatchMemberOp(TradeEvent&& e, std::shared_ptr<BatchState> s, std::size_t i)
      : SubmitOp(std::move(e)), state(std::move(s)), index(i) {}
  void complete(boost::system::error_code ec, Outcome outcome) override {
    auto s = std::move(state);
    const std::size_t i = index;
    delete this;
    s->done(i, ec, std::move(outcome));
  }
};

}  // namespace

void Pipeline::enqueue_batch_(std::vector<TradeEvent> events, Reservation reservation,
                              const SubmitOptions& options, bool validated,
                              std::unique_ptr<detail::BatchOp> op) {
  Impl& im = *impl_;
  // A reservation of another pipeline gives no room here (it is released as it is dropped).
  std::size_t reserved = reservation.admission_ == im.admission ? reservation.size() : 0;
  const std::size_t use = std::min(reserved, events.size());
  // From here the used slots count as admitted events (drain and stop wait for them); those
  // whose event completes at once are freed below, the rest when their event completes.
  im.admission->use_reserved(use);
  reservation.size_ -= use;
  reservation.release();
  std::size_t slots = use;
  std::size_t unused_slots = 0;
  auto state = std::make_shared<BatchState>(std::move(op), events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    auto m = std::make_unique<BatchMemberOp>(std::move(events[i]), state, i);
    if (options.deadline) m->deadline = *options.deadline;
    if (options.source.hook != nullptr) {
      // Consecutive messages of one stream: event i is at the batch's position + i.
      m->source = options.source;
      m->source.position += static_cast<std::int64_t>(i);
    }
    const bool has_slot = slots > 0;
    if (has_slot) --slots;
    if (im.admission->stopping()) {
      if (has_slot) ++unused_slots;
      im.counters.count(errc::stopped, {});
      m.release()->complete(errc::stopped, Outcome{});
      continue;
    }
    if (std::string reason = validated ? std::string() : validate(m->event); !reason.empty()) {
      if (has_slot) ++unused_slots;
      Outcome o = Outcome::rejected(std::move(reason));
      im.counters.count({}, o);
      m.release()->complete({}, std::move(o));
      continue;
    }
    if (!has_slot) {
      if (auto ec = im.admission->admit()) {
        im.counters.count(ec, {});
        m.release()->complete(ec, Outcome{});
        continue;
      }
    }
    detail::state_of(m.get()).key_hash = detail::key_hash_of(m->event);
    im.shard_for(m.get()).push(m.release());
  }
  if (unused_slots != 0) im.admission->finished(unused_slots);
  state->arrive();  // the submitting thread's share: the batch may complete from here on
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

void Pipeline::drain() { impl_->admission->wait_empty(); }

void Pipeline::stop() { impl_->stop(std::nullopt); }

bool Pipeline::stop(std::chrono::milliseconds timeout) { return impl_->stop(timeout); }

PipelineMetrics Pipeline::metrics() const {
  const detail::Counters& c = impl_->counters;
  PipelineMetrics m;
  m.accepted = c.accepted.load();
  m.duplicate = c.duplicate.load();
  m.stale = c.stale.load();
  m.rejected = c.rejected.load();
  m.failed = c.failed.load();
  m.replayed = c.replayed.load();
  m.batches = c.batches.load();
  m.commits = c.commits.load();
  m.commit_failures = c.commit_failures.load();
  m.retries = c.retries.load();
  m.lock_grants = c.lock_grants.load();
  m.lock_busy = c.lock_busy.load();
  m.lease_losses = c.lease_losses.load();
  m.queue_depth = c.queue_depth.load();
  m.in_flight = impl_->admission->in_flight();
  m.reserved = impl_->admission->reserved();
  for (std::size_t i = 0; i < retry_cause_count; ++i)
    m.retries_by_cause[i] = c.retries_by_cause[i].load();
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
