// The simulated world: hosts running detail::ShardCore, the real memory store behind a fault
// injector, a lock server with leases on its own clock, proxy-like clients and a seeded fault
// schedule. One thread, one simulated clock, one std::mt19937_64: a seed replays exactly.
//
// Time: every I/O action is a request that reaches its server after a latency, is executed there
// at that instant (a crashed host's request still lands), and answers after another latency.
// Hosts see simulated time plus their own offset; the lock server has its own offset too.
//
// Clients behave like gateway clients: a partition's events go out in requests of consecutive
// events, stamped when they reach the host (as Pipeline::async_submit does), and the next request
// waits for every answer of the last one. So no event of a partition is ever in flight towards a
// host when an earlier one fails there, and "re-send from the first event without an outcome"
// must give the sequential result (spec section 6, point 2). A proxy gives up on a request once
// the host clock passed its deadline, and then re-sends elsewhere without waiting (point 5).
//
// Sources: some partitions are fed by source streams instead of clients (see "sources" below):
// a host that claimed a stream reads it from the stored offset and submits each message with a
// SourceRef; a crash, a failed event or another member's claim makes the stream be read again
// from the stored offset, so messages already decided come back (replayed, or decided again
// when nothing of them is durable) and a member that lost its stream has its events abandoned.

#include "key_gate.hpp"
#include "op_state.hpp"
#include "sim.hpp"

#include <tradecapture/memory.hpp>
#include <tradecapture/store_wrapper.hpp>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <deque>
#include <functional>
#include <queue>
#include <random>
#include <set>
#include <unordered_map>

namespace sim {
namespace {

using Kind = detail::Action::Kind;
constexpr Micros kMs = 1000, kSec = 1000 * kMs, kMin = 60 * kSec, kHour = 60 * kMin;
constexpr Micros kBase = 240 * kHour;  // clock origin: offsets stepped back stay positive
constexpr Micros kLease = 10 * kSec;
constexpr std::uint64_t kMaxSteps = 4'000'000;

Time to_time(Micros m) { return Time(std::chrono::microseconds(kBase + m)); }
Micros from_time(Time t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count() -
         kBase;
}
const char* kind_name(Kind k) {  // for traces, in the enum's order
  static const char* const names[] = {"idle",  "wait", "acquire", "renew",  "release", "claim",
                                      "load",  "find", "commit",  "verify", "sources"};
  const auto i = static_cast<std::size_t>(k);
  return i < std::size(names) ? names[i] : "?";
}

/// What the servers and the world share: the clock, the RNG, the fault knobs and the logs.
struct Env {
  Micros now = 0;
  std::uint64_t step = 0;
  std::mt19937_64 rng;
  bool verbose = false;
  Micros store_down_until = 0, lock_down_until = 0;  // outages
  double p_read_fail = 0, p_commit_fail = 0, p_lost_ack = 0, p_slow = 0, p_lock_fail = 0;
  Micros lock_offset = 0;     // the lock server's clock = now + lock_offset
  Micros backward_steps = 0;  // total of backward clock steps (slack for the liveness bound)
  int caller = -1, caller_inc = 0;  // who sent the server call being executed
  std::uint64_t caller_sent = 0;
  Time caller_start{};
  std::vector<CommitRecord> history;
  /// The source events of each batch as its hook last saw them (by the batch's address; a
  /// batch with source rows always went through SimSource::before_commit first).
  std::unordered_map<const CommitBatch*, std::vector<SourceEvent>> batch_events;
  std::map<std::string, std::uint64_t> faults;
  std::string failure;  // the first violation seen online

  double unit() { return std::uniform_real_distribution<double>(0, 1)(rng); }
  bool chance(double p) { return p > 0 && unit() < p; }
  Micros range(Micros lo, Micros hi) { return std::uniform_int_distribution<Micros>(lo, hi)(rng); }
  void fault(const char* kind) { ++faults[kind]; }
  template <class... A>
  void fault(const char* kind, const char* fmt, A... args) {  // a scheduled fault: traced
    ++faults[kind];
    if (!verbose) return;
    std::printf("%10.6f FAULT %s ", static_cast<double>(now) / kSec, kind);
    std::printf(fmt, args...);
    std::printf("\n");
  }
  /// The error of a server call: `e` during an outage (before `down_until`), otherwise `e` with
  /// probability `p` (counted as fault `kind`); none otherwise.
  boost::system::error_code injected(Micros down_until, double p, const char* kind, errc e) {
    if (now < down_until) return e;
    if (chance(p)) {
      fault(kind);
      return e;
    }
    return {};
  }
  void fail(std::string what) {
    if (failure.empty()) failure = std::move(what);
  }
  void trace(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    if (!verbose) return;
    std::printf("%10.6f ", static_cast<double>(now) / kSec);
    va_list ap;
    va_start(ap, fmt);
    std::vprintf(fmt, ap);
    va_end(ap);
    std::printf("\n");
  }
};

/// The real memory store behind injected faults; logs every commit that applies.
class FaultStore final : public TradeStoreWrapper {
 public:
  FaultStore(std::shared_ptr<TradeStore> target, Env& env)
      : TradeStoreWrapper(std::move(target)), env_(env) {}

  result<std::vector<PartitionState>> load_partitions(
      std::span<const PartitionKey> keys) override {
    if (auto ec = read_fault()) return ec;
    return TradeStoreWrapper::load_partitions(keys);
  }
  result<std::vector<PartitionState>> claim_partitions(
      std::span<const PartitionKey> keys) override {
    if (auto ec = read_fault()) return ec;
    return TradeStoreWrapper::claim_partitions(keys);
  }
  result<std::vector<std::optional<StoredEvent>>> find_events(
      std::span<const IdempotencyKey> keys) override {
    if (auto ec = read_fault()) return ec;
    return TradeStoreWrapper::find_events(keys);
  }
  result<SourceOffset> claim_source(std::string_view consumer, std::string_view topic,
                                    std::int32_t partition) override {
    if (auto ec = read_fault()) return ec;
    return TradeStoreWrapper::claim_source(consumer, topic, partition);
  }
  result<std::vector<SourceOffset>> source_offsets(std::string_view consumer) override {
    if (auto ec = read_fault()) return ec;
    return TradeStoreWrapper::source_offsets(consumer);
  }

 protected:
  result<void> do_commit_(const CommitBatch& batch) override {
    if (env_.now < env_.store_down_until) return errc::store_unavailable;
    if (env_.chance(env_.p_commit_fail)) {
      env_.fault("commit_failure");
      // The last: the connection dropped before the commit reached the database (not applied,
      // but as uncertain to the caller as a lost acknowledgement).
      static const errc kinds[] = {errc::store_busy, errc::deadlock, errc::serialization_failure,
                                   errc::store_unavailable};
      return kinds[env_.range(0, 3)];
    }
    auto r = TradeStoreWrapper::do_commit_(batch);
    if (!r) return r;
    CommitRecord rec{env_.now, env_.caller, env_.caller_inc, env_.caller_sent, {}, batch.sources, {}, {}};
    for (const auto& p : batch.partitions) {
      rec.events.insert(rec.events.end(), p.events.begin(), p.events.end());
      for (const auto& m : p.marks) rec.marks.emplace_back(p.partition, m.source, m.position);
    }
    if (!batch.sources.empty()) {
      auto it = env_.batch_events.find(&batch);
      if (it == env_.batch_events.end()) env_.fail("a batch with source rows that no hook saw");
      else rec.source_events = it->second;
    }
    env_.history.push_back(std::move(rec));
    if (env_.chance(env_.p_lost_ack)) {
      env_.fault("lost_ack");
      return errc::store_unavailable;  // applied, but the answer is lost
    }
    return r;
  }

 private:
  boost::system::error_code read_fault() {
    return env_.injected(env_.store_down_until, env_.p_read_fail, "read_failure",
                         errc::store_unavailable);
  }
  Env& env_;
};

/// A Redis-like lock server: leases expire on the server's own clock, every grant has a unique
/// token, the fence is an INCR counter per key, and `flush` forgets every key (restart without
/// persistence, failover to a replica that missed writes).
class SimLock final : public PartitionLock {
 public:
  // A lock server that has been up for a while: its counters are far from zero.
  explicit SimLock(Env& env) : env_(env), base_(env.range(1000, 1000000)) {}

  result<std::vector<result<Grant>>> try_acquire(std::span<const PartitionKey> keys) override {
    if (auto ec = fault()) return ec;
    std::vector<result<Grant>> out;
    for (const auto& k : keys) {
      auto it = held_.find(k);
      if (it != held_.end() && it->second.expires > server_now()) {
        out.emplace_back(errc::lock_busy);
        continue;
      }
      std::string token = "g" + std::to_string(++tokens_);
      held_[k] = Holder{token, server_now() + kLease};
      auto [f, fresh] = fences_.try_emplace(k, base_);
      // The holder measures its lease from when it sent the request, on its own clock.
      out.emplace_back(Grant{k, ++f->second, token, env_.caller_start + lease()});
    }
    if (lost_reply()) return errc::lock_unavailable;
    return out;
  }
  result<std::vector<result<void>>> renew(std::span<Grant> grants) override {
    if (auto ec = fault()) return ec;
    std::vector<result<void>> out;
    for (auto& g : grants) {
      auto it = held_.find(g.partition);
      if (it == held_.end() || it->second.token != g.token || it->second.expires <= server_now()) {
        out.emplace_back(errc::lease_lost);
        continue;
      }
      it->second.expires = server_now() + kLease;
      g.expires = env_.caller_start + lease();
      out.emplace_back(boost::outcome_v2::success());
    }
    if (lost_reply()) return errc::lock_unavailable;
    return out;
  }
  void release(std::span<const Grant> grants) override {
    if (env_.now < env_.lock_down_until) return;
    for (const auto& g : grants) {
      auto it = held_.find(g.partition);
      if (it != held_.end() && it->second.token == g.token) held_.erase(it);
    }
  }
  std::chrono::milliseconds lease() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::microseconds(kLease));
  }
  result<void> ping() override { return boost::outcome_v2::success(); }
  std::string describe() const override { return "sim-lock:"; }

  /// Restart without persistence (every key gone, counters from zero) or failover to a
  /// replica that missed the last writes (leases gone, counters a few grants back).
  void forget(bool restart) {
    held_.clear();
    if (restart) {
      fences_.clear();
      base_ = 0;
    } else {
      for (auto& [k, f] : fences_) f -= std::min<std::uint64_t>(f, env_.range(0, 3));
    }
  }
  /// The longest any current lease still lasts on the server's clock.
  Micros max_remaining() const {
    Micros m = 0;
    for (const auto& [k, h] : held_) m = std::max(m, h.expires - server_now());
    return m;
  }

 private:
  struct Holder {
    std::string token;
    Micros expires;
  };
  Micros server_now() const { return env_.now + env_.lock_offset; }
  /// The call is applied but its reply is lost (a grant nobody knows of expires by itself).
  bool lost_reply() {
    if (!env_.chance(env_.p_lock_fail)) return false;
    env_.fault("lock_lost_reply");
    return true;
  }
  boost::system::error_code fault() {
    return env_.injected(env_.lock_down_until, env_.p_lock_fail, "lock_failure",
                         errc::lock_unavailable);
  }
  Env& env_;
  std::map<PartitionKey, Holder> held_;
  std::map<PartitionKey, std::uint64_t> fences_;
  std::uint64_t tokens_ = 0;  // token uniqueness survives a restart (random in a real lock)
  std::uint64_t base_;        // where the counter of a key never granted starts
};

/// The source of one host incarnation (a Kafka consumer-group member, as in backends/kafka's
/// offset tracker): its slots (one per claimed stream, SourceRef::stream = the slot id), the
/// positions in flight, a watermark row with the claim epoch in every commit that holds its
/// events (epoch 0 once the slot is dead: refused), and death when a refused commit finds its
/// row claimed by another member.
class SimSource final : public SourceHook {
 public:
  struct SlotState {
    int stream = 0;
    std::uint64_t epoch = 0;
    bool dead = false;
    std::int64_t position = 0;  // the next message to read
    std::set<std::int64_t> in_flight;
    std::int64_t flushed = -1;  // the last offset an offsets-only commit stored
    bool final_flushed = false, flushing = false, timer = false;
    std::int64_t watermark() const { return in_flight.empty() ? position : *in_flight.begin(); }
  };
  SimSource(Env& env, int host) : env_(env), host_(host) {}

  SlotState* find(std::uint32_t g) {
    auto it = slots_.find(g);
    return it == slots_.end() ? nullptr : &it->second;
  }
  /// A claim of `stream` succeeded: reads from `start`. An older slot of the stream here is
  /// dead (the member lost it before it got it again).
  SlotState& open(std::uint32_t g, int stream, std::uint64_t epoch, std::int64_t start) {
    for (auto& [id, s] : slots_)
      if (s.stream == stream) s.dead = true;
    SlotState& s = slots_[g];
    s.stream = stream;
    s.epoch = epoch;
    s.position = start;
    return s;
  }

  std::string mark_id(std::uint32_t g) const override {
    auto it = slots_.find(g);
    if (it == slots_.end()) {
      env_.fail("mark_id asked for a slot the source does not have");
      return "?";
    }
    return stream_mark_id(it->second.stream);
  }
  SourceVerdict check(std::uint32_t g, std::int64_t position,
                      std::optional<std::int64_t> mark) override {
    const SlotState* s = find(g);
    if (s == nullptr || s->dead) return SourceVerdict::abandoned;
    return SourceHook::check(g, position, mark);
  }
  void before_commit(std::span<const SourceEvent> events, CommitBatch& batch) override {
    env_.batch_events[&batch].assign(events.begin(), events.end());
    std::map<std::uint32_t, std::vector<std::int64_t>> per_slot;
    for (const SourceEvent& e : events) per_slot[e.stream].push_back(e.position);
    for (auto& [g, offsets] : per_slot) {
      const SlotState* s = find(g);
      if (s == nullptr) continue;
      std::sort(offsets.begin(), offsets.end());
      // The watermark with this batch's events decided: the smallest other one in flight.
      std::int64_t next = s->position;
      for (std::int64_t o : s->in_flight)
        if (!std::binary_search(offsets.begin(), offsets.end(), o)) {
          next = o;
          break;
        }
      batch.sources.push_back(
          SourceOffset{kSourceConsumer, "t", s->stream, next, s->dead ? 0 : s->epoch});
    }
    auto key = [](const SourceOffset& r) { return std::tie(r.consumer, r.topic, r.partition); };
    std::sort(batch.sources.begin(), batch.sources.end(),
              [&](const SourceOffset& a, const SourceOffset& b) {
                return key(a) < key(b) || (key(a) == key(b) && a.epoch < b.epoch);
              });
    // Two slots of one stream (a dead one and its successor): keep the row that refuses.
    std::vector<SourceOffset> rows;
    for (auto& r : batch.sources) {
      if (!rows.empty() && key(rows.back()) == key(r)) {
        rows.back().next_offset = std::min(rows.back().next_offset, r.next_offset);
        continue;
      }
      rows.push_back(std::move(r));
    }
    batch.sources = std::move(rows);
  }
  void after_commit(std::span<const SourceEvent>, boost::system::error_code,
                    std::span<const SourceOffset> stale) override {
    for (const SourceOffset& row : stale) {
      if (row.consumer != kSourceConsumer) continue;
      for (auto& [g, s] : slots_) {
        if (s.stream != row.partition || s.epoch != row.epoch || s.dead) continue;
        s.dead = true;
        env_.fault("source_lost");
        env_.trace("  host %d source: stream %d (epoch %llu) was claimed by another member",
                   host_, s.stream, static_cast<unsigned long long>(s.epoch));
      }
    }
  }

 private:
  Env& env_;
  int host_;
  std::map<std::uint32_t, SlotState> slots_;
};

class World;

/// A submission inside a simulated host; completing it reports to the world.
struct SimOp final : detail::SubmitOp {
  SimOp(TradeEvent e, World& w, std::uint32_t id) : SubmitOp(std::move(e)), world(w), sub(id) {}
  void complete(boost::system::error_code ec, Outcome o) override;
  World& world;
  std::uint32_t sub;
};

/// Failure barrier bookkeeping for check (2): the stamp counter at the last failures of a
/// partition on a host. Completions of one call count as simultaneous.
struct Barrier {
  std::uint64_t before = 0, cur = 0, cur_call = 0;
  std::uint32_t by = 0;  // the last submission that raised it
  void raise(std::uint64_t call, std::uint64_t v, std::uint32_t sub) {
    if (call != cur_call) before = std::max(before, cur), cur = 0, cur_call = call;
    cur = std::max(cur, v);
    by = sub;
  }
  std::uint64_t effective(std::uint64_t call) const {
    return call == cur_call ? before : std::max(before, cur);
  }
};

struct CoreSlot {
  std::unique_ptr<detail::ShardCore> core;
  bool busy = false;           // an action is in flight
  bool committing = false;     // an overlapped commit is in flight (Action::overlapped)
  std::uint64_t timer_gen = 0; // only the latest `wait` timer counts
};

struct Host {
  int id = 0, inc = 0;  // incarnation: bumped by every crash or restart
  bool up = true, stopping = false;
  Micros offset = 0, paused_until = 0;
  std::uint64_t next_stamp = 1;
  Micros last_arrival = 0;  // requests arrive in the order they were sent
  std::unique_ptr<detail::Counters> counters;
  std::unique_ptr<detail::KeyGate> gate;
  std::vector<CoreSlot> cores;
  std::unordered_map<const detail::SubmitOp*, std::unique_ptr<SimOp>> live;
  std::set<std::uint32_t> pending;  // submissions sent here without a report
  std::priority_queue<std::pair<Time, std::uint32_t>, std::vector<std::pair<Time, std::uint32_t>>,
                      std::greater<>>
      deadlines;
  std::vector<Barrier> barrier;  // by partition
  std::deque<std::function<void()>> held;  // events that arrived while paused, in order
  std::unique_ptr<SimSource> source;       // this incarnation's source member
};

struct Client {
  std::vector<Micros> planned;  // when each stream event is first sent
  std::vector<char> done;       // has an outcome (from any submission)
  std::size_t next = 0;         // next stream index to send
  int host = 0, epoch = 0, failures = 0;
  int in_request = 0;  // unanswered submissions of the request in flight (this epoch)
};

struct Reply {
  std::optional<result<std::vector<result<Grant>>>> acquired;
  std::optional<result<std::vector<result<void>>>> renewed;
  std::optional<result<std::vector<PartitionState>>> states;
  std::optional<result<std::vector<std::optional<StoredEvent>>>> found;
  std::optional<result<void>> committed;
  std::optional<result<std::vector<SourceOffset>>> sources;
};

class World {
 public:
  World(const Params& p, Stats& stats);
  std::string run();
  void report(std::uint32_t sub, boost::system::error_code ec, Outcome o);

 private:
  struct Ev {
    Micros t;
    std::uint64_t seq;
    std::function<void()> fn;
  };
  struct Later {
    bool operator()(const Ev& a, const Ev& b) const {
      return a.t != b.t ? a.t > b.t : a.seq > b.seq;
    }
  };

  void at(Micros t, std::function<void()> fn) {
    q_.push(Ev{std::max(t, env_.now), seq_++, std::move(fn)});
  }
  /// Runs `fn` as host `hid` (incarnation `inc`): dropped once the host restarted, deferred
  /// while it is paused (a paused process notices nothing).
  void host_event(int hid, int inc, Micros t, std::function<void()> fn) {
    at(t, [this, hid, inc, fn = std::move(fn)] {
      Host& h = hosts_[hid];
      if (!h.up || h.inc != inc) return;
      if (env_.now < h.paused_until || !h.held.empty()) {
        if (h.held.empty()) at(h.paused_until, [this, hid, inc] { resume(hid, inc); });
        h.held.push_back(fn);
        return;
      }
      fn();
    });
  }
  /// The pause is over (unless extended): runs what arrived meanwhile, in arrival order.
  void resume(int hid, int inc) {
    Host& h = hosts_[hid];
    if (!h.up || h.inc != inc) return;
    if (env_.now < h.paused_until) return at(h.paused_until, [this, hid, inc] { resume(hid, inc); });
    while (!h.held.empty() && h.up && h.inc == inc && env_.now >= h.paused_until) {
      auto fn = std::move(h.held.front());
      h.held.pop_front();
      fn();
    }
    if (!h.held.empty() && h.up && h.inc == inc)
      at(h.paused_until, [this, hid, inc] { resume(hid, inc); });
  }
  Time host_now(const Host& h) const { return to_time(env_.now + h.offset); }
  std::size_t core_of(const Host& h, const PartitionKey& k) const {
    return PartitionKeyHash{}(k) % h.cores.size();
  }
  Micros latency(bool slow_possible) {
    if (slow_possible && env_.chance(env_.p_slow)) {
      env_.fault("slow_call");
      return env_.range(1 * kSec, 30 * kSec);  // longer than a lease: it expires mid-batch
    }
    return env_.range(50, 800);
  }

  void make_streams();
  void schedule_faults();
  void start_host(Host& h);
  void reset_host(Host& h, bool crashed);
  void stop_host(int hid);
  void finish_stop(int hid);
  void receive(const std::vector<std::uint32_t>& ids);
  void drive(int hid, std::size_t ci);
  void issue(Host& h, std::size_t ci, detail::Action a);
  void execute(detail::Action& a, Reply& r);
  void answer(int hid, std::size_t ci, const std::shared_ptr<detail::Action>& a,
              const std::shared_ptr<Reply>& r);
  void deliver(Host& h, CoreSlot& cs);
  void pump(int p, Micros delay);
  void send_request(int p);
  void client_failed(std::uint32_t id);
  /// A submission got its answer (or was lost with its host): the next request may follow.
  void answered(std::uint32_t id) {
    Client& c = clients_[subs_[id].partition];
    if (subs_[id].epoch == c.epoch && --c.in_request == 0) pump(subs_[id].partition, env_.range(0, 2 * kMs));
  }
  void check_deadlines();
  void heal();
  bool quiescent() const;
  // Sources.
  void claim_stream(int stream, Micros delay, int avoid_host);
  void try_claim(int stream, int avoid_host);
  void open_slot(int hid, std::uint32_t g, std::int64_t start);
  void poll(int hid, int inc, std::uint32_t g);
  void flush(int hid, int inc, std::uint32_t g);
  void source_done(const Submission& s, boost::system::error_code ec);
  bool sources_done() const;

  Params params_;
  Stats& stats_;
  Env env_;
  std::priority_queue<Ev, std::vector<Ev>, Later> q_;
  std::uint64_t seq_ = 0, call_ = 0;
  int inflight_ = 0;  // server calls sent and not yet executed
  std::shared_ptr<TradeStore> memory_;
  std::shared_ptr<FaultStore> store_;
  std::shared_ptr<SimLock> lock_;
  std::shared_ptr<const Processor> processor_ = make_position_processor();
  std::shared_ptr<spdlog::logger> log_;
  detail::ShardConfig config_;
  std::size_t cores_per_host_ = 1;
  double p_deadline_ = 0, p_move_ = 0;
  std::size_t max_request_ = 1;
  std::vector<Host> hosts_;
  std::vector<PartitionKey> partitions_;
  std::vector<std::vector<TradeEvent>> streams_;
  std::vector<Client> clients_;
  std::vector<Submission> subs_;
  // Sources: the streams, which partitions they feed, who owns each (the group coordinator's
  // view: the latest claim), every slot and every claim the store executed.
  struct Owner {
    bool claiming = false;
    int host = -1, inc = -1;
    std::uint32_t slot = 0;
  };
  std::vector<SourceStream> sources_;
  std::vector<int> fed_by_;
  std::vector<Owner> owners_;
  std::vector<Slot> slots_{1};
  std::vector<Claim> claims_;
  std::size_t max_in_flight_ = 8;
  Micros flush_every_ = 500 * kMs;
  Micros heal_at_ = 0, live_deadline_ = 0;
  bool healed_ = false;
};

void SimOp::complete(boost::system::error_code ec, Outcome o) { world.report(sub, ec, std::move(o)); }

World::World(const Params& p, Stats& stats) : params_(p), stats_(stats) {
  env_.rng.seed(p.seed * 0x9E3779B97F4A7C15ull + 0x5151);
  env_.verbose = p.verbose;
  memory_ = make_memory_store();
  store_ = std::make_shared<FaultStore>(memory_, env_);
  lock_ = std::make_shared<SimLock>(env_);
  if (p.verbose) {
    log_ = std::make_shared<spdlog::logger>("core", std::make_shared<spdlog::sinks::stdout_sink_st>());
    log_->set_level(spdlog::level::debug);
    log_->set_pattern("           core %l: %v");  // no wall-clock time: traces replay exactly
  } else {
    log_ = std::make_shared<spdlog::logger>("core", std::make_shared<spdlog::sinks::null_sink_st>());
    log_->set_level(spdlog::level::off);
  }
  // Per-seed shape: batch limits, cache size, retry budget, fault intensity.
  auto pick = [&](std::initializer_list<std::size_t> v) { return v.begin()[env_.range(0, v.size() - 1)]; };
  config_.max_batch = pick({1, 4, 16, 64, 8192});
  config_.max_batch_per_partition = pick({1, 3, 8, 1024});
  config_.max_cached_partitions = pick({1, 2, 200000});
  config_.retry.max_attempts = static_cast<int>(pick({4, 20, 200}));
  config_.retry.budget = std::chrono::milliseconds(env_.range(2000, 15000));
  config_.lease = std::chrono::milliseconds(kLease / kMs);
  config_.mutation = p.mutation;
  config_.overlap = env_.range(0, 2) != 0;  // two seeds in three overlap commits (the default)
  const bool calm = env_.chance(0.15);
  auto level = [&](double hi) { return calm ? 0.0 : pick({0, 1, 2}) * hi / 2; };
  env_.p_read_fail = level(0.02);
  env_.p_commit_fail = level(0.06);
  env_.p_lost_ack = level(0.06);
  env_.p_slow = level(0.02);
  env_.p_lock_fail = level(0.02);
  p_deadline_ = calm ? 0.0 : pick({0, 1, 3}) * 0.1;
  p_move_ = pick({0, 1, 5}) * 0.02;
  max_request_ = pick({1, 4, 16});
  cores_per_host_ = pick({1, 2});
  hosts_.resize(pick({2, 3, 4}));
  max_in_flight_ = pick({1, 4, 16, 64});
  flush_every_ = static_cast<Micros>(pick({50, 300, 2000})) * kMs;
  make_streams();
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    hosts_[i].id = static_cast<int>(i);
    start_host(hosts_[i]);
  }
  env_.trace("seed %llu: %zu hosts x %zu cores, %zu partitions, max_batch %zu/%zu, budget %lld ms",
             static_cast<unsigned long long>(p.seed), hosts_.size(), cores_per_host_,
             partitions_.size(), config_.max_batch, config_.max_batch_per_partition,
             static_cast<long long>(config_.retry.budget.count()));
}

// ---- clients' event streams --------------------------------------------------------------

/// Per partition, a stream whose sequential result is well defined and which may be re-sent
/// from any point: trade ids are unique per partition, an AMEND/CANCEL of an unknown trade names
/// a trade that never gets a NEW there, so re-deciding any event later changes nothing.
/// A partition fed by a source stream instead of a client is never re-sent by a client (its
/// source's marks keep a re-read message from being decided again), so its events may also
/// contain an AMEND before its trade's NEW, and the same AMEND again after the NEW.
/// The source streams are the merge, by production time, of the partitions they feed.
void World::make_streams() {
  const int np = static_cast<int>(env_.range(2, 6));
  struct Trade {
    std::string id;
    std::int64_t version = 1;
    bool cancelled = false;
    std::vector<std::int64_t> skipped;  // versions never used: an event there is STALE
  };
  std::vector<std::vector<Trade>> trades(np);
  std::vector<std::pair<std::string, int>> shared;  // NEWs other partitions may collide with
  for (int p = 0; p < np; ++p) {
    partitions_.push_back(PartitionKey{p % 2 ? "ACC-B" : "ACC-A", "BOOK" + std::to_string(p), "SEC"});
    streams_.emplace_back();
    clients_.emplace_back();
    clients_.back().host = static_cast<int>(env_.range(0, hosts_.size() - 1));
  }
  // Sources: up to 3 streams, each partition fed by one of them (about half) or by its client.
  const int ns = static_cast<int>(env_.range(0, 3));
  fed_by_.assign(np, -1);
  for (int p = 0; p < np && ns > 0; ++p)
    if (env_.chance(0.5)) fed_by_[p] = static_cast<int>(env_.range(0, ns - 1));
  std::vector<int> renumber(ns, -1);
  int used = 0;
  for (int p = 0; p < np; ++p)
    if (fed_by_[p] >= 0) {
      if (renumber[fed_by_[p]] < 0) renumber[fed_by_[p]] = used++;
      fed_by_[p] = renumber[fed_by_[p]];
    }
  sources_.resize(used);
  owners_.resize(used);
  // Per source-fed partition: AMENDs sent before their trade's NEW, waiting for the NEW (stage
  // 0) or for the same AMEND again (stage 1).
  struct Early {
    TradeEvent amend;
    int stage = 0;
  };
  std::vector<std::deque<Early>> early(np);
  auto dec = [&](Micros lo, Micros hi, int frac) {
    std::string s = std::to_string(env_.range(lo, hi));
    if (frac > 0 && env_.chance(0.5)) s += "." + std::to_string(env_.range(1, 9));
    return Decimal::parse(s, frac).value();
  };
  auto content = [&](TradeEvent& e) {
    e.side = env_.chance(0.5) ? Side::Buy : Side::Sell;
    e.quantity = dec(1, 1000, 6);
    e.price = dec(0, 500, 8);
  };
  Micros t = env_.range(0, 2 * kSec);
  for (int n = 0; n < params_.events; ++n) {
    const int p = static_cast<int>(env_.range(0, np - 1));
    auto& st = streams_[p];
    auto& tr = trades[p];
    TradeEvent e;
    e.partition = partitions_[p];
    const bool sourced = fed_by_[p] >= 0;
    const int roll = static_cast<int>(env_.range(0, 99));
    std::vector<Trade*> live, cancelled, skipping;
    for (auto& x : tr) {
      (x.cancelled ? cancelled : live).push_back(&x);
      if (!x.skipped.empty()) skipping.push_back(&x);
    }
    auto any = [&](std::vector<Trade*>& v) { return v[env_.range(0, v.size() - 1)]; };
    if (sourced && !early[p].empty() && roll < 25) {  // an early AMEND's NEW, then the AMEND again
      Early& x = early[p].front();
      if (x.stage++ == 0) {
        e.trade_id = x.amend.trade_id;
        e.version = 1;
        e.type = TradeType::New;
        content(e);
      } else {
        e = x.amend;
        tr.push_back(Trade{e.trade_id, 2, false, {}});
        early[p].pop_front();
      }
    } else if (sourced && roll >= 25 && roll < 30) {  // an AMEND before its trade's NEW
      e.trade_id = "P" + std::to_string(p) + "-E" + std::to_string(n);
      e.version = 2;
      e.type = TradeType::Amend;
      content(e);
      early[p].push_back(Early{e, 0});
    } else if (roll < 55 && !live.empty() && roll >= 30) {  // AMEND or CANCEL of a live trade
      Trade* x = any(live);
      e.trade_id = x->id;
      if (env_.chance(0.3)) x->skipped.push_back(++x->version);
      e.version = ++x->version;
      e.type = roll < 48 ? TradeType::Amend : TradeType::Cancel;
      if (e.type == TradeType::Amend) content(e);
      x->cancelled = e.type == TradeType::Cancel;
    } else if (roll >= 55 && roll < 62 && !skipping.empty()) {  // STALE
      Trade* x = any(skipping);
      e.trade_id = x->id;
      e.version = x->skipped[env_.range(0, x->skipped.size() - 1)];
      e.type = env_.chance(0.5) ? TradeType::Amend : TradeType::Cancel;
      if (e.type == TradeType::Amend) content(e);
    } else if (roll >= 62 && roll < 67) {  // unknown trade
      e.trade_id = "P" + std::to_string(p) + "-U" + std::to_string(n);
      e.version = env_.range(2, 4);
      e.type = env_.chance(0.5) ? TradeType::Amend : TradeType::Cancel;
      if (e.type == TradeType::Amend) content(e);
    } else if (roll >= 67 && roll < 70 && !cancelled.empty()) {  // trade cancelled
      Trade* x = any(cancelled);
      e.trade_id = x->id;
      e.version = x->version + env_.range(1, 3);
      e.type = TradeType::Amend;
      content(e);
    } else if (roll >= 70 && roll < 86 && !st.empty()) {  // duplicate or conflicting re-send
      e = st[env_.range(0, st.size() - 1)];
      if (roll >= 80) {  // same key, other content
        if (e.type == TradeType::Cancel) e.type = TradeType::Amend;
        content(e);
      }
    } else if (roll >= 86 && roll < 90) {  // a NEW whose key another partition may also use
      std::string id;
      for (auto& [sid, owner] : shared)
        if (owner != p && std::none_of(tr.begin(), tr.end(), [&](auto& x) { return x.id == sid; }))
          id = sid;
      if (id.empty()) shared.emplace_back(id = "X" + std::to_string(n), p);
      e.trade_id = id;
      e.version = 1;
      e.type = TradeType::New;
      content(e);
      tr.push_back(Trade{id, 1, false, {}});
    } else {  // a fresh NEW
      e.trade_id = "P" + std::to_string(p) + "-T" + std::to_string(n);
      e.version = 1;
      e.type = TradeType::New;
      content(e);
      tr.push_back(Trade{e.trade_id, 1, false, {}});
    }
    // Bursty arrivals: mostly back to back, sometimes a pause of seconds.
    const int gap = static_cast<int>(env_.range(0, 99));
    t += gap < 70 ? env_.range(0, 3 * kMs) : gap < 95 ? env_.range(20 * kMs, 300 * kMs)
                                                      : env_.range(1 * kSec, 8 * kSec);
    st.push_back(std::move(e));
    clients_[p].planned.push_back(t);
  }
  for (auto& c : clients_) c.done.assign(c.planned.size(), 0);
  // The source streams: their partitions' events merged by production time; the clients of
  // those partitions have nothing to send.
  std::vector<std::tuple<Micros, int, std::size_t>> order;
  for (int p = 0; p < np; ++p) {
    if (fed_by_[p] < 0) continue;
    for (std::size_t i = 0; i < streams_[p].size(); ++i) order.emplace_back(clients_[p].planned[i], p, i);
    clients_[p].done.assign(clients_[p].planned.size(), 1);
    clients_[p].next = clients_[p].planned.size();
  }
  std::sort(order.begin(), order.end());
  for (const auto& [at, p, i] : order) {
    sources_[fed_by_[p]].msgs.emplace_back(p, i);
    sources_[fed_by_[p]].planned.push_back(at);
  }
  heal_at_ = t + 20 * kSec;
  stats_.stream_events += params_.events;
}

// ---- faults -------------------------------------------------------------------------------

void World::schedule_faults() {
  const int n = env_.chance(0.2) ? 0 : static_cast<int>(env_.range(1, 12));
  const Micros budget = config_.retry.budget.count() * kMs;
  for (int i = 0; i < n; ++i) {
    const Micros t = env_.range(0, heal_at_);
    const int kind = static_cast<int>(env_.range(0, 9));
    const int hid = static_cast<int>(env_.range(0, hosts_.size() - 1));
    const Micros outage = env_.chance(0.6) ? env_.range(budget + kSec, 3 * budget) : env_.range(100 * kMs, 3 * kSec);
    const Micros step = (env_.chance(0.5) ? 1 : -1) * env_.range(1 * kHour, 3 * kHour);
    at(t, [=, this] {
      if (healed_) return;
      Host& h = hosts_[hid];
      switch (kind) {
        case 0:  // crash: cores and in-flight ops vanish; a fresh host starts later
          if (!h.up) return;
          env_.fault("crash", "host %d", hid);
          reset_host(h, true);
          at(env_.now + env_.range(100 * kMs, 10 * kSec), [this, hid] { start_host(hosts_[hid]); });
          return;
        case 1:  // pause longer than the lease: the host notices nothing meanwhile
          h.paused_until = std::max(h.paused_until, env_.now + env_.range(kLease + kSec, 3 * kLease));
          env_.fault("pause", "host %d until %.3f", hid, double(h.paused_until) / kSec);
          return;
        case 2:  // Pipeline::stop with a timeout that passed: abort_all, then a fresh host
          return stop_host(hid);
        case 3:
          env_.store_down_until = std::max(env_.store_down_until, env_.now + outage);
          env_.fault("store_outage", "until %.3f", double(env_.store_down_until) / kSec);
          return;
        case 4:
          env_.lock_down_until = std::max(env_.lock_down_until, env_.now + outage);
          env_.fault("lock_outage", "until %.3f", double(env_.lock_down_until) / kSec);
          return;
        case 5:
        case 6: {
          const bool restart = env_.chance(0.5);
          env_.fault(restart ? "lock_restart" : "lock_failover", "%s", "(the lock server forgets its keys)");
          lock_->forget(restart);
          return;
        }
        case 7:
          env_.fault("host_clock_step", "host %d %+.1f h", hid, double(step) / kHour);
          h.offset += step;
          if (step < 0) {
            env_.backward_steps -= step;
            // "Passed" follows the host's clock: a deadline it is back before has not passed
            // (the core can only see time at its inputs; a steady clock never does this).
            for (std::uint32_t id : h.pending) {
              Submission& sub = subs_[id];
              if (sub.deadline && sub.pass_step != UINT64_MAX && *sub.deadline >= host_now(h)) {
                sub.pass_step = UINT64_MAX;
                h.deadlines.emplace(*sub.deadline, id);
              }
            }
          }
          return;
        case 8:
          env_.fault("lock_clock_step", "%+.1f h", double(step) / kHour);
          env_.lock_offset += step;
          if (step < 0) env_.backward_steps -= step;
          return;
        default: {  // another member claims a source stream: the old slot is told (its
                    // assignment was lost) or not (a zombie that learns from a refused commit)
          if (owners_.empty()) return;
          const int st = static_cast<int>(env_.range(0, owners_.size() - 1));
          Owner& o = owners_[st];
          if (o.claiming || o.host < 0) return;
          const bool told = env_.chance(0.5);
          env_.fault(told ? "source_revoke" : "source_steal", "stream %d from host %d", st, o.host);
          Host& old = hosts_[o.host];
          if (told && old.up && old.inc == o.inc && old.source)
            if (SimSource::SlotState* sl = old.source->find(o.slot)) sl->dead = true;
          const int from = o.host;
          o.host = -1;
          return claim_stream(st, told ? env_.range(0, kSec) : 0, from);
        }
      }
    });
  }
}

// ---- hosts --------------------------------------------------------------------------------

void World::start_host(Host& h) {
  h.up = true;
  h.stopping = false;
  h.next_stamp = 1;
  h.counters = std::make_unique<detail::Counters>();
  h.gate = std::make_unique<detail::KeyGate>();
  h.barrier.assign(partitions_.size(), Barrier{});
  h.source = std::make_unique<SimSource>(env_, h.id);
  h.cores.clear();
  for (std::size_t i = 0; i < cores_per_host_; ++i) {
    detail::ShardConfig c = config_;
    c.seed = env_.rng();
    h.cores.push_back(CoreSlot{std::make_unique<detail::ShardCore>(c, processor_, *h.counters, log_), false, 0});
  }
  env_.trace("host %d up (incarnation %d)", h.id, h.inc);
}

/// Ends an incarnation: what was sent to it and not reported gets no outcome.
void World::reset_host(Host& h, bool crashed) {
  for (std::uint32_t id : h.pending) {
    Submission& s = subs_[id];
    s.state = crashed ? Submission::State::dropped : Submission::State::failed;
    s.ec = errc::stopped;
    ++stats_.outcomes[crashed ? "dropped (crash)" : "no outcome"];
    if (s.stream >= 0) continue;  // its source goes with the host
    answered(id);
    client_failed(id);
  }
  h.pending.clear();
  h.deadlines = {};
  h.held.clear();
  h.cores.clear();  // before the ops they point to
  h.live.clear();
  h.gate.reset();
  h.source.reset();
  // The streams this incarnation owned: the group gives them out again, after the session
  // timeout when it crashed.
  for (std::size_t st = 0; st < owners_.size(); ++st) {
    Owner& o = owners_[st];
    if (o.claiming || o.host != h.id || o.inc != h.inc) continue;
    o.host = -1;
    claim_stream(static_cast<int>(st), crashed ? env_.range(kSec, 10 * kSec) : env_.range(10 * kMs, 500 * kMs), -1);
  }
  h.up = !crashed;
  h.stopping = false;
  ++h.inc;
  if (!crashed) start_host(h);
}

void World::stop_host(int hid) {
  Host& h = hosts_[hid];
  if (!h.up || h.stopping || env_.now < h.paused_until) return;
  env_.fault("stop", "host %d (abort_all)", hid);
  h.stopping = true;
  for (std::size_t ci = 0; ci < h.cores.size(); ++ci) {
    CoreSlot& cs = h.cores[ci];
    cs.core->set_stamp_now(h.next_stamp);
    cs.core->abort_all(errc::stopped, host_now(h));
    deliver(h, cs);
    drive(hid, ci);
  }
  host_event(hid, h.inc, env_.now + kMs, [this, hid] { finish_stop(hid); });
}

void World::finish_stop(int hid) {
  Host& h = hosts_[hid];
  for (auto& cs : h.cores)
    if (cs.busy || cs.committing || !cs.core->empty())
      return host_event(hid, h.inc, env_.now + 50 * kMs, [this, hid] { finish_stop(hid); });
  env_.caller = hid;
  for (auto& cs : h.cores) {
    auto grants = cs.core->shutdown();
    lock_->release(grants);
  }
  reset_host(h, false);
}

/// A request reaches its host: the shell's part of Pipeline::async_submit, for each of its
/// events in order (stamp, key gate, core), then the cores run.
void World::receive(const std::vector<std::uint32_t>& ids) {
  Host& h = hosts_[subs_[ids.front()].host];
  std::vector<std::size_t> touched;
  for (std::uint32_t id : ids) {
    Submission& s = subs_[id];
    if (s.state != Submission::State::in_network) continue;
    if (h.stopping) {  // the shell refuses: no outcome
      s.state = Submission::State::failed;
      s.ec = errc::stopped;
      h.pending.erase(id);
      ++stats_.outcomes["no outcome"];
      if (s.stream >= 0) {
        source_done(s, s.ec);
        continue;
      }
      answered(id);
      client_failed(id);
      continue;
    }
    auto op = std::make_unique<SimOp>(streams_[s.partition][s.index], *this, id);
    if (s.stream >= 0) op->source = SourceRef{h.source.get(), s.slot, s.position};
    op->submitted = host_now(h);
    if (s.deadline) op->deadline = *s.deadline;
    detail::state_of(op.get()).key_hash = detail::key_hash_of(op->event);
    detail::state_of(op.get()).stamp = s.stamp = h.next_stamp++;
    s.state = Submission::State::pending;
    s.h0 = env_.history.size();
    SimOp* raw = op.get();
    h.live.emplace(raw, std::move(op));
    env_.trace("host %d receives P%d #%zu stamp %llu", h.id, s.partition, s.index,
               static_cast<unsigned long long>(s.stamp));
    h.gate->enter(raw);
    const std::size_t ci = core_of(h, raw->event.partition);
    CoreSlot& cs = h.cores[ci];
    cs.core->set_stamp_now(h.next_stamp);
    cs.core->add(raw, host_now(h));
    deliver(h, cs);
    if (std::find(touched.begin(), touched.end(), ci) == touched.end()) touched.push_back(ci);
  }
  for (std::size_t ci : touched) drive(h.id, ci);
}

/// Runs a core until it waits for I/O, a timer or input.
void World::drive(int hid, std::size_t ci) {
  Host& h = hosts_[hid];
  CoreSlot& cs = h.cores[ci];
  for (int guard = 0; !cs.busy; ++guard) {
    if (guard > 100000) return env_.fail("core returns actions without end at one instant");
    cs.core->set_stamp_now(h.next_stamp);
    detail::Action a = cs.core->next(host_now(h));
    deliver(h, cs);
    switch (a.kind) {
      case Kind::idle:
        return;
      case Kind::wait: {
        if (a.until == Time::max()) return;
        const std::uint64_t gen = ++cs.timer_gen;
        const Micros t = std::max(from_time(a.until) - h.offset, env_.now + 1);
        env_.trace("  host %d core %zu waits %.3f ms", hid, ci, double(t - env_.now) / kMs);
        return host_event(hid, h.inc, t, [this, hid, ci, gen] {
          CoreSlot& c = hosts_[hid].cores[ci];
          if (c.timer_gen == gen && !c.busy) drive(hid, ci);
        });
      }
      case Kind::release:
        env_.caller = hid;
        lock_->release(a.grants);
        continue;
      default:
        if (a.kind == Kind::commit && a.overlapped) {
          if (cs.committing) return env_.fail("a second overlapped commit while one is out");
          ++stats_.overlap["overlapped commits"];
          cs.committing = true;
          issue(h, ci, std::move(a));
          continue;  // the core goes on with the next batch
        }
        if (cs.committing) ++stats_.overlap[std::string(kind_name(a.kind)) + " during a commit"];
        cs.busy = true;
        return issue(h, ci, std::move(a));
    }
  }
}

void World::issue(Host& h, std::size_t ci, detail::Action a) {
  const int hid = h.id, inc = h.inc;
  const bool store_call = a.kind != Kind::acquire && a.kind != Kind::renew;
  auto act = std::make_shared<detail::Action>(std::move(a));
  const Time start = host_now(h);
  const std::uint64_t sent = env_.step;
  ++inflight_;
  at(env_.now + latency(true), [=, this] {
    --inflight_;
    env_.caller = hid;
    env_.caller_inc = inc;
    env_.caller_sent = sent;
    env_.caller_start = start;
    auto reply = std::make_shared<Reply>();
    execute(*act, *reply);
    host_event(hid, inc, env_.now + latency(store_call), [=, this] { answer(hid, ci, act, reply); });
  });
}

/// The server side of an action, at the instant the request arrives.
void World::execute(detail::Action& a, Reply& r) {
  boost::system::error_code ec;
  // The server's answer goes into its slot of the reply; a failed one also into `ec`.
  auto answer = [&ec](auto& slot, auto result) {
    if (!result) ec = result.error();
    slot = std::move(result);
  };
  switch (a.kind) {
    case Kind::acquire:
      answer(r.acquired, lock_->try_acquire(a.keys));
      break;
    case Kind::renew:
      answer(r.renewed, lock_->renew(a.grants));
      break;
    case Kind::claim:
    case Kind::load:  // load only with Mutation::lock_fences
      answer(r.states, a.kind == Kind::claim ? store_->claim_partitions(a.keys)
                                             : store_->load_partitions(a.keys));
      break;
    case Kind::find:
    case Kind::verify:
      answer(r.found, store_->find_events(*a.idem_keys));
      break;
    case Kind::commit:
      answer(r.committed, store_->commit(*a.batch));
      if (ec == errc::internal) env_.fail("the store refused a malformed batch (errc::internal)");
      break;
    case Kind::sources:
      answer(r.sources, detail::read_source_offsets(*store_, a.consumers));
      break;
    default:
      env_.fail("unexpected action kind");
  }
  env_.trace("  host %d %s (%zu keys, %zu partitions) -> %s", env_.caller, kind_name(a.kind),
             a.keys.size() + (a.idem_keys ? a.idem_keys->size() : 0) + a.grants.size(),
             a.batch ? a.batch->partitions.size() : 0, ec ? ec.message().c_str() : "ok");
}

void World::answer(int hid, std::size_t ci, const std::shared_ptr<detail::Action>& a,
                   const std::shared_ptr<Reply>& r) {
  Host& h = hosts_[hid];
  CoreSlot& cs = h.cores[ci];
  if (a->kind == Kind::commit && a->overlapped) {
    cs.committing = false;
    if (!r->committed || !*r->committed) ++stats_.overlap["overlapped commits failed"];
  } else {
    cs.busy = false;
  }
  cs.core->set_stamp_now(h.next_stamp);
  const Time now = host_now(h);
  switch (a->kind) {
    case Kind::acquire: cs.core->on_acquired(std::move(*r->acquired), now); break;
    case Kind::renew: cs.core->on_renewed(std::move(a->grants), std::move(*r->renewed), now); break;
    case Kind::claim:
    case Kind::load: cs.core->on_claimed(std::move(*r->states), now); break;
    case Kind::find: cs.core->on_found(std::move(*r->found), now); break;
    case Kind::verify: cs.core->on_verified(std::move(*r->found), now); break;
    case Kind::commit: cs.core->on_committed(std::move(*r->committed), now); break;
    case Kind::sources: cs.core->on_sources(std::move(*r->sources), now); break;
    default: break;
  }
  deliver(h, cs);
  drive(hid, ci);
}

/// Hands the core's completions to their submitters; wakes the cores whose key gate opened.
void World::deliver(Host& h, CoreSlot& cs) {
  auto done = cs.core->take_completions();
  if (done.empty()) return;
  ++call_;
  for (auto& c : done) {
    auto it = h.live.find(c.op);
    if (it == h.live.end()) return env_.fail("a completion for an op that is not in flight");
    auto next = h.gate->leave(c.op);
    std::unique_ptr<SimOp> op = std::move(it->second);
    h.live.erase(it);
    op->complete(c.ec, std::move(c.outcome));
    if (next) {
      const std::size_t ci = core_of(h, *next);
      h.cores[ci].core->set_stamp_now(h.next_stamp);
      h.cores[ci].core->wake(*next);
      host_event(h.id, h.inc, env_.now, [this, hid = h.id, ci] {
        if (!hosts_[hid].cores[ci].busy) drive(hid, ci);
      });
    }
  }
}

void World::report(std::uint32_t id, boost::system::error_code ec, Outcome o) {
  Submission& s = subs_[id];
  Host& h = hosts_[s.host];
  if (s.state != Submission::State::pending) return env_.fail("an op completed twice");
  h.pending.erase(id);
  const bool sourced = s.stream >= 0;
  if (!sourced) answered(id);
  s.h1 = env_.history.size();
  Barrier& bar = h.barrier[s.partition];
  const TradeEvent& e = streams_[s.partition][s.index];
  if (ec == errc::replayed || ec == errc::source_abandoned) {
    // Neither decided nor a failure of its partition: no barrier.
    if (!sourced) return env_.fail("an event without a source completed " + ec.message());
    const bool replayed = ec == errc::replayed;
    s.state = replayed ? Submission::State::replayed : Submission::State::abandoned;
    s.ec = ec;
    ++stats_.sources[replayed ? "replayed" : "abandoned"];
    env_.trace("  host %d P%d #%zu (stream %d @%lld) %s v%lld: %s", s.host, s.partition, s.index,
               s.stream, static_cast<long long>(s.position), e.trade_id.c_str(),
               static_cast<long long>(e.version), replayed ? "replayed" : "abandoned");
    return source_done(s, ec);
  }
  if (ec) {
    s.state = Submission::State::failed;
    s.ec = ec;
    ++stats_.outcomes["no outcome"];
    env_.trace("  host %d P%d #%zu %s v%lld stamp %llu: no outcome (%s)", s.host, s.partition,
               s.index, e.trade_id.c_str(), static_cast<long long>(e.version),
               static_cast<unsigned long long>(s.stamp), ec.message().c_str());
    bar.raise(call_, h.next_stamp, id);
    if (sourced) return source_done(s, ec);
    return client_failed(id);
  }
  s.state = Submission::State::decided;
  s.outcome = o;
  ++stats_.outcomes[std::string(to_string(o.kind))];
  env_.trace("  host %d P%d #%zu %s v%lld stamp %llu: %s %llu %s", s.host, s.partition, s.index,
             e.trade_id.c_str(), static_cast<long long>(e.version),
             static_cast<unsigned long long>(s.stamp), to_string(o.kind).data(),
             static_cast<unsigned long long>(o.seq), o.reason.c_str());
  if (!sourced) {
    clients_[s.partition].done[s.index] = 1;
    if (s.epoch == clients_[s.partition].epoch) clients_[s.partition].failures = 0;
  }
  if (s.stamp < bar.effective(call_)) {
    env_.fail("(2) host " + std::to_string(s.host) + " partition " + std::to_string(s.partition) +
              ": event #" + std::to_string(s.index) + " (stamp " + std::to_string(s.stamp) +
              ") got " + std::string(to_string(o.kind)) + " after an earlier failure raised the " +
              "barrier to stamp " + std::to_string(bar.effective(call_)) + " (event #" +
              std::to_string(subs_[bar.by].index) + ", stamp " + std::to_string(subs_[bar.by].stamp) +
              ": " + subs_[bar.by].ec.message() + ")");
  }
  if (sourced) source_done(s, ec);
}

// ---- sources ------------------------------------------------------------------------------
//
// A source stream belongs to whichever host claimed it last (TradeStore::claim_source: the
// epoch goes up, the stored offset comes back). The host's SimSource reads the stream from
// there, submits each message to its own cores (as KafkaSource does) with at most
// `max_in_flight_` in flight, stores its watermark with every commit and by offsets-only
// commits, and fails the slot when an event ends without an outcome (the member restarts:
// another claim). Another member may claim the stream at any time: the old slot learns it only
// when a refused commit finds its row stale (or at once, when the fault says it is told).

void World::claim_stream(int st, Micros delay, int avoid_host) {
  Owner& o = owners_[st];
  if (o.claiming) return;
  o.claiming = true;
  at(env_.now + delay, [this, st, avoid_host] { try_claim(st, avoid_host); });
}

void World::try_claim(int st, int avoid_host) {
  std::vector<int> up, any;
  for (const Host& h : hosts_) {
    if (!h.up || h.stopping) continue;
    any.push_back(h.id);
    if (h.id != avoid_host) up.push_back(h.id);
  }
  if (up.empty()) up = any;
  if (up.empty()) return at(env_.now + 100 * kMs, [this, st, avoid_host] { try_claim(st, avoid_host); });
  const int hid = up[env_.range(0, up.size() - 1)], inc = hosts_[hid].inc;
  ++inflight_;
  at(env_.now + latency(true), [this, st, hid, inc, avoid_host] {
    --inflight_;
    env_.caller = hid;
    auto r = store_->claim_source(kSourceConsumer, "t", st);
    if (r) {
      claims_.push_back(Claim{st, r.value().epoch, env_.history.size()});
      ++stats_.sources["claims"];
    }
    env_.trace("  host %d claims stream %d -> %s", hid, st,
               r ? ("epoch " + std::to_string(r.value().epoch) + " offset " +
                    std::to_string(r.value().next_offset)).c_str()
                 : r.error().message().c_str());
    at(env_.now + latency(true), [this, st, hid, inc, avoid_host, r] {
      Owner& o = owners_[st];
      o.claiming = false;
      if (!r) return claim_stream(st, env_.range(50 * kMs, kSec), avoid_host);
      Host& h = hosts_[hid];
      if (!h.up || h.inc != inc || h.stopping) return claim_stream(st, env_.range(10 * kMs, 500 * kMs), -1);
      const auto g = static_cast<std::uint32_t>(slots_.size());
      slots_.push_back(Slot{st, hid, inc, r.value().epoch});
      o.host = hid;
      o.inc = inc;
      o.slot = g;
      const std::int64_t start = r.value().next_offset;
      host_event(hid, inc, env_.now, [this, hid, g, start] { open_slot(hid, g, start); });
    });
  });
}

void World::open_slot(int hid, std::uint32_t g, std::int64_t start) {
  Host& h = hosts_[hid];
  const Slot& sl = slots_[g];
  h.source->open(g, sl.stream, sl.epoch, start);
  env_.trace("  host %d source: slot %u reads stream %d from %lld (epoch %llu)", hid, g, sl.stream,
             static_cast<long long>(start), static_cast<unsigned long long>(sl.epoch));
  poll(hid, h.inc, g);
  host_event(hid, h.inc, env_.now + flush_every_, [this, hid, inc = h.inc, g] { flush(hid, inc, g); });
}

/// The poll loop of a slot: submits every message produced by now, while there is room.
void World::poll(int hid, int inc, std::uint32_t g) {
  Host& h = hosts_[hid];
  if (!h.up || h.inc != inc || h.stopping) return;
  SimSource::SlotState* sl = h.source->find(g);
  if (sl == nullptr || sl->dead) return;
  const SourceStream& ss = sources_[sl->stream];
  const auto len = static_cast<std::int64_t>(ss.msgs.size());
  std::vector<std::uint32_t> ids;
  while (sl->position < len && sl->in_flight.size() < max_in_flight_ &&
         ss.planned[sl->position] <= env_.now) {
    const auto id = static_cast<std::uint32_t>(subs_.size());
    Submission sub;
    sub.partition = ss.msgs[sl->position].first;
    sub.index = ss.msgs[sl->position].second;
    sub.host = hid;
    sub.incarnation = inc;
    sub.stream = sl->stream;
    sub.position = sl->position;
    sub.slot = g;
    subs_.push_back(sub);
    h.pending.insert(id);
    sl->in_flight.insert(sl->position++);
    ids.push_back(id);
  }
  stats_.submissions += ids.size();
  if (sl->position < len && sl->in_flight.size() < max_in_flight_ && !sl->timer) {
    sl->timer = true;
    host_event(hid, inc, ss.planned[sl->position], [this, hid, inc, g] {
      if (SimSource::SlotState* s = hosts_[hid].source->find(g)) s->timer = false;
      poll(hid, inc, g);
    });
  }
  if (!ids.empty()) receive(ids);
}

/// An event of a slot completed: it leaves the slot's window; a failure kills the slot (the
/// member restarts: it claims the stream again).
void World::source_done(const Submission& s, boost::system::error_code ec) {
  Host& h = hosts_[s.host];
  if (!h.up || h.inc != s.incarnation || !h.source) return;
  SimSource::SlotState* sl = h.source->find(s.slot);
  if (sl == nullptr) return;
  sl->in_flight.erase(s.position);
  if (ec && ec != errc::replayed && ec != errc::source_abandoned && !sl->dead) {
    sl->dead = true;
    ++stats_.sources["slot_failures"];
    env_.trace("  host %d source: stream %d slot %u fails (%s)", s.host, s.stream, s.slot,
               ec.message().c_str());
    Owner& o = owners_[s.stream];
    if (o.slot == s.slot && !o.claiming) {
      o.host = -1;
      claim_stream(s.stream, env_.range(100 * kMs, 3 * kSec), -1);
    }
    return;
  }
  host_event(h.id, h.inc, env_.now, [this, hid = h.id, inc = h.inc, g = s.slot] { poll(hid, inc, g); });
}

/// The offsets-only commit of a slot, every `flush_every_`: its watermark when it moved, and once
/// more when the slot has read and decided everything (an event commit decided earlier may have
/// stored a lower offset after the last flush).
void World::flush(int hid, int inc, std::uint32_t g) {
  Host& h = hosts_[hid];
  if (!h.up || h.inc != inc) return;
  SimSource::SlotState* sl = h.source->find(g);
  if (sl == nullptr || sl->dead) return;
  host_event(hid, inc, env_.now + flush_every_, [this, hid, inc, g] { flush(hid, inc, g); });
  const std::int64_t wm = sl->watermark();
  const bool done = sl->in_flight.empty() &&
                    sl->position == static_cast<std::int64_t>(sources_[sl->stream].msgs.size());
  if (sl->flushing || (wm == sl->flushed && (!done || sl->final_flushed))) return;
  sl->flushing = true;
  auto batch = std::make_shared<CommitBatch>();
  batch->sources.push_back(SourceOffset{kSourceConsumer, "t", sl->stream, wm, sl->epoch});
  env_.batch_events[batch.get()].clear();  // no events: an address reused from another batch
  const Time start = host_now(h);
  const std::uint64_t sent = env_.step;
  ++inflight_;
  at(env_.now + latency(true), [this, hid, inc, g, batch, wm, done, start, sent] {
    --inflight_;
    env_.caller = hid;
    env_.caller_inc = inc;
    env_.caller_sent = sent;
    env_.caller_start = start;
    auto r = store_->commit(*batch);
    env_.batch_events.erase(batch.get());
    env_.trace("  host %d source: offsets-only commit stream %d next %lld -> %s", hid,
               batch->sources[0].partition, static_cast<long long>(wm),
               r ? "ok" : r.error().message().c_str());
    host_event(hid, inc, env_.now + latency(true), [this, hid, g, wm, done, r] {
      SimSource::SlotState* sl = hosts_[hid].source->find(g);
      if (sl == nullptr) return;
      sl->flushing = false;
      if (r) {
        sl->flushed = wm;
        if (done) sl->final_flushed = true;
      } else if (r.error() == errc::fenced_off && !sl->dead) {
        sl->dead = true;  // only the epoch can refuse an offsets-only commit
        env_.fault("source_lost");
        env_.trace("  host %d source: stream %d was claimed by another member (offsets-only "
                   "commit refused)", hid, sl->stream);
      }
    });
  });
}

/// Every stream is owned by a live slot that has read, decided and stored all of it.
bool World::sources_done() const {
  for (std::size_t st = 0; st < owners_.size(); ++st) {
    const Owner& o = owners_[st];
    if (o.claiming || o.host < 0) return false;
    const Host& h = hosts_[o.host];
    if (!h.up || h.inc != o.inc || !h.source) return false;
    const SimSource::SlotState* sl = h.source->find(o.slot);
    if (sl == nullptr || sl->dead || !sl->final_flushed) return false;
  }
  return true;
}

// ---- clients ------------------------------------------------------------------------------

/// Sends the client's next request after `delay` (not before its first event is due), unless
/// one of this round is still unanswered: a gateway client that waits for each response.
void World::pump(int p, Micros delay) {
  Client& c = clients_[p];
  if (c.next >= c.planned.size()) return;
  const int epoch = c.epoch;
  at(std::max(c.planned[c.next], env_.now + delay), [this, p, epoch] {
    Client& c = clients_[p];
    if (c.epoch != epoch || c.in_request > 0 || c.next >= c.planned.size()) return;
    if (hosts_.size() > 1 && env_.chance(p_move_)) {  // hand-off: the partition moves elsewhere
      c.host = (c.host + static_cast<int>(env_.range(1, hosts_.size() - 1))) % static_cast<int>(hosts_.size());
      env_.trace("client P%d moves to host %d", p, c.host);
    }
    send_request(p);
  });
}

/// One request: the events already due from `next` on (at least one, at most `max_request_`),
/// with one deadline for all of them when the proxy sets one.
void World::send_request(int p) {
  Client& c = clients_[p];
  Host& h = hosts_[c.host];
  std::size_t n = 1;
  while (n < max_request_ && c.next + n < c.planned.size() && c.planned[c.next + n] <= env_.now) ++n;
  std::optional<Time> deadline;
  if (h.up && !h.stopping && env_.chance(p_deadline_)) {
    env_.fault("deadline");
    deadline = host_now(h) + std::chrono::microseconds(env_.range(20 * kMs, 3 * kSec));
  }
  std::vector<std::uint32_t> ids;
  for (std::size_t k = 0; k < n; ++k) {
    const auto id = static_cast<std::uint32_t>(subs_.size());
    Submission s;
    s.partition = p;
    s.index = c.next++;
    s.host = h.id;
    s.incarnation = h.inc;
    s.epoch = c.epoch;
    s.deadline = deadline;
    subs_.push_back(s);
    ids.push_back(id);
  }
  stats_.submissions += n;
  env_.trace("client P%d sends #%zu..#%zu to host %d%s", p, c.next - n, c.next - 1, h.id,
             deadline ? " (deadline)" : "");
  if (!h.up || h.stopping) {  // connection refused, or the shell refuses (stopping)
    for (std::uint32_t id : ids) subs_[id].state = Submission::State::failed, subs_[id].ec = errc::stopped;
    stats_.outcomes["refused"] += n;
    return client_failed(ids.front());
  }
  c.in_request = static_cast<int>(n);
  for (std::uint32_t id : ids) {
    h.pending.insert(id);
    if (deadline) h.deadlines.emplace(*deadline, id);
  }
  h.last_arrival = std::max(h.last_arrival, env_.now + env_.range(100, 1000));
  host_event(h.id, h.inc, h.last_arrival, [this, ids] { receive(ids); });
}

/// A submission of the client's current epoch ended without an outcome (reported, host gone, or
/// deadline passed): re-send from the first event without an outcome, maybe to another host.
void World::client_failed(std::uint32_t id) {
  const Submission& s = subs_[id];
  Client& c = clients_[s.partition];
  if (s.epoch != c.epoch) return;
  ++c.epoch;
  c.next = std::find(c.done.begin(), c.done.end(), 0) - c.done.begin();
  c.in_request = 0;
  ++c.failures;
  if (hosts_.size() > 1 && env_.chance(0.6)) {
    c.host = (c.host + static_cast<int>(env_.range(1, hosts_.size() - 1))) % static_cast<int>(hosts_.size());
  }
  pump(s.partition, env_.range(kMs, std::min<Micros>(30 * kSec, (10 * kMs) << std::min(c.failures, 12))));
}

/// The proxy gives up on a submission once the host clock passed its deadline.
void World::check_deadlines() {
  for (Host& h : hosts_) {
    while (!h.deadlines.empty() && host_now(h) > h.deadlines.top().first) {
      const std::uint32_t id = h.deadlines.top().second;
      h.deadlines.pop();
      Submission& s = subs_[id];
      if (s.state != Submission::State::pending && s.state != Submission::State::in_network) continue;
      s.pass_step = env_.step;
      s.h_pass = env_.history.size();
      client_failed(id);
    }
  }
}

void World::heal() {
  healed_ = true;
  env_.store_down_until = env_.lock_down_until = 0;
  env_.p_read_fail = env_.p_commit_fail = env_.p_lost_ack = env_.p_slow = env_.p_lock_fail = 0;
  p_deadline_ = 0;
  env_.trace("HEAL: faults end; clients re-send every event without an outcome");
  for (std::size_t p = 0; p < clients_.size(); ++p) {
    Client& c = clients_[p];
    c.failures = 0;
    c.in_request = 0;
    ++c.epoch;
    c.next = std::find(c.done.begin(), c.done.end(), 0) - c.done.begin();
    pump(static_cast<int>(p), env_.range(0, 10 * kMs));
  }
  // Bounded: pauses (<= 3 leases), restarts (<= 10 s), leases the lock server still keeps,
  // timers set before a backward clock step, plus ten minutes.
  live_deadline_ = env_.now + 10 * kMin + 60 * kSec + env_.backward_steps + lock_->max_remaining();
}

bool World::quiescent() const {
  if (inflight_ > 0) return false;
  for (const Client& c : clients_)
    if (std::find(c.done.begin(), c.done.end(), 0) != c.done.end()) return false;
  for (const Host& h : hosts_) {
    if (!h.up || h.stopping || !h.pending.empty()) return false;
    for (const CoreSlot& cs : h.cores)
      if (cs.busy || cs.committing || !cs.core->empty()) return false;
  }
  return sources_done();
}

std::string World::run() {
  schedule_faults();
  for (std::size_t p = 0; p < clients_.size(); ++p) pump(static_cast<int>(p), 0);
  for (std::size_t st = 0; st < sources_.size(); ++st)
    claim_stream(static_cast<int>(st), env_.range(0, 500 * kMs), -1);
  at(heal_at_, [this] { heal(); });
  std::string what;
  while (what.empty()) {
    if (q_.empty()) {
      what = "(5) liveness: nothing left to run, but the run is not quiescent";
      break;
    }
    Ev e = std::move(const_cast<Ev&>(q_.top()));
    q_.pop();
    env_.now = e.t;
    ++env_.step;
    check_deadlines();
    e.fn();
    if (!env_.failure.empty()) what = env_.failure;
    else if (env_.step > kMaxSteps) what = "(5) liveness: step limit reached (livelock?)";
    else if (healed_ && quiescent()) break;
    else if (healed_ && env_.now > live_deadline_) {
      std::size_t open = 0, pending = 0;
      for (const Client& c : clients_) open += std::count(c.done.begin(), c.done.end(), 0);
      for (const Host& h : hosts_) pending += h.pending.size();
      what = "(5) liveness: " + std::to_string(open) + " events without an outcome and " +
             std::to_string(pending) + " submissions unanswered " +
             std::to_string((env_.now - heal_at_) / kSec) + " s after healing";
    }
  }
  stats_.sim_time += env_.now;
  stats_.commits += env_.history.size();
  for (const auto& [k, n] : env_.faults) stats_.faults[k] += n;
  if (what.empty()) {
    what = check_run(CheckInput{partitions_, streams_, env_.history, subs_, *memory_, *processor_,
                                sources_, fed_by_, slots_, claims_});
  }
  if (params_.verbose) {
    std::printf("seed %llu: %s, %zu commits, %.1f simulated s\n",
                static_cast<unsigned long long>(params_.seed), what.empty() ? "ok" : "FAILED",
                env_.history.size(), double(env_.now) / kSec);
  }
  return what;
}

}  // namespace

std::string run_seed(const Params& p, Stats& stats) {
  ++stats.seeds;
  World w(p, stats);
  return w.run();
}

}  // namespace sim
