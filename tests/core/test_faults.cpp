// Spec section 6 through the real (threaded) pipeline on the memory store: each case is one of
// the faults of the fault-contract issue, and fails on the code before the fix. The seeded
// simulator (tests/sim) covers the same points by the thousand without threads.

#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/store_wrapper.hpp>

#include "../src/shard_core.hpp"
#include "../src/op_state.hpp"
#include "support/down_store.hpp"
#include "support/events.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

using namespace tradecapture;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

using tctest::dec;
using tctest::ev;

const PartitionKey P{"ACC", "BOOK", "SEC"};

/// A store that is down (every call store_unavailable) while `down` is set; counts the commits
/// tried.
class OutageStore final : public tctest::DownStore {
 public:
  using DownStore::DownStore;
  std::atomic<int> commits{0};

 protected:
  result<void> do_commit_(const CommitBatch& b) override {
    ++commits;
    return DownStore::do_commit_(b);
  }
};

/// One shard, retried after 1 ms backing off to at most 5 ms.
PipelineOptions fast_retries() {
  PipelineOptions o;
  o.threads = 1;
  o.retry.initial_backoff = 1ms;
  o.retry.max_backoff = 5ms;
  return o;
}

PipelineOptions short_budget() {
  PipelineOptions o = fast_retries();
  o.max_batch_per_partition = 1;  // one event of a partition per batch: a backlog forms
  o.retry.budget = 60ms;
  return o;
}

struct Result {
  boost::system::error_code ec;
  Outcome outcome;
};

std::vector<std::future<Result>> submit_all(Pipeline& pl, const std::vector<TradeEvent>& evs,
                                            SubmitOptions so = {}) {
  std::vector<std::future<Result>> out;
  for (const auto& e : evs) {
    auto p = std::make_shared<std::promise<Result>>();
    out.push_back(p->get_future());
    pl.async_submit(e, so, [p](boost::system::error_code ec, Outcome o) {
      p->set_value(Result{ec, std::move(o)});
    });
  }
  return out;
}

}  // namespace

TEST_CASE("faults: a partition never moves past a failure; a re-send gives the sequential result") {
  auto inner = make_memory_store();
  auto store = std::make_shared<OutageStore>(inner);
  Pipeline pl(store, make_local_lock(), make_position_processor(), short_budget());
  REQUIRE(pl.submit(ev("T", 1, TradeType::New, P)));  // the trade is live

  // A backlog of the partition behind an outage longer than the budget. The outage ends while
  // later events are still queued: none of them may be decided after the first failure.
  std::vector<TradeEvent> evs = {ev("T", 2, TradeType::Cancel, P),
                                 ev("T", 3, TradeType::Amend, P, Side::Buy, "5"),
                                 ev("U", 1, TradeType::New, P)};
  store->down = true;
  auto futs = submit_all(pl, evs);
  std::thread heal([&] {
    std::this_thread::sleep_for(100ms);
    store->down = false;
  });
  std::vector<Result> got;
  for (auto& f : futs) got.push_back(f.get());
  heal.join();
  REQUIRE(got[0].ec);  // the cancel failed past the budget
  for (std::size_t i = 1; i < got.size(); ++i) {
    INFO("event " << i);
    CHECK(got[i].ec);  // never decided after the cancel failed
  }
  // Re-send from the first event without an outcome, in order: exactly the sequential result.
  store->down = false;
  auto again = submit_all(pl, evs);
  CHECK(again[0].get().outcome == Outcome::accepted(2));
  auto amend = again[1].get();
  CHECK(amend.outcome.kind == OutcomeKind::Rejected);
  CHECK(amend.outcome.reason == "trade cancelled");
  CHECK(again[2].get().outcome == Outcome::accepted(3));
  auto rows = inner->positions();
  REQUIRE(rows);
  REQUIRE(rows.value().size() == 1);
  CHECK(rows.value()[0].position.live_trades == 1);
  CHECK(rows.value()[0].position.net_quantity == dec("10"));
}

TEST_CASE("faults: outcomes that write nothing are never decided on a copy another host moved past") {
  // Two hosts share the store; each has its own lock (as after a lock server forgot its keys),
  // so both believe they hold the partition.
  auto store = make_memory_store();
  PipelineOptions o = fast_retries();
  Pipeline a(store, make_local_lock(), make_position_processor(), o);
  Pipeline b(store, make_local_lock(), make_position_processor(), o);
  REQUIRE(a.submit(ev("T1", 1, TradeType::New, P)).value() == Outcome::accepted(1));
  // B claims the partition and accepts a new trade; A's cached copy does not know it.
  REQUIRE(b.submit(ev("T2", 1, TradeType::New, P)).value() == Outcome::accepted(2));
  // An amend of T2 sent to A: on A's stale copy it would be "unknown trade".
  auto r = a.submit(ev("T2", 2, TradeType::Amend, P, Side::Buy, "7"));
  REQUIRE(r);
  CHECK(r.value() == Outcome::accepted(3));
  // A STALE decided on a stale copy is refused the same way: B amends T1 to v3 first.
  REQUIRE(b.submit(ev("T1", 3, TradeType::Amend, P, Side::Buy, "4")).value() ==
          Outcome::accepted(4));
  auto s = a.submit(ev("T1", 2, TradeType::Amend, P, Side::Buy, "6"));
  REQUIRE(s);
  CHECK(s.value() == Outcome::stale());
  auto c = a.submit(ev("T1", 4, TradeType::Cancel, P));
  REQUIRE(c);
  CHECK(c.value() == Outcome::accepted(5));
}

TEST_CASE("faults: an absent key seen by a decision is re-checked in the commit") {
  // A decides AMEND K v2 in P as "unknown trade" (its key absent: P holds no trade K, so it is
  // not even looked up). Between A's decision and A's commit another host accepts (K, 2) in
  // partition Q: at A's commit the right answer is "conflict", and A must not report "unknown
  // trade" from its stale global view.
  class RaceStore final : public TradeStoreWrapper {
   public:
    using TradeStoreWrapper::TradeStoreWrapper;
    std::function<void()> before_commit;

   protected:
    result<void> do_commit_(const CommitBatch& b) override {
      if (before_commit) std::exchange(before_commit, {})();
      return TradeStoreWrapper::do_commit_(b);
    }
  };
  auto inner = make_memory_store();
  auto store = std::make_shared<RaceStore>(inner);
  PipelineOptions o = fast_retries();
  const PartitionKey Q{"ACC", "BOOK", "OTHER"};
  Pipeline other(inner, make_local_lock(), make_position_processor(), o);
  REQUIRE(other.submit(ev("K", 1, TradeType::New, Q)).value() == Outcome::accepted(1));
  Pipeline a(store, make_local_lock(), make_position_processor(), o);
  store->before_commit = [&] {
    auto r = other.submit(ev("K", 2, TradeType::Amend, Q, Side::Buy, "3"));
    REQUIRE(r);
    REQUIRE(r.value() == Outcome::accepted(2));
  };
  auto r = a.submit(ev("K", 2, TradeType::Amend, P, Side::Buy, "7"));
  REQUIRE(r);
  CHECK(r.value().kind == OutcomeKind::Rejected);
  CHECK(r.value().reason.rfind("conflict:", 0) == 0);
}

TEST_CASE("faults: an event past its deadline is withdrawn, with everything queued behind it") {
  auto store = make_memory_store();
  auto lock = make_local_lock(std::chrono::milliseconds(60000));
  // Another holder keeps the partition: nothing of it can be decided for now.
  auto held = lock->try_acquire(std::span<const PartitionKey>(&P, 1));
  REQUIRE(held);
  REQUIRE(held.value()[0]);
  PipelineOptions o = fast_retries();
  Pipeline pl(store, lock, make_position_processor(), o);
  SubmitOptions so;
  so.deadline = Clock::now() + 50ms;
  auto first = submit_all(pl, {ev("D", 1, TradeType::New, P)}, so);
  auto behind = submit_all(pl, {ev("E", 1, TradeType::New, P)});  // no deadline of its own
  auto r1 = first[0].get();
  auto r2 = behind[0].get();
  CHECK(r1.ec == errc::deadline_exceeded);
  CHECK(r2.ec == errc::predecessor_failed);
  // The holder lets go: nothing withdrawn is decided later.
  lock->release(std::span<const Grant>(&held.value()[0].value(), 1));
  auto later = pl.submit(ev("F", 1, TradeType::New, P));
  REQUIRE(later);
  CHECK(later.value() == Outcome::accepted(1));
  pl.drain();
  bool found_withdrawn = false;
  REQUIRE(store->scan_events([&](const StoredEvent& se) {
    if (se.event.trade_id != "F") found_withdrawn = true;
    return true;
  }));
  CHECK_FALSE(found_withdrawn);
}

TEST_CASE("faults: a partition held elsewhere fails within the retry budget, not forever") {
  auto store = make_memory_store();
  auto lock = make_local_lock(std::chrono::milliseconds(60000));
  auto held = lock->try_acquire(std::span<const PartitionKey>(&P, 1));
  REQUIRE(held);
  PipelineOptions o = short_budget();
  Pipeline pl(store, lock, make_position_processor(), o);
  const auto start = Clock::now();
  auto r = pl.submit(ev("B", 1, TradeType::New, P));
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::lock_busy);
  CHECK(Clock::now() - start < 5s);
}

TEST_CASE("faults: stop(timeout) withdraws what is not decided and returns") {
  auto inner = make_memory_store();
  auto store = std::make_shared<OutageStore>(inner);
  PipelineOptions o = fast_retries();
  o.retry.budget = std::chrono::hours(1);  // retries would go on for an hour
  o.retry.max_attempts = 1 << 30;
  auto pl = std::make_unique<Pipeline>(store, make_local_lock(), make_position_processor(), o);
  store->down = true;
  auto futs = submit_all(*pl, {ev("S", 1, TradeType::New, P), ev("S2", 1, TradeType::New, P)});
  const auto start = Clock::now();
  CHECK_FALSE(pl->stop(100ms));
  CHECK(Clock::now() - start < 5s);
  for (auto& f : futs) CHECK(f.get().ec);
  store->down = false;
  auto rows = inner->positions();
  REQUIRE(rows);
  CHECK(rows.value().empty());
}

namespace {

struct StepOp final : detail::SubmitOp {
  using SubmitOp::SubmitOp;
  boost::system::error_code ec;
  Outcome outcome;
  bool done = false;
  void complete(boost::system::error_code e, Outcome o) override {
    ec = e;
    outcome = std::move(o);
    done = true;
  }
};

using Kind = detail::Action::Kind;

/// A shard core stepped by hand, without threads, clocks or servers: one batch of `ops`, each the
/// head of its key gate, stamped in submission order.
struct SteppedCore {
  detail::Counters counters;
  detail::ShardCore core{detail::ShardConfig{}, make_position_processor(), counters, nullptr};
  const Clock::time_point t0{std::chrono::hours(1000)};

  explicit SteppedCore(const std::vector<StepOp*>& ops) {
    std::uint64_t stamp = 1;
    for (StepOp* op : ops) {
      detail::state_of(op).gate_head = true;
      detail::state_of(op).stamp = stamp++;
    }
    core.set_stamp_now(stamp);
    for (StepOp* op : ops) core.add(op, t0);
  }

  /// Steps the core until it is idle (40 steps at most, a second apart), completing the ops as
  /// it goes. Each action goes to `store` or `lock` unless `take` takes it over (returns true);
  /// returns the actions seen.
  std::vector<Kind> run(TradeStore& store, PartitionLock& lock,
                        const std::function<bool(detail::Action&, Clock::time_point)>& take = {}) {
    std::vector<Kind> seen;
    for (int i = 0; i < 40; ++i) {
      const auto now = t0 + std::chrono::seconds(i);
      auto act = core.next(now);
      seen.push_back(act.kind);
      if (act.kind == Kind::idle) break;
      if (!take || !take(act, now)) forward(store, lock, act, now);
      for (auto& c : core.take_completions()) c.op->complete(c.ec, c.outcome);
    }
    return seen;
  }

 private:
  void forward(TradeStore& store, PartitionLock& lock, detail::Action& act,
               Clock::time_point now) {
    switch (act.kind) {
      case Kind::acquire: core.on_acquired(lock.try_acquire(act.keys), now); break;
      case Kind::renew: {
        auto r = lock.renew(act.grants);
        core.on_renewed(std::move(act.grants), std::move(r), now);
        break;
      }
      case Kind::claim: core.on_claimed(store.claim_partitions(act.keys), now); break;
      case Kind::find: core.on_found(store.find_events(*act.idem_keys), now); break;
      case Kind::verify: core.on_verified(store.find_events(*act.idem_keys), now); break;
      case Kind::sources:
        core.on_sources(detail::read_source_offsets(store, act.consumers), now);
        break;
      case Kind::commit: core.on_committed(store.commit(*act.batch), now); break;
      default: break;
    }
  }
};

/// How the first commit's acknowledgement is lost.
enum class LostAck {
  applied,                ///< applied, reported store_unavailable
  applied_unknown_fence,  ///< the same, but the store does not say which fence wrote the events
  other_writer,           ///< not applied: another claimant stored the same events first
};

/// Runs one batch of `ops` through a core step by step, the first commit's acknowledgement lost
/// as `how` says; returns the actions seen.
std::vector<Kind> lost_ack_batch(std::vector<StepOp*> ops, LostAck how = LostAck::applied) {
  SteppedCore stepped(ops);
  auto store = make_memory_store();
  auto lock = make_local_lock();
  bool lost_one = false;
  return stepped.run(*store, *lock, [&](detail::Action& act, Clock::time_point now) {
    if (act.kind == Kind::verify && how == LostAck::applied_unknown_fence) {
      auto found = store->find_events(*act.idem_keys);
      if (found) {
        for (auto& f : found.value())
          if (f) f->fence = 0;
      }
      stepped.core.on_verified(std::move(found), now);
      return true;
    }
    if (act.kind != Kind::commit || lost_one) return false;
    lost_one = true;
    if (how == LostAck::other_writer) {
      // Another host claimed the partitions after us and committed the same decisions.
      CommitBatch theirs = *act.batch;
      std::vector<PartitionKey> keys;
      for (const auto& u : theirs.partitions) keys.push_back(u.partition);
      auto claimed = store->claim_partitions(keys);
      REQUIRE(claimed);
      for (std::size_t k = 0; k < keys.size(); ++k)
        theirs.partitions[k].fence = claimed.value()[k].fence;
      REQUIRE(store->commit(theirs));
      CHECK(store->commit(*act.batch).error() == errc::fenced_off);
    } else {
      REQUIRE(store->commit(*act.batch));
    }
    stepped.core.on_committed(make_error_code(errc::store_unavailable), now);
    return true;
  });
}

}  // namespace

TEST_CASE("faults: the shard core is driven without threads, clocks or servers") {
  using K = detail::Action::Kind;
  SUBCASE("a lost acknowledgement of an all-ACCEPTED batch is verified in the store") {
    StepOp a(ev("N", 1, TradeType::New, P));
    auto seen = lost_ack_batch({&a});
    CHECK(std::count(seen.begin(), seen.end(), K::verify) == 1);
    REQUIRE(a.done);
    CHECK_FALSE(a.ec);
    CHECK(a.outcome == Outcome::accepted(1));
  }
  SUBCASE("a lost acknowledgement of a commit that applied confirms every outcome it validated") {
    // The batch holds a write and a REJECTED (its key checked absent): the events are stored
    // under this claim's fence, so this commit stored them and validated the REJECTED too.
    StepOp a(ev("N", 1, TradeType::New, P)), b(ev("X", 2, TradeType::Amend, P));
    auto seen = lost_ack_batch({&a, &b});
    CHECK(std::count(seen.begin(), seen.end(), K::verify) == 1);
    REQUIRE(a.done);
    REQUIRE(b.done);
    CHECK_FALSE(a.ec);
    CHECK(a.outcome == Outcome::accepted(1));
    CHECK_FALSE(b.ec);
    CHECK(b.outcome.kind == OutcomeKind::Rejected);
    CHECK(b.outcome.reason == "unknown trade");
  }
  SUBCASE("events another claimant stored first: the commit did not apply, the batch is decided "
          "again") {
    // The paused-writer case: our commit's connection died (not applied) while another host
    // claimed the partition and stored the same events. They match ours, but under its fence.
    StepOp a(ev("N", 1, TradeType::New, P)), b(ev("X", 2, TradeType::Amend, P));
    auto seen = lost_ack_batch({&a, &b}, LostAck::other_writer);
    CHECK(std::count(seen.begin(), seen.end(), K::verify) == 1);
    CHECK(std::count(seen.begin(), seen.end(), K::claim) == 2);  // decided again on a new claim
    REQUIRE(a.done);
    REQUIRE(b.done);
    CHECK_FALSE(a.ec);
    CHECK(a.outcome == Outcome::duplicate());  // the other host's commit accepted it
    CHECK_FALSE(b.ec);
    CHECK(b.outcome.reason == "unknown trade");
  }
  SUBCASE("outcomes validated only by a commit whose writer cannot be told end without one") {
    // Events stored before the store kept writers' fences: they might be another host's
    // identical decision, so the REJECTED cannot be confirmed.
    StepOp a(ev("N", 1, TradeType::New, P)), b(ev("X", 2, TradeType::Amend, P));
    auto seen = lost_ack_batch({&a, &b}, LostAck::applied_unknown_fence);
    CHECK(std::count(seen.begin(), seen.end(), K::verify) == 1);
    REQUIRE(a.done);
    REQUIRE(b.done);
    CHECK(a.ec == errc::store_unavailable);
    CHECK(b.ec == errc::predecessor_failed);
  }
}

TEST_CASE("faults: sticky failures (batch hosts) fail every later event of a failed partition") {
  auto inner = make_memory_store();
  auto store = std::make_shared<OutageStore>(inner);
  PipelineOptions o = short_budget();
  o.sticky_failures = true;
  Pipeline pl(store, make_local_lock(), make_position_processor(), o);
  store->down = true;
  auto first = pl.submit(ev("Y", 1, TradeType::New, P));
  REQUIRE_FALSE(first);
  store->down = false;
  // Submitted after the failure: still never decided (a replay read it before it heard).
  auto later = pl.submit(ev("Z", 1, TradeType::New, P));
  REQUIRE_FALSE(later);
  CHECK(later.error() == errc::predecessor_failed);
  // Other partitions go on.
  auto other = pl.submit(ev("Z", 1, TradeType::New, PartitionKey{"ACC", "BOOK", "ELSE"}));
  REQUIRE(other);
  CHECK(other.value() == Outcome::accepted(1));
}

// ---- sources: marks, replayed events, a source that lost its stream --------------------------

namespace {

/// A source for the tests: stream n's marks are "test/n", its row is (consumer "test", topic
/// "t", partition n) with the next position after the batch's last event and the source's epoch;
/// a stream reported stale after a refusal is lost: its events are abandoned from then on.
class TestSource final : public SourceHook {
 public:
  explicit TestSource(std::uint64_t epoch = 0) : epoch_(epoch) {}
  std::string mark_id(std::uint32_t stream) const override {
    return "test/" + std::to_string(stream);
  }
  SourceVerdict check(std::uint32_t stream, std::int64_t position,
                      std::optional<std::int64_t> mark) override {
    std::lock_guard lk(mu_);
    if (lost_.count(stream) != 0) return SourceVerdict::abandoned;
    return SourceHook::check(stream, position, mark);
  }
  void before_commit(std::span<const SourceEvent> events, CommitBatch& batch) override {
    std::map<std::int32_t, std::int64_t> next;
    for (const auto& e : events) {
      auto& n = next[static_cast<std::int32_t>(e.stream)];
      n = std::max(n, e.position + 1);
    }
    for (const auto& [p, n] : next) batch.sources.push_back(SourceOffset{"test", "t", p, n, epoch_});
    std::sort(batch.sources.begin(), batch.sources.end(),
              [](const SourceOffset& a, const SourceOffset& b) {
                return std::tie(a.consumer, a.topic, a.partition) <
                       std::tie(b.consumer, b.topic, b.partition);
              });
  }
  void after_commit(std::span<const SourceEvent>, boost::system::error_code ec,
                    std::span<const SourceOffset> stale) override {
    std::lock_guard lk(mu_);
    ++attempts;
    if (!ec) ++commits;
    for (const auto& row : stale)
      if (row.consumer == "test") lost_.insert(static_cast<std::uint32_t>(row.partition));
  }
  int attempts = 0, commits = 0;  // read after the pipeline stopped

 private:
  std::mutex mu_;
  std::uint64_t epoch_;
  std::set<std::uint32_t> lost_;
};

SubmitOptions from(SourceHook& hook, std::uint32_t stream, std::int64_t position) {
  SubmitOptions so;
  so.source = SourceRef{&hook, stream, position};
  return so;
}

Result wait(std::future<Result> f) { return f.get(); }

Result submit_one(Pipeline& pl, const TradeEvent& e, SubmitOptions so = {}) {
  return wait(std::move(submit_all(pl, {e}, so)[0]));
}

PartitionState state_of(TradeStore& store, const PartitionKey& k) {
  return store.load_partitions(std::vector<PartitionKey>{k}).value().at(0);
}

}  // namespace

TEST_CASE("faults: a source's events re-read after a restart are replayed, never decided again") {
  auto store = make_memory_store();
  TestSource src;
  {
    Pipeline pl(store, make_local_lock(), make_position_processor(), fast_retries());
    // Before the "crash": the AMEND comes before its NEW and is rejected; the NEW is accepted.
    auto amend = submit_all(pl, {ev("T", 2, TradeType::Amend, P)}, from(src, 0, 0));
    auto nw = submit_all(pl, {ev("T", 1, TradeType::New, P)}, from(src, 0, 1));
    const Result a = wait(std::move(amend[0])), n = wait(std::move(nw[0]));
    CHECK(a.outcome.reason == "unknown trade");
    CHECK(n.outcome == Outcome::accepted(1));
  }
  // The mark is the position of the stream's last accepted event, stored apart from the trades;
  // the source's row went in with the events.
  PartitionState st = state_of(*store, P);
  CHECK(st.source_marks == std::map<std::string, std::int64_t, std::less<>>{{"test/0", 1}});
  CHECK(st.trades.size() == 1);
  REQUIRE(store->source_offsets("test").value().size() == 1);
  CHECK(store->source_offsets("test").value()[0].next_offset == 2);

  // The restart re-reads the stream from 0: decided again, the AMEND would now be ACCEPTED.
  Pipeline again(store, make_local_lock(), make_position_processor(), fast_retries());
  const Result a = submit_one(again, ev("T", 2, TradeType::Amend, P), from(src, 0, 0));
  CHECK(a.ec == errc::replayed);
  const Result n = submit_one(again, ev("T", 1, TradeType::New, P), from(src, 0, 1));
  CHECK(n.ec == errc::replayed);  // ACCEPTED before: not reported again either
  const Result u = submit_one(again, ev("U", 1, TradeType::New, P), from(src, 0, 2));
  CHECK(u.outcome == Outcome::accepted(2));
  // Events of another stream, or of no source, are not the stream's: decided.
  const Result other = submit_one(again, ev("V", 2, TradeType::Amend, P), from(src, 1, 0));
  CHECK(other.outcome.reason == "unknown trade");
  const Result plain = submit_one(again, ev("V", 3, TradeType::Amend, P));
  CHECK(plain.outcome.reason == "unknown trade");
  REQUIRE(again.stop(10s));
  const PipelineMetrics m = again.metrics();
  CHECK(m.replayed == 2);
  CHECK(m.rejected == 2);
  CHECK(m.failed == 0);
  CHECK(state_of(*store, P).source_marks.at("test/0") == 2);
  CHECK(state_of(*store, P).seq == 2);
  CHECK(src.commits >= 2);
}

TEST_CASE("faults: a re-read event whose key a later event of its stream stored is replayed, "
          "not reported again as DUPLICATE") {
  auto store = make_memory_store();
  TestSource src;
  {
    Pipeline pl(store, make_local_lock(), make_position_processor(), fast_retries());
    // The AMEND before its NEW is REJECTED; the client re-sends it after the NEW: ACCEPTED.
    auto f = submit_all(pl, {ev("T", 2, TradeType::Amend, P)}, from(src, 0, 0));
    CHECK(wait(std::move(f[0])).outcome.reason == "unknown trade");
    f = submit_all(pl, {ev("T", 1, TradeType::New, P)}, from(src, 0, 1));
    CHECK(wait(std::move(f[0])).outcome == Outcome::accepted(1));
    f = submit_all(pl, {ev("T", 2, TradeType::Amend, P)}, from(src, 0, 2));
    CHECK(wait(std::move(f[0])).outcome == Outcome::accepted(2));
  }
  // A crash before the stream's offset moved past 0 (another partition's event held it back):
  // the restart re-reads all three. The first was reported REJECTED; its key is stored now, but
  // it is not decided again: a DUPLICATE would be a second, different report of one message.
  Pipeline again(store, make_local_lock(), make_position_processor(), fast_retries());
  for (std::int64_t pos = 0; pos < 3; ++pos) {
    const TradeEvent e = ev("T", pos == 1 ? 1 : 2, pos == 1 ? TradeType::New : TradeType::Amend, P);
    const Result r = submit_one(again, e, from(src, 0, pos));
    CAPTURE(pos);
    CHECK(r.ec == errc::replayed);
  }
  REQUIRE(again.stop(10s));
  CHECK(again.metrics().replayed == 3);
  CHECK(again.metrics().duplicate == 0);
  CHECK(state_of(*store, P).seq == 2);
  CHECK(state_of(*store, P).source_marks.at("test/0") == 2);
}

TEST_CASE("faults: a re-read event reported REJECTED is not applied after another writer stored "
          "its trade") {
  auto store = make_memory_store();
  TestSource src;
  {
    Pipeline pl(store, make_local_lock(), make_position_processor(), fast_retries());
    // The stream's AMEND comes before its NEW: REJECTED, and reported so. Its commit writes
    // nothing but the stream's mark.
    const Result a = submit_one(pl, ev("T", 2, TradeType::Amend, P), from(src, 0, 0));
    CHECK(a.outcome.reason == "unknown trade");
    CHECK(state_of(*store, P).source_marks.at("test/0") == 0);
    // Another writer (an HTTP client, no source) stores the NEW.
    CHECK(submit_one(pl, ev("T", 1, TradeType::New, P)).outcome == Outcome::accepted(1));
  }
  // A restart re-reads the AMEND (the stream's offset had not moved past it). Decided again it
  // would be ACCEPTED now: an event reported REJECTED, then applied.
  Pipeline again(store, make_local_lock(), make_position_processor(), fast_retries());
  const Result r = submit_one(again, ev("T", 2, TradeType::Amend, P), from(src, 0, 0));
  CHECK(r.ec == errc::replayed);
  REQUIRE(again.stop(10s));
  CHECK(state_of(*store, P).seq == 1);
  CHECK(state_of(*store, P).trades.at("T").version == 1);
}

TEST_CASE("faults: a batch from a source holds consecutive positions; a restart replays it whole") {
  auto store = make_memory_store();
  TestSource src;
  // Events 10, 11, 12 of stream 0 as one async_submit_batch.
  auto submit_batch = [&](Pipeline& pl) {
    auto room = pl.try_reserve(3);
    REQUIRE(room.has_value());
    auto p = std::make_shared<std::promise<std::vector<result<Outcome>>>>();
    auto f = p->get_future();
    pl.async_submit_batch({ev("T", 2, TradeType::Amend, P), ev("T", 1, TradeType::New, P),
                           ev("U", 1, TradeType::New, P)},
                          std::move(room.value()), from(src, 0, 10),
                          [p](boost::system::error_code, std::vector<result<Outcome>> rs) {
                            p->set_value(std::move(rs));
                          });
    REQUIRE(f.wait_for(10s) == std::future_status::ready);
    return f.get();
  };
  {
    Pipeline pl(store, make_local_lock(), make_position_processor(), fast_retries());
    const auto rs = submit_batch(pl);
    REQUIRE(rs.size() == 3);
    REQUIRE(rs[0].has_value());
    CHECK(rs[0].value().reason == "unknown trade");
    CHECK(rs[1].value() == Outcome::accepted(1));
    CHECK(rs[2].value() == Outcome::accepted(2));
  }
  CHECK(state_of(*store, P).source_marks.at("test/0") == 12);
  REQUIRE(store->source_offsets("test").value().size() == 1);
  CHECK(store->source_offsets("test").value()[0].next_offset == 13);
  Pipeline again(store, make_local_lock(), make_position_processor(), fast_retries());
  for (const auto& r : submit_batch(again)) {
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == errc::replayed);
  }
  REQUIRE(again.stop(10s));
  CHECK(state_of(*store, P).seq == 2);
}

TEST_CASE("faults: a source that lost its stream drops its own events; the rest of the batch "
          "commits") {
  using K = detail::Action::Kind;
  auto store = make_memory_store();
  auto lock = make_local_lock();
  const PartitionKey Q{"ACC", "BOOK", "OTHER"};
  REQUIRE(store->claim_source("test", "t", 0).value().epoch == 1);
  TestSource src(1);
  StepOp http(ev("H", 1, TradeType::New, P));  // no source: an HTTP client's
  StepOp k(ev("K", 1, TradeType::New, P)), l(ev("L", 1, TradeType::New, Q));
  k.source = SourceRef{&src, 0, 5};
  l.source = SourceRef{&src, 0, 6};
  SteppedCore stepped({&http, &k, &l});
  std::vector<CommitBatch> commits;
  auto seen = stepped.run(*store, *lock, [&](detail::Action& act, Clock::time_point now) {
    if (act.kind != K::commit) return false;
    // Another member takes the stream over before the first commit lands.
    if (commits.empty()) REQUIRE(store->claim_source("test", "t", 0).value().epoch == 2);
    commits.push_back(*act.batch);
    stepped.core.on_committed(store->commit(*act.batch), now);
    return true;
  });
  CHECK(std::count(seen.begin(), seen.end(), K::sources) == 1);
  REQUIRE(commits.size() == 2);
  CHECK(commits[0].sources == std::vector<SourceOffset>{{"test", "t", 0, 7, 1}});
  REQUIRE(commits[0].partitions.size() == 2);  // Q, then P (ascending keys)
  CHECK(commits[0].partitions[0].marks == std::vector<SourceMark>{{"test/0", 6}});
  CHECK(commits[0].partitions[1].marks == std::vector<SourceMark>{{"test/0", 5}});
  CHECK(commits[1].sources.empty());  // the lost stream has no row, nor any event, in it
  REQUIRE(http.done);
  CHECK_FALSE(http.ec);
  CHECK(http.outcome == Outcome::accepted(1));
  REQUIRE(k.done);
  REQUIRE(l.done);
  CHECK(k.ec == errc::source_abandoned);
  CHECK(l.ec == errc::source_abandoned);
  // The store: the HTTP event only; the stream's row is the new owner's, untouched.
  CHECK(state_of(*store, P).seq == 1);
  CHECK(state_of(*store, P).source_marks.empty());
  CHECK(state_of(*store, Q).seq == 0);
  CHECK(store->source_offsets("test").value() ==
        std::vector<SourceOffset>{{"test", "t", 0, 0, 2}});
  CHECK(src.attempts == 1);  // told of the refusal; its events were not in the batch that committed
  CHECK(src.commits == 0);
}

namespace {

/// A shard core with overlapped commits, stepped by hand: a commit can be held out while the
/// next batch forms, then answered.
struct OverlapCore {
  detail::Counters counters;
  detail::ShardCore core;
  std::shared_ptr<TradeStore> store = make_memory_store();
  std::shared_ptr<PartitionLock> lock = make_local_lock();
  const Clock::time_point t0{std::chrono::hours(1000)};
  std::uint64_t stamp = 1;

  static detail::ShardConfig config() {
    detail::ShardConfig c;
    c.overlap = true;
    c.retry.initial_backoff = 1ms;
    c.retry.max_backoff = 1ms;
    return c;
  }
  OverlapCore() : core(config(), make_position_processor(), counters, nullptr) {}

  void add(StepOp& op) {
    detail::state_of(&op).gate_head = true;
    detail::state_of(&op).stamp = stamp++;
    core.set_stamp_now(stamp);
    core.add(&op, t0);
  }
  void deliver() {
    for (auto& c : core.take_completions()) c.op->complete(c.ec, c.outcome);
  }

  /// Steps until the core returns an overlapped commit (handed back, not executed) or idles;
  /// every other action goes to the store or the lock. `finds` collects the keys looked up.
  detail::Action until_commit(std::vector<IdempotencyKey>* finds = nullptr) {
    for (int i = 0; i < 20; ++i) {
      auto act = core.next(t0 + std::chrono::seconds(1));
      switch (act.kind) {
        case Kind::acquire: core.on_acquired(lock->try_acquire(act.keys), t0); break;
        case Kind::renew: {
          auto r = lock->renew(act.grants);
          core.on_renewed(std::move(act.grants), std::move(r), t0);
          break;
        }
        case Kind::release: break;
        case Kind::claim: core.on_claimed(store->claim_partitions(act.keys), t0); break;
        case Kind::find:
          if (finds) finds->insert(finds->end(), act.idem_keys->begin(), act.idem_keys->end());
          core.on_found(store->find_events(*act.idem_keys), t0);
          break;
        case Kind::commit:
          if (act.overlapped) return act;
          core.on_committed(store->commit(*act.batch), t0);
          break;
        case Kind::wait: break;  // a retry backoff: the next step is a second later
        default: return act;      // idle
      }
      deliver();
    }
    return {};
  }
};

}  // namespace

TEST_CASE("faults: an overlapped commit: the next batch forms meanwhile, decided only after it") {
  const PartitionKey Q{"ACC", "BOOK", "SEC2"};
  OverlapCore oc;
  StepOp a(ev("A", 1, TradeType::New, P));
  oc.add(a);
  auto first = oc.until_commit();
  REQUIRE(first.kind == Kind::commit);
  REQUIRE(first.overlapped);
  REQUIRE(first.batch->partitions.size() == 1);

  // While it is out: b (another partition) is leased, claimed and looked up; c (the same
  // partition as the commit out) waits for it.
  StepOp b(ev("B", 1, TradeType::New, Q)), c(ev("C", 1, TradeType::New, P));
  oc.add(b);
  oc.add(c);
  std::vector<IdempotencyKey> finds;
  auto held = oc.until_commit(&finds);
  CHECK(held.kind == Kind::idle);  // decided only after the commit out answers
  REQUIRE(finds.size() == 1);  // not behind the key gate (gate_local unset): looked up
  CHECK(finds[0].trade_id == "B");
  CHECK_FALSE(a.done);
  CHECK_FALSE(b.done);

  SUBCASE("it succeeds: its events complete, the next batch is decided and goes out") {
    oc.core.on_committed(oc.store->commit(*first.batch), oc.t0);
    oc.deliver();
    REQUIRE(a.done);
    CHECK(a.outcome == Outcome::accepted(1));
    auto second = oc.until_commit();
    REQUIRE(second.kind == Kind::commit);
    REQUIRE(second.batch->partitions.size() == 1);
    CHECK(second.batch->partitions[0].partition == Q);
    oc.core.on_committed(oc.store->commit(*second.batch), oc.t0);
    oc.deliver();
    REQUIRE(b.done);
    CHECK(b.outcome == Outcome::accepted(1));
  }
  SUBCASE("it fails: the next batch goes back undecided, the failed one is retried alone") {
    oc.core.on_committed(make_error_code(errc::store_busy), oc.t0);  // not applied
    oc.deliver();
    CHECK_FALSE(a.done);
    CHECK_FALSE(b.done);
    // The retry is not overlapped (it runs alone), then everything goes through in order.
    int overlapped = 0;
    for (int i = 0; i < 6 && !(a.done && b.done && c.done); ++i) {
      auto act = oc.until_commit();
      if (act.kind != Kind::commit) continue;
      ++overlapped;
      oc.core.on_committed(oc.store->commit(*act.batch), oc.t0);
      oc.deliver();
    }
    REQUIRE(a.done);
    REQUIRE(b.done);
    REQUIRE(c.done);
    CHECK(a.outcome == Outcome::accepted(1));
    CHECK(b.outcome == Outcome::accepted(1));
    CHECK(c.outcome == Outcome::accepted(2));  // after a, in its partition's order
    CHECK(overlapped >= 1);
  }
}

TEST_CASE("faults: a refused overlapped commit puts back a partition it picked but took nothing of") {
  // b (partition B) waits in the key gate behind c (partition C, the same key): the batch that
  // picks B takes nothing of it. The gate opens (c completed) while that batch forms; the batch
  // then goes out as the overlapped commit, the next pick skips B (in that commit), and the
  // commit is refused: B must be in line again, or b is never decided.
  const PartitionKey A{"ACC", "BOOK", "SA"}, B{"ACC", "BOOK", "SB"}, C{"ACC", "BOOK", "SC"};
  OverlapCore oc;
  StepOp c(ev("K", 1, TradeType::New, C));
  oc.add(c);
  auto first = oc.until_commit();  // c's commit, out
  REQUIRE(first.kind == Kind::commit);
  REQUIRE(first.overlapped);
  StepOp a(ev("X", 1, TradeType::New, A)), b(ev("K", 1, TradeType::New, B));
  oc.add(a);
  oc.add(b);
  detail::state_of(&b).gate_head = false;  // behind c, of another partition
  detail::state_of(&b).gate_local = false;
  CHECK(oc.until_commit().kind == Kind::idle);  // a's batch, held until c's commit answers
  oc.core.on_committed(oc.store->commit(*first.batch), oc.t0);
  oc.deliver();
  REQUIRE(c.done);
  detail::state_of(&b).gate_head = true;  // the key gate opens for b
  oc.core.wake(B);
  auto second = oc.until_commit();  // a's batch (B picked, nothing taken), out
  REQUIRE(second.kind == Kind::commit);
  REQUIRE(second.overlapped);
  REQUIRE(second.batch->partitions.size() == 1);
  CHECK(second.batch->partitions[0].partition == A);
  CHECK(oc.until_commit().kind == Kind::idle);  // picks B again, skipped: in the commit out
  oc.core.on_committed(make_error_code(errc::key_conflict), oc.t0);  // refused
  oc.deliver();
  for (int i = 0; i < 10 && !(a.done && b.done); ++i) {
    auto act = oc.until_commit();
    if (act.kind != Kind::commit) continue;
    oc.core.on_committed(oc.store->commit(*act.batch), oc.t0);
    oc.deliver();
  }
  REQUIRE(a.done);
  REQUIRE(b.done);
  CHECK(a.outcome == Outcome::accepted(1));
  CHECK(b.outcome.kind == OutcomeKind::Rejected);  // (K, 1) is c's, in another partition
}

namespace {

/// Slow calls: a key lookup takes 3 ms, a commit 10 ms, and every 5th commit is refused as
/// store_busy (not applied). Counts the lookups that ran at the same time as a commit.
class SlowBusyStore final : public TradeStoreWrapper {
 public:
  using TradeStoreWrapper::TradeStoreWrapper;
  std::atomic<int> lookups_during_commit{0}, commits{0};

  result<std::vector<std::optional<StoredEvent>>> find_events(
      std::span<const IdempotencyKey> keys) override {
    enter(finding_, committing_);
    std::this_thread::sleep_for(3ms);
    auto r = TradeStoreWrapper::find_events(keys);
    --finding_;
    return r;
  }

 protected:
  result<void> do_commit_(const CommitBatch& b) override {
    enter(committing_, finding_);
    std::this_thread::sleep_for(10ms);
    result<void> r = ++commits % 5 == 0 ? result<void>(errc::store_busy)
                                        : TradeStoreWrapper::do_commit_(b);
    --committing_;
    return r;
  }

 private:
  /// Counts a lookup and a commit under way together, whichever started first.
  void enter(std::atomic<int>& mine, const std::atomic<int>& other) {
    std::lock_guard lk(mu_);
    ++mine;
    if (other.load() > 0) ++lookups_during_commit;
  }
  std::mutex mu_;
  std::atomic<int> finding_{0}, committing_{0};
};

}  // namespace

TEST_CASE("faults: overlapped commits through the threaded pipeline give the sequential result") {
  // 20 partitions, each a NEW, AMENDs, a CANCEL and re-sent duplicates, submitted as one stream.
  std::vector<TradeEvent> evs;
  for (int round = 0; round < 6; ++round) {
    for (int p = 0; p < 20; ++p) {
      const PartitionKey key{"ACC", "BOOK", "S" + std::to_string(p)};
      const std::string id = "T" + std::to_string(p);
      if (round == 0) evs.push_back(ev(id, 1, TradeType::New, key));
      if (round >= 1 && round <= 3)
        evs.push_back(ev(id, round + 1, TradeType::Amend, key, Side::Buy, std::to_string(round)));
      if (round == 4) evs.push_back(ev(id, 2, TradeType::Amend, key, Side::Buy, "1"));  // dup
      if (round == 5) evs.push_back(ev(id, 5, TradeType::Cancel, key));
      // And the NEW again in every later round.
      if (round >= 1) evs.push_back(ev(id, 1, TradeType::New, key));
    }
  }
  // Submitted in two halves, the second once the first is done: a key its partition holds is
  // looked up (a fresh one is not), so the second half's batches have lookups to overlap with
  // the commit out.
  const std::size_t half = evs.size() / 2;
  auto run = [&](bool overlap, std::shared_ptr<TradeStore> store) {
    PipelineOptions o = fast_retries();
    o.overlap_commits = overlap;
    o.max_batch = 16;  // many batches
    Pipeline pl(store, make_local_lock(), make_position_processor(), o);
    std::vector<Result> got;
    const std::vector<TradeEvent> first(evs.begin(), evs.begin() + std::ptrdiff_t(half));
    const std::vector<TradeEvent> second(evs.begin() + std::ptrdiff_t(half), evs.end());
    for (auto& f : submit_all(pl, first)) got.push_back(f.get());
    for (auto& f : submit_all(pl, second)) got.push_back(f.get());
    return got;
  };
  auto plain = make_memory_store();
  const auto expected = run(false, plain);
  auto inner = make_memory_store();
  auto slow = std::make_shared<SlowBusyStore>(inner);
  const auto got = run(true, slow);
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("event " << i << " " << evs[i].trade_id << " v" << evs[i].version);
    CHECK_FALSE(got[i].ec);
    CHECK(got[i].outcome == expected[i].outcome);
  }
  CHECK(inner->positions().value() == plain->positions().value());
  CHECK(slow->lookups_during_commit.load() > 0);  // the next batch was looked up meanwhile
  CHECK(slow->commits.load() >= 5);               // and some commits were refused and retried
}
