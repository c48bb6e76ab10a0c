// The Kafka source: a thin librdkafka shell around OffsetTracker (offset_tracker.hpp).
//
// Threads: `run` polls the consumer (messages, rebalance callbacks) and stores offsets-only
// commits; a producer thread sends the results topic's messages and serves their delivery
// reports; the pipeline's shards call the hooks (before_commit, the guard) and complete events
// inline (callback handlers run on the shard, before it takes its next batch), so nothing that
// runs on a shard sleeps or waits for Kafka. Everything the tracker knows is guarded by one
// mutex, never held across a call into the pipeline, the store or librdkafka.

#include <tradecapture/kafka_source.hpp>

#include "offset_tracker.hpp"

#include <tradecapture/event_codec.hpp>
#include <tradecapture/store_wrapper.hpp>

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <thread>

namespace tradecapture {
namespace {

using namespace kafka_detail;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

class KafkaCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "tradecapture.kafka"; }
  std::string message(int ev) const override {
    switch (static_cast<kafka_errc>(ev)) {
      case kafka_errc::bad_config: return "bad Kafka configuration";
      case kafka_errc::client_error: return "Kafka client error";
      case kafka_errc::fatal_error: return "fatal Kafka error";
      case kafka_errc::revoke_timeout: return "in-flight events of a revoked partition did not finish";
    }
    return "unknown Kafka error";
  }
};

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

spdlog::level::level_enum level_of(int syslog_level) {
  if (syslog_level <= 3) return spdlog::level::err;
  if (syslog_level == 4) return spdlog::level::warn;
  if (syslog_level <= 6) return spdlog::level::info;
  return spdlog::level::debug;
}

struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const { rd_kafka_topic_partition_list_destroy(l); }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;

/// The results JSON of one outcome: a replay --outcomes line with topic/partition/offset.
std::string outcome_json(const KafkaOutcome& o) {
  std::string out;
  out.reserve(160);
  out += "{\"topic\": ";
  append_json_string(out, o.topic);
  out += ", \"partition\": " + std::to_string(o.partition);
  out += ", \"offset\": " + std::to_string(o.offset);
  out += ", \"trade_id\": ";
  if (o.trade_id) {
    append_json_string(out, *o.trade_id);
  } else {
    out += "null";
  }
  out += ", \"version\": ";
  out += o.version ? std::to_string(*o.version) : std::string("null");
  out += ", \"outcome\": ";
  append_json_string(out, to_string(o.outcome.kind));
  out += ", \"reason\": ";
  append_json_string(out, o.outcome.kind == OutcomeKind::Rejected
                              ? std::string_view(o.outcome.reason)
                              : std::string_view());
  out += ", \"seq\": ";
  out += o.outcome.kind == OutcomeKind::Accepted ? std::to_string(o.outcome.seq)
                                                  : std::string("null");
  out += "}";
  return out;
}

}  // namespace

const boost::system::error_category& kafka_category() noexcept {
  static const KafkaCategory c;
  return c;
}

std::string kafka_message_key(const PartitionKey& partition) { return partition.encode(); }

// ------------------------------------------------------------------------------------------

struct KafkaSource::Impl {
  // The pipeline's view of the store: records that a commit carrying source offsets was fenced
  // off, so the polling thread looks for partitions another member claimed.
  class SourceStore final : public TradeStoreWrapper {
   public:
    SourceStore(std::shared_ptr<TradeStore> target, std::atomic<bool>& suspect)
        : TradeStoreWrapper(std::move(target)), suspect_(suspect) {}

   protected:
    result<void> do_commit_(const CommitBatch& batch) override {
      auto r = TradeStoreWrapper::do_commit_(batch);
      if (!r && r.error() == errc::fenced_off && !batch.sources.empty())
        suspect_.store(true, std::memory_order_relaxed);
      return r;
    }

   private:
    std::atomic<bool>& suspect_;
  };

  // The pipeline's lock for Kafka-fed events. Within this process one shard owns a trade
  // partition (by hash), whatever Kafka partitions feed it; between processes the store does the
  // fencing: the pipeline writes with the token of `TradeStore::claim_partitions`, so a stale
  // writer's commits (and checks) of a trade partition are refused once another member claimed
  // it, and the claim epochs of the source offsets, carried by every commit that holds a Kafka
  // event, fence a zombie member. So this lock never refuses: it only decides who works on a
  // partition here, and there is nobody else here. Its grants carry no fencing token (fence 0;
  // no store compares it). That a revoked or lost Kafka partition feeds nothing further is the
  // tracker's job: its messages are not taken any more, and its events still in the pipeline
  // are abandoned by the guard (see Guard) or refused in the commit.
  class FreeLock final : public PartitionLock {
   public:
    explicit FreeLock(std::string group) : group_(std::move(group)) {}
    result<std::vector<result<Grant>>> try_acquire(
        std::span<const PartitionKey> partitions) override {
      std::vector<result<Grant>> out;
      out.reserve(partitions.size());
      const auto expires = Clock::now() + lease();
      for (const auto& p : partitions) {
        Grant g;
        g.partition = p;
        g.token = "kafka";
        g.expires = expires;
        out.emplace_back(std::move(g));
      }
      return out;
    }
    result<std::vector<result<void>>> renew(std::span<Grant> grants) override {
      const auto expires = Clock::now() + lease();
      for (auto& g : grants) g.expires = expires;
      return std::vector<result<void>>(grants.size(), boost::outcome_v2::success());
    }
    void release(std::span<const Grant>) override {}
    std::chrono::milliseconds lease() const override { return 60s; }
    result<void> ping() override { return boost::outcome_v2::success(); }
    std::string describe() const override { return "kafka-source:" + group_; }

   private:
    std::string group_;
  };

  // Before the processor decides an event: abandons the events of dead slots and answers
  // re-read events that were decided before a restart instead of deciding them again.
  class Guard final : public Processor {
   public:
    Guard(Impl& impl, std::shared_ptr<const Processor> inner)
        : impl_(impl), inner_(std::move(inner)) {}
    Decision decide(const TradeEvent& event, const PartitionState& state) const override {
      Verdict v;
      {
        std::lock_guard lk(impl_.mu);
        v = impl_.tracker.guard(event, state);
      }
      // Neither writes anything; neither is reported (see on_done).
      if (v == Verdict::replayed)
        return Decision{Outcome::rejected(std::string(replayed_reason)), {}, {}};
      if (v == Verdict::abandoned)
        return Decision{Outcome::rejected(std::string(abandoned_reason)), {}, {}};
      return inner_->decide(event, state);
    }

   private:
    Impl& impl_;
    std::shared_ptr<const Processor> inner_;
  };

  // What a completion needs to report its event.
  struct Done {
    Impl* impl;
    std::uint64_t tag;
    std::string key;
    std::string trade_id;
    std::int64_t version;
    std::int64_t timestamp_ms;
    void operator()(boost::system::error_code ec, Outcome outcome) {
      impl->on_done(*this, ec, std::move(outcome));
    }
  };

  Impl(std::shared_ptr<TradeStore> s, std::shared_ptr<const Processor> p, KafkaSourceOptions opt)
      : user_store(std::move(s)),
        processor(std::move(p)),
        o(std::move(opt)),
        log(o.logger ? o.logger : spdlog::default_logger()),
        tracker(o.group) {}

  std::shared_ptr<TradeStore> user_store;
  std::shared_ptr<const Processor> processor;
  KafkaSourceOptions o;
  std::shared_ptr<spdlog::logger> log;

  std::mutex mu;  // guards tracker
  OffsetTracker tracker;

  std::atomic<bool> stop_requested{false};
  std::atomic<bool> failed{false};
  mutable std::mutex error_mu;
  boost::system::error_code error;
  std::string error_text;

  std::atomic<std::size_t> in_flight{0};
  std::mutex wait_mu;
  std::condition_variable wait_cv;
  std::atomic<int> waiters{0};

  std::atomic<bool> fence_suspect{false};
  std::set<std::uint64_t> stale_warned;  // slot generations warned about (guarded by mu)
  std::atomic<std::uint64_t> messages{0}, accepted{0}, duplicate{0}, stale{0}, rejected{0},
      invalid{0}, replayed{0}, failures{0}, offset_commits{0}, offset_commit_failures{0},
      fenced{0}, assignments{0}, revocations{0}, partitions{0}, lag{0}, results_produced{0},
      results_failed{0};
  Histogram end_to_end_us;

  rd_kafka_t* consumer = nullptr;
  rd_kafka_t* producer = nullptr;
  std::thread producer_thread;  // produces the results and serves their delivery reports
  std::atomic<bool> producer_stop{false};
  // Outcome messages waiting for the producer thread (reported on shards, which never wait for
  // Kafka). They count against max_in_flight, so a slow results topic slows fetching down.
  struct PendingResult {
    std::string key;
    std::string value;
    std::string where;  // topic[partition]@offset, for the warning when it cannot be produced
  };
  std::mutex results_mu;
  std::condition_variable results_cv;
  std::deque<PendingResult> results_queue;
  std::atomic<std::size_t> results_pending{0};
  std::mt19937_64 jitter{std::random_device{}()};  // the poll thread's retry backoffs
  bool cooperative = false;
  std::shared_ptr<SourceStore> store;
  mutable std::mutex pipeline_mu;  // guards the pointer (metrics from other threads)
  std::unique_ptr<Pipeline> pipeline;

  Clock::time_point next_flush{}, next_lag{}, next_progress{}, last_fence_check{};
  Clock::time_point started{};

  // ---- failures ---------------------------------------------------------------------------

  void fail(boost::system::error_code ec, std::string text) {
    {
      std::lock_guard lk(error_mu);
      if (!error) {
        error = ec;
        error_text = std::move(text);
        log->error("kafka source: {}", error_text);
      }
    }
    failed.store(true);
    notify();
  }

  void notify() {
    if (waiters.load(std::memory_order_acquire) > 0) {
      std::lock_guard lk(wait_mu);
      wait_cv.notify_all();
    }
  }

  /// Waits until `pred` holds or `deadline`; true when it holds.
  template <class Pred>
  bool wait_until(Clock::time_point deadline, Pred pred) {
    std::unique_lock lk(wait_mu);
    waiters.fetch_add(1);
    const bool ok = wait_cv.wait_until(lk, deadline, pred);
    waiters.fetch_sub(1);
    return ok;
  }

  /// A store call with the pipeline's retry policy for transient failures (the same jittered
  /// backoff as the pipeline's). Only on the polling thread, which may sleep: never on a shard.
  template <class F>
  auto with_retry(const char* what, F&& f) -> decltype(f()) {
    const RetryPolicy& policy = o.pipeline.retry;
    const auto start = Clock::now();
    for (int attempt = 1;; ++attempt) {
      auto r = f();
      if (r || classify(r.error()) != retry_class::retry_now) return r;
      if (attempt >= policy.max_attempts || Clock::now() - start > policy.budget) return r;
      const auto backoff =
          policy.backoff(attempt, std::uniform_real_distribution<double>(0.0, 1.0)(jitter));
      log->warn("kafka source: {} failed ({}), retrying in {} ms", what, r.error().message(),
                backoff.count());
      std::this_thread::sleep_for(backoff);
    }
  }

  // ---- outcomes ---------------------------------------------------------------------------

  void report(const KafkaOutcome& k) {
    switch (k.outcome.kind) {
      case OutcomeKind::Accepted: accepted.fetch_add(1, std::memory_order_relaxed); break;
      case OutcomeKind::Duplicate: duplicate.fetch_add(1, std::memory_order_relaxed); break;
      case OutcomeKind::Stale: stale.fetch_add(1, std::memory_order_relaxed); break;
      case OutcomeKind::Rejected: rejected.fetch_add(1, std::memory_order_relaxed); break;
    }
    if (k.timestamp_ms >= 0) {
      const std::int64_t ms = std::max<std::int64_t>(0, wall_ms() - k.timestamp_ms);
      end_to_end_us.record(static_cast<std::uint64_t>(ms) * 1000);
    }
    if (k.outcome.kind == OutcomeKind::Rejected) {
      // Never silent: without a results topic every rejection is a warning.
      log->log(producer != nullptr ? spdlog::level::debug : spdlog::level::warn,
               "kafka source: {}[{}]@{} trade {} version {} REJECTED: {}", k.topic, k.partition,
               k.offset, k.trade_id ? *k.trade_id : std::string("?"),
               k.version ? std::to_string(*k.version) : std::string("?"), k.outcome.reason);
    }
    if (producer != nullptr) queue_result(k);
    if (o.on_outcome) o.on_outcome(k);
  }

  /// Hands an outcome message to the producer thread (never waits: runs on shards too).
  void queue_result(const KafkaOutcome& k) {
    PendingResult r{std::string(k.key), outcome_json(k),
                    std::string(k.topic) + "[" + std::to_string(k.partition) + "]@" +
                        std::to_string(k.offset)};
    results_pending.fetch_add(1, std::memory_order_acq_rel);
    {
      std::lock_guard lk(results_mu);
      results_queue.push_back(std::move(r));
    }
    results_cv.notify_one();
  }

  /// The producer thread: produces queued outcome messages (waiting for room in librdkafka's
  /// queue when it is full) and serves delivery reports; after `producer_stop`, ends once the
  /// queue is empty.
  void produce_results() {
    std::deque<PendingResult> batch;
    for (;;) {
      {
        std::unique_lock lk(results_mu);
        if (results_queue.empty()) {
          if (producer_stop.load()) return;
          results_cv.wait_for(lk, 50ms);
        }
        batch.swap(results_queue);
      }
      for (auto& r : batch) {
        const auto deadline = Clock::now() + 10s;
        for (;;) {
          const rd_kafka_resp_err_t err = rd_kafka_producev(
              producer, RD_KAFKA_V_TOPIC(o.results_topic.c_str()),
              RD_KAFKA_V_KEY(r.key.data(), r.key.size()),
              RD_KAFKA_V_VALUE(r.value.data(), r.value.size()),
              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
          if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
          if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && Clock::now() < deadline) {
            rd_kafka_poll(producer, 10);  // delivery reports make room
            continue;
          }
          results_failed.fetch_add(1, std::memory_order_relaxed);
          log->warn("kafka source: cannot produce the outcome of {} to {}: {}", r.where,
                    o.results_topic, rd_kafka_err2str(err));
          break;
        }
      }
      if (!batch.empty()) {
        results_pending.fetch_sub(batch.size(), std::memory_order_acq_rel);
        batch.clear();
        notify();
      }
      rd_kafka_poll(producer, 0);
    }
  }

  void on_done(const Done& d, boost::system::error_code ec, Outcome outcome) {
    Completion c;
    {
      std::lock_guard lk(mu);
      c = tracker.completed(d.tag);
      // An event without an outcome: nothing later of its Kafka partition may commit (the
      // replay marker of a later event would skip it on the re-read).
      if (ec && c.known && c.state != SlotState::dead) tracker.set_state(tag_slot(d.tag), SlotState::dead);
    }
    if (ec) {
      failures.fetch_add(1, std::memory_order_relaxed);
      if (c.known && c.state != SlotState::dead) {
        fail(ec, "event " + c.topic + "[" + std::to_string(c.partition) + "]@" +
                     std::to_string(c.offset) + " has no outcome: " + ec.message() +
                     " (stored offsets stay true; a restart resumes from them)");
      } else {
        log->debug("kafka source: abandoned event {}[{}]@{}: {}", c.topic, c.partition, c.offset,
                   ec.message());
      }
    } else if (c.replayed) {
      replayed.fetch_add(1, std::memory_order_relaxed);
    } else if (c.abandoned) {
      // Its slot died before it was decided: no outcome here; the next owner reads it again.
      failures.fetch_add(1, std::memory_order_relaxed);
      log->debug("kafka source: abandoned event {}[{}]@{}", c.topic, c.partition, c.offset);
    } else {
      KafkaOutcome k;
      k.topic = c.topic;
      k.partition = c.partition;
      k.offset = c.offset;
      k.key = d.key;
      k.trade_id = d.trade_id;
      k.version = d.version;
      k.outcome = std::move(outcome);
      k.timestamp_ms = d.timestamp_ms;
      report(k);
    }
    in_flight.fetch_sub(1, std::memory_order_acq_rel);
    notify();
  }

  // ---- librdkafka callbacks ---------------------------------------------------------------

  static void log_cb(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
    auto* self = static_cast<Impl*>(rd_kafka_opaque(rk));
    if (self != nullptr) self->log->log(level_of(level), "librdkafka {}: {}", fac, buf);
  }

  static void rebalance_cb(rd_kafka_t*, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t* parts, void* opaque) {
    static_cast<Impl*>(opaque)->on_rebalance(err, parts);
  }

  static void delivery_cb(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    if (m->err) {
      self->results_failed.fetch_add(1, std::memory_order_relaxed);
      self->log->warn("kafka source: an outcome message was not delivered to {}: {}",
                      self->o.results_topic, rd_kafka_err2str(m->err));
    } else {
      self->results_produced.fetch_add(1, std::memory_order_relaxed);
    }
  }

  void on_rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts) {
    // Known once the group is joined: incremental (cooperative-sticky) or eager assignments.
    const char* protocol = rd_kafka_rebalance_protocol(consumer);
    cooperative = protocol != nullptr && std::strcmp(protocol, "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      on_assign(parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
      on_revoke(parts);
    } else {
      log->error("kafka source: rebalance error: {}", rd_kafka_err2str(err));
      on_revoke(parts);
    }
  }

  void on_assign(rd_kafka_topic_partition_list_t* parts) {
    for (int i = 0; i < parts->cnt; ++i) {
      rd_kafka_topic_partition_t& p = parts->elems[i];
      const std::string topic = p.topic;
      // A partition abandoned earlier in this process: its events must be out of the pipeline
      // before a new generation starts (the guard abandons them as soon as a shard gets to them).
      std::optional<SlotIndex> old;
      {
        std::lock_guard lk(mu);
        old = tracker.find(topic, p.partition);
        if (old) tracker.set_state(*old, SlotState::dead);
      }
      if (old) {
        const bool idle = wait_until(Clock::now() + o.revoke_timeout, [&] {
          std::lock_guard lk(mu);
          return tracker.idle(*old);
        });
        if (!idle) {
          fail(kafka_errc::revoke_timeout,
               "events of an abandoned generation of " + topic + "[" +
                   std::to_string(p.partition) + "] are still in flight");
          p.offset = RD_KAFKA_OFFSET_END;
          continue;
        }
        std::lock_guard lk(mu);
        tracker.close(*old);
      }
      auto claim = with_retry("claim source", [&] {
        return user_store->claim_source(o.group, topic, p.partition);
      });
      if (!claim) {
        fail(claim.error(), "cannot claim " + topic + "[" + std::to_string(p.partition) +
                                "] in the store: " + claim.error().message());
        p.offset = RD_KAFKA_OFFSET_END;
        continue;
      }
      {
        std::lock_guard lk(mu);
        tracker.open(topic, p.partition, claim.value().epoch, claim.value().next_offset);
      }
      p.offset = claim.value().next_offset;
      assignments.fetch_add(1, std::memory_order_relaxed);
      partitions.fetch_add(1, std::memory_order_relaxed);
      log->info("kafka source: assigned {}[{}], resuming at stored offset {} (claim epoch {})",
                topic, p.partition, claim.value().next_offset, claim.value().epoch);
    }
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_assign(consumer, parts)) {
        fail(kafka_errc::client_error,
             std::string("incremental assign failed: ") + rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
      }
    } else if (auto e = rd_kafka_assign(consumer, parts)) {
      fail(kafka_errc::client_error, std::string("assign failed: ") + rd_kafka_err2str(e));
    }
  }

  void on_revoke(rd_kafka_topic_partition_list_t* parts) {
    const bool lost = rd_kafka_assignment_lost(consumer) != 0;
    std::vector<SlotIndex> slots;
    {
      std::lock_guard lk(mu);
      for (int i = 0; i < parts->cnt; ++i) {
        auto s = tracker.find(parts->elems[i].topic, parts->elems[i].partition);
        if (!s || tracker.view(*s).state == SlotState::dead) continue;
        slots.push_back(*s);
        // Lost: another member may own it already, nothing of it may commit any more.
        tracker.set_state(*s, lost ? SlotState::dead : SlotState::draining);
      }
    }
    if (lost) {
      log->warn("kafka source: {} partitions lost; their in-flight events are abandoned",
                slots.size());
    } else if (!slots.empty()) {
      // Let the in-flight events of the revoked partitions reach their outcomes, then store
      // where they end, then give them up.
      const bool idle = wait_until(Clock::now() + o.revoke_timeout, [&] {
        std::lock_guard lk(mu);
        return std::all_of(slots.begin(), slots.end(),
                           [&](SlotIndex s) { return tracker.idle(s); });
      });
      if (!idle)
        log->error("kafka source: revoked partitions still have events in flight after {} ms; "
                   "abandoning them (the next owner decides them)",
                   o.revoke_timeout.count());
      flush(slots, /*all=*/true);
    }
    {
      std::lock_guard lk(mu);
      for (SlotIndex s : slots) {
        tracker.set_state(s, SlotState::dead);
        if (tracker.idle(s)) tracker.close(s);
      }
    }
    revocations.fetch_add(slots.size(), std::memory_order_relaxed);
    partitions.fetch_sub(std::min<std::uint64_t>(slots.size(), partitions.load()),
                         std::memory_order_relaxed);
    if (!slots.empty())
      log->info("kafka source: {} {} partitions", lost ? "lost" : "revoked", slots.size());
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(consumer, parts)) {
        log->error("kafka source: incremental unassign failed: {}", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
      }
    } else {
      rd_kafka_assign(consumer, nullptr);
    }
  }

  // ---- offsets ----------------------------------------------------------------------------

  /// Stores the watermarks that moved (of `only`, or of every live slot; `all`: moved or not)
  /// in an offsets-only commit, then commits them to Kafka too (for monitoring only; never read
  /// back). False when the store refused or failed.
  bool flush(std::span<const SlotIndex> only = {}, bool all = false) {
    std::vector<SourceOffset> rows;
    {
      std::lock_guard lk(mu);
      rows = tracker.due_offsets(only, all);
    }
    if (rows.empty()) return true;
    CommitBatch batch;
    batch.sources = rows;
    // After a failure (the store is down, most likely) one attempt: shutting down must not wait
    // for the retry budget again and again.
    auto r = failed.load() ? store->commit(batch)
                           : with_retry("store offsets", [&] { return store->commit(batch); });
    if (!r) {
      offset_commit_failures.fetch_add(1, std::memory_order_relaxed);
      log->warn("kafka source: cannot store offsets: {}", r.error().message());
      if (r.error() == errc::fenced_off) check_fenced();
      return false;
    }
    offset_commits.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lk(mu);
      tracker.flushed(rows);
    }
    PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(rows.size())));
    for (const auto& row : rows)
      rd_kafka_topic_partition_list_add(list.get(), row.topic.c_str(), row.partition)->offset =
          row.next_offset;
    rd_kafka_commit(consumer, list.get(), 1);
    return true;
  }

  /// Gives up every partition whose stored claim epoch is above ours (another member claimed it).
  void check_fenced() {
    last_fence_check = Clock::now();
    auto rows = user_store->source_offsets(o.group);
    if (!rows) return;
    std::lock_guard lk(mu);
    for (const auto& row : rows.value()) {
      auto s = tracker.find(row.topic, row.partition);
      if (!s) continue;
      const SlotView v = tracker.view(*s);
      if (v.state == SlotState::dead || row.epoch <= v.epoch) continue;
      tracker.set_state(*s, SlotState::dead);
      fenced.fetch_add(1, std::memory_order_relaxed);
      log->error("kafka source: {}[{}] was claimed by another member (epoch {} > ours {}); "
                 "giving it up, its in-flight events are abandoned",
                 row.topic, row.partition, row.epoch, v.epoch);
    }
  }

  // ---- the polling thread -----------------------------------------------------------------

  void housekeeping(bool force_flush = false) {
    const auto now = Clock::now();
    if (force_flush || now >= next_flush) {
      next_flush = now + o.offsets_interval;
      flush({}, force_flush);
    }
    if (fence_suspect.load(std::memory_order_relaxed) && now - last_fence_check > 1s) {
      fence_suspect.store(false, std::memory_order_relaxed);
      check_fenced();
    }
    if (now >= next_lag) {
      next_lag = now + 1s;
      std::vector<SlotView> views;
      {
        std::lock_guard lk(mu);
        views = tracker.slots();
        // Abandoned generations whose events are all out of the pipeline.
        for (const auto& v : views)
          if (v.state == SlotState::dead && v.in_flight == 0) tracker.close(v.index);
      }
      std::uint64_t total = 0;
      for (const auto& v : views) {
        if (v.state != SlotState::live) continue;
        std::int64_t lo = 0, hi = 0;
        if (rd_kafka_get_watermark_offsets(consumer, v.topic.c_str(), v.partition, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi > v.position)
          total += static_cast<std::uint64_t>(hi - v.position);
      }
      lag.store(total, std::memory_order_relaxed);
    }
    if (o.progress_interval.count() > 0 && now >= next_progress) {
      if (next_progress != Clock::time_point{}) {
        const double s = std::chrono::duration<double>(now - started).count();
        log->info(
            "kafka source: {} messages ({:.0f}/s), accepted {}, duplicate {}, stale {}, "
            "rejected {} (invalid {}), replayed {}, failed {}, in flight {}, lag {}, partitions {}",
            messages.load(), s > 0 ? static_cast<double>(messages.load()) / s : 0.0,
            accepted.load(), duplicate.load(), stale.load(), rejected.load(), invalid.load(),
            replayed.load(), failures.load(), in_flight.load(), lag.load(), partitions.load());
      }
      next_progress = now + o.progress_interval;
    }
  }

  void handle(rd_kafka_message_t* m) {
    if (m->err) {
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
      if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512] = {};
        rd_kafka_fatal_error(consumer, buf, sizeof buf);
        fail(kafka_errc::fatal_error, std::string("fatal consumer error: ") + buf);
        return;
      }
      log->warn("kafka source: consumer error: {}", rd_kafka_message_errstr(m));
      return;
    }
    messages.fetch_add(1, std::memory_order_relaxed);
    const std::string_view topic = rd_kafka_topic_name(m->rkt);
    const std::int32_t partition = m->partition;
    const std::int64_t offset = m->offset;
    if (offset < 0 || offset > max_tag_offset) {
      fail(kafka_errc::client_error, "offset " + std::to_string(offset) + " out of range");
      return;
    }
    SlotIndex slot = 0;
    {
      std::lock_guard lk(mu);
      auto s = tracker.find(topic, partition);
      if (!s) return;  // not ours (any more)
      const Admit a = tracker.check(*s, offset);
      if (a == Admit::stale && stale_warned.insert(tracker.view(*s).generation).second) {
        // Below the position: a message delivered twice, or librdkafka reset the offset
        // because the stored one is beyond the end (a recreated topic?).
        log->warn("kafka source: {}[{}]: message at offset {} is below the position {}; such "
                  "messages are dropped (if this repeats, the stored offset may be beyond the "
                  "partition's end: was the topic recreated?)",
                  topic, partition, offset, tracker.view(*s).position);
      }
      if (a != Admit::submit) return;
      slot = *s;
      const SlotView v = tracker.view(slot);
      if (v.position == v.start && offset > v.start) {
        // The first message after the stored offset is further on: the ones in between are gone
        // from Kafka (retention, or a compacted or transactional topic), never decided here.
        log->warn("kafka source: {}[{}]: resuming at stored offset {}, but the first message is "
                  "at offset {} ({} offsets no longer in Kafka, or not data)",
                  topic, partition, v.start, offset, offset - v.start);
      }
    }
    rd_kafka_timestamp_type_t ts_type;
    const std::int64_t ts = rd_kafka_message_timestamp(m, &ts_type);
    const std::string_view key =
        m->key != nullptr ? std::string_view(static_cast<const char*>(m->key), m->key_len)
                          : std::string_view();

    KafkaOutcome k;
    k.topic = topic;
    k.partition = partition;
    k.offset = offset;
    k.key = key;
    k.timestamp_ms = ts_type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts;
    std::string reason;
    ParsedEvent parsed;
    if (m->payload == nullptr) {
      reason = "invalid: the message has no value";
    } else {
      std::string_view value(static_cast<const char*>(m->payload), m->len);
      if (!value.empty() && value.back() == '\n') value.remove_suffix(1);
      if (!value.empty() && value.back() == '\r') value.remove_suffix(1);
      parsed = parse_event(value);
      k.trade_id = parsed.echo_trade_id;
      k.version = parsed.echo_version;
      if (!parsed.event) {
        reason = std::move(parsed.reason);
      } else if (m->key == nullptr) {
        reason = "invalid: the message has no key (it must be the event's partition, " +
                 kafka_message_key(parsed.event->partition) + ")";
      } else if (key != kafka_message_key(parsed.event->partition)) {
        reason = "invalid: the message key is not the event's partition (expected " +
                 kafka_message_key(parsed.event->partition) + ")";
      }
    }
    std::uint64_t tag = 0;
    {
      // Still ours? (A rebalance callback runs on this thread, but only inside a poll.)
      std::lock_guard lk(mu);
      if (tracker.check(slot, offset) != Admit::submit) return;
      if (reason.empty()) tag = tracker.submitted(slot, offset, *parsed.event);
    }
    if (!reason.empty()) {
      invalid.fetch_add(1, std::memory_order_relaxed);
      k.outcome = Outcome::rejected(std::move(reason));
      report(k);
      std::lock_guard lk(mu);
      tracker.answered(slot, offset);
      return;
    }
    in_flight.fetch_add(1, std::memory_order_acq_rel);
    Done done{this,
              tag,
              producer != nullptr || o.on_outcome ? std::string(key) : std::string(),
              parsed.event->trade_id,
              parsed.event->version,
              k.timestamp_ms};
    pipeline->async_submit(std::move(*parsed.event), tag, std::move(done));
  }

  bool room() const {
    return in_flight.load(std::memory_order_acquire) +
               results_pending.load(std::memory_order_acquire) <
           o.max_in_flight;
  }

  rd_kafka_conf_t* make_conf(const std::vector<std::pair<std::string, std::string>>& defaults,
                             const std::vector<std::pair<std::string, std::string>>& user,
                             const std::vector<std::pair<std::string, std::string>>& forced,
                             const char* what) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char err[512];
    for (const auto* list : {&defaults, &user, &forced}) {
      for (const auto& [name, value] : *list) {
        if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) !=
            RD_KAFKA_CONF_OK) {
          rd_kafka_conf_destroy(conf);
          fail(kafka_errc::bad_config, std::string(what) + " setting " + name + ": " + err);
          return nullptr;
        }
      }
    }
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_log_cb(conf, &Impl::log_cb);
    return conf;
  }

  bool start_clients() {
    if (o.brokers.empty() || o.topics.empty() || o.group.empty()) {
      fail(kafka_errc::bad_config, "brokers, at least one topic and a group are required");
      return false;
    }
    if (o.pipeline.before_commit) {
      fail(kafka_errc::bad_config, "PipelineOptions::before_commit is the source's own");
      return false;
    }
    char err[512];
    rd_kafka_conf_t* conf = make_conf(
        {{"bootstrap.servers", o.brokers},
         {"client.id", "tradecapture"},
         {"auto.offset.reset", "earliest"},
         {"queued.max.messages.kbytes", "16384"}},
        o.consumer_config,
        {{"group.id", o.group},
         {"enable.auto.commit", "false"},
         {"enable.auto.offset.store", "false"},
         {"enable.partition.eof", "false"}},
        "consumer");
    if (conf == nullptr) return false;
    rd_kafka_conf_set_rebalance_cb(conf, &Impl::rebalance_cb);
    consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (consumer == nullptr) {
      rd_kafka_conf_destroy(conf);
      fail(kafka_errc::client_error, std::string("cannot create the consumer: ") + err);
      return false;
    }
    rd_kafka_poll_set_consumer(consumer);
    if (!o.results_topic.empty()) {
      rd_kafka_conf_t* pconf = make_conf({{"bootstrap.servers", o.brokers},
                                          {"client.id", "tradecapture-results"},
                                          {"linger.ms", "5"},
                                          {"queue.buffering.max.messages", "1000000"}},
                                         o.producer_config, {}, "producer");
      if (pconf == nullptr) return false;
      rd_kafka_conf_set_dr_msg_cb(pconf, &Impl::delivery_cb);
      producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof err);
      if (producer == nullptr) {
        rd_kafka_conf_destroy(pconf);
        fail(kafka_errc::client_error, std::string("cannot create the results producer: ") + err);
        return false;
      }
      producer_thread = std::thread([this] { produce_results(); });
    }
    PartitionList topics(rd_kafka_topic_partition_list_new(static_cast<int>(o.topics.size())));
    for (const auto& t : o.topics)
      rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
    if (auto e = rd_kafka_subscribe(consumer, topics.get())) {
      fail(kafka_errc::client_error, std::string("cannot subscribe: ") + rd_kafka_err2str(e));
      return false;
    }
    return true;
  }

  void start_pipeline() {
    store = std::make_shared<SourceStore>(user_store, fence_suspect);
    PipelineOptions po = o.pipeline;
    po.max_in_flight = std::max(po.max_in_flight, o.max_in_flight + 16);
    po.on_overload = OverloadPolicy::wait;
    if (!po.logger) po.logger = log;
    po.before_commit = [this](std::span<const std::uint64_t> tags, CommitBatch& batch) {
      std::lock_guard lk(mu);
      tracker.add_sources(tags, batch);
    };
    auto p = std::make_unique<Pipeline>(store, std::make_shared<FreeLock>(o.group),
                                        std::make_shared<Guard>(*this, processor), po);
    std::lock_guard lk(pipeline_mu);
    pipeline = std::move(p);
  }

  result<void> run() {
    started = Clock::now();
    if (!start_clients()) return shutdown();
    start_pipeline();
    std::string topics;
    for (const auto& t : o.topics) topics += (topics.empty() ? "" : ",") + t;
    log->info("kafka source: group {} consuming {} from {} into {}{}", o.group, topics,
              o.brokers, user_store->describe(),
              o.results_topic.empty() ? "" : ", outcomes to " + o.results_topic);
    while (!stop_requested.load(std::memory_order_relaxed) && !failed.load()) {
      if (!room()) {
        wait_until(Clock::now() + 50ms, [&] {
          return room() || stop_requested.load(std::memory_order_relaxed) || failed.load();
        });
        housekeeping();
        continue;
      }
      int burst = 0;
      while (room() && burst < 4096 && !failed.load()) {
        rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer, burst == 0 ? 50 : 0);
        if (m == nullptr) break;
        handle(m);
        rd_kafka_message_destroy(m);
        ++burst;
      }
      housekeeping();
    }
    return shutdown();
  }

  /// Stops fetching, lets in-flight events finish, stores the final offsets, leaves the group.
  result<void> shutdown() {
    if (pipeline) {
      log->info("kafka source: stopping; {} events in flight", in_flight.load());
      while (in_flight.load() > 0) {
        wait_until(Clock::now() + 50ms, [&] { return in_flight.load() == 0; });
        housekeeping();
      }
      housekeeping(true);
    }
    if (consumer != nullptr) {
      // Triggers the revoke callback: nothing is in flight, the offsets are stored already.
      rd_kafka_consumer_close(consumer);
    }
    {
      std::unique_ptr<Pipeline> p;
      if (pipeline) {
        pipeline->stop();
        std::lock_guard lk(pipeline_mu);
        p = std::move(pipeline);
      }
    }
    if (producer_thread.joinable()) {
      {
        std::lock_guard lk(results_mu);
        producer_stop.store(true);
      }
      results_cv.notify_all();
      producer_thread.join();  // after every queued outcome message was handed to librdkafka
    }
    if (producer != nullptr) {
      if (rd_kafka_flush(producer, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        log->warn("kafka source: {} outcome messages were not delivered before shutdown",
                  rd_kafka_outq_len(producer));
      rd_kafka_destroy(producer);
      producer = nullptr;
    }
    if (consumer != nullptr) {
      rd_kafka_destroy(consumer);
      consumer = nullptr;
    }
    partitions.store(0);
    log->info("kafka source: stopped after {} messages (accepted {}, duplicate {}, stale {}, "
              "rejected {}, replayed {}, failed {})",
              messages.load(), accepted.load(), duplicate.load(), stale.load(), rejected.load(),
              replayed.load(), failures.load());
    std::lock_guard lk(error_mu);
    if (error) return error;
    return boost::outcome_v2::success();
  }
};

// ------------------------------------------------------------------------------------------

KafkaSource::KafkaSource(std::shared_ptr<TradeStore> store,
                         std::shared_ptr<const Processor> processor, KafkaSourceOptions options)
    : impl_(std::make_unique<Impl>(std::move(store), std::move(processor), std::move(options))) {}

KafkaSource::~KafkaSource() = default;

result<void> KafkaSource::run() { return impl_->run(); }

void KafkaSource::stop() noexcept { impl_->stop_requested.store(true, std::memory_order_relaxed); }

KafkaSourceMetrics KafkaSource::metrics() const {
  const Impl& i = *impl_;
  KafkaSourceMetrics m;
  m.messages = i.messages.load();
  m.accepted = i.accepted.load();
  m.duplicate = i.duplicate.load();
  m.stale = i.stale.load();
  m.rejected = i.rejected.load();
  m.invalid = i.invalid.load();
  m.replayed = i.replayed.load();
  m.failed = i.failures.load();
  m.offset_commits = i.offset_commits.load();
  m.offset_commit_failures = i.offset_commit_failures.load();
  m.fenced = i.fenced.load();
  m.assignments = i.assignments.load();
  m.revocations = i.revocations.load();
  m.partitions = i.partitions.load();
  m.in_flight = i.in_flight.load();
  m.lag = i.lag.load();
  m.results_produced = i.results_produced.load();
  m.results_failed = i.results_failed.load();
  m.end_to_end_us = i.end_to_end_us.snapshot();
  return m;
}

PipelineMetrics KafkaSource::pipeline_metrics() const {
  std::lock_guard lk(impl_->pipeline_mu);
  return impl_->pipeline ? impl_->pipeline->metrics() : PipelineMetrics{};
}

std::string KafkaSource::last_error() const {
  std::lock_guard lk(impl_->error_mu);
  return impl_->error_text;
}

}  // namespace tradecapture
