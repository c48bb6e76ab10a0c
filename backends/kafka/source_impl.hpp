#pragma once
// Internal: the state of a KafkaSource, a thin librdkafka shell around OffsetTracker
// (offset_tracker.hpp). Its parts live in one file each:
//
//   kafka_source.cpp      the public API and the pipeline side: the source hook (offsets,
//                         abandoned streams, fenced commits), completions
//   client.cpp            configuration and set-up of the librdkafka clients
//   rebalance.cpp         assignments (claims), revocations, lost and fenced partitions
//   poll_loop.cpp         the source's thread: messages, offsets-only commits, shutdown
//   results_producer.*    the results topic (its own thread)
//   source_metrics.*      counters, progress and summary lines
//
// Threads: the source's own thread (`start`) polls the consumer (messages, rebalance callbacks)
// and stores offsets-only commits; the results producer's thread sends the results topic's
// messages and serves their delivery reports; the shards of the host's pipeline (shared with its
// other ingresses) call the source hook (SourceHook) and complete events inline (callback
// handlers run on the shard, before it takes its next batch), so nothing that runs on a shard
// sleeps or waits for Kafka. Everything the tracker knows is guarded by one mutex, never held
// across a call into the pipeline, the store or librdkafka. The source outlives none of its
// submissions: `shutdown` waits until the last one completed (see `on_done`).

#include <tradecapture/kafka_source.hpp>

#include "offset_tracker.hpp"
#include "results_producer.hpp"
#include "source_metrics.hpp"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace tradecapture {

struct KafkaSource::Impl {
  using Clock = std::chrono::steady_clock;
  using SlotIndex = kafka_detail::SlotIndex;
  using Settings = std::vector<std::pair<std::string, std::string>>;

  class Hook;  // kafka_source.cpp

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

  Impl(Pipeline& p, std::shared_ptr<TradeStore> s, KafkaSourceOptions opt);

  Pipeline& pipeline;                 // the host's; outlives the source
  std::shared_ptr<TradeStore> store;  // the pipeline's: claims, offsets-only commits
  KafkaSourceOptions o;
  std::shared_ptr<spdlog::logger> log;

  std::mutex mu;  // guards tracker and stale_warned
  kafka_detail::OffsetTracker tracker;
  std::set<std::uint64_t> stale_warned;  // slot generations warned about

  std::atomic<bool> stop_requested{false};
  std::atomic<bool> failed{false};
  mutable std::mutex error_mu;
  boost::system::error_code error;
  std::string error_text;

  std::mutex wait_mu;
  std::condition_variable wait_cv;
  std::atomic<int> waiters{0};

  std::atomic<bool> fence_suspect{false};
  kafka_detail::SourceCounters counters;

  rd_kafka_t* consumer = nullptr;
  // The results topic's producer (null without one). Its queue counts against max_in_flight,
  // so a slow results topic slows fetching down.
  std::unique_ptr<kafka_detail::ResultsProducer> results;
  std::mt19937_64 jitter{std::random_device{}()};  // the poll thread's retry backoffs
  bool cooperative = false;
  bool consuming = false;            // the clients started: shutdown drains and closes them
  std::unique_ptr<SourceHook> hook;  // a Hook, named by every event the source submits

  Clock::time_point next_flush{}, next_lag{}, next_progress{}, last_fence_check{};
  Clock::time_point started{};

  // The source's own thread (start/wait).
  std::thread thread;
  std::atomic<bool> launched{false};
  std::atomic<bool> done{false};
  result<void> outcome = boost::outcome_v2::success();  // the run's, once `done`

  // ---- failures and waiting (kafka_source.cpp) --------------------------------------------

  void fail(boost::system::error_code ec, std::string text);
  void notify();

  /// Waits until `pred` holds or `deadline`; true when it holds.
  template <class Pred>
  bool wait_until(Clock::time_point deadline, Pred pred) {
    std::unique_lock lk(wait_mu);
    waiters.fetch_add(1);
    const bool ok = wait_cv.wait_until(lk, deadline, pred);
    waiters.fetch_sub(1);
    return ok;
  }

  /// A store call with the source's retry policy for transient failures (the same jittered
  /// backoff as the pipeline's). Only on the polling thread, which may sleep: never on a shard.
  template <class F>
  auto with_retry(const char* what, F&& f) -> decltype(f()) {
    const RetryPolicy& policy = o.retry;
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

  // ---- the pipeline side (kafka_source.cpp) -----------------------------------------------

  void on_done(const Done& d, boost::system::error_code ec, Outcome outcome);
  void report(const KafkaOutcome& k);

  // ---- clients (client.cpp) ---------------------------------------------------------------

  rd_kafka_conf_t* make_conf(const Settings& defaults, const Settings& user,
                             const Settings& forced, const char* what);
  bool start_clients();
  static void log_cb(const rd_kafka_t* rk, int level, const char* fac, const char* buf);

  // ---- rebalancing (rebalance.cpp) --------------------------------------------------------

  static void rebalance_cb(rd_kafka_t*, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t* parts, void* opaque);
  void on_rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts);
  void on_assign(rd_kafka_topic_partition_list_t* parts);
  void on_revoke(rd_kafka_topic_partition_list_t* parts);
  void check_fenced();

  // ---- the polling thread (poll_loop.cpp) -------------------------------------------------

  result<void> run();
  void handle(rd_kafka_message_t* m);
  bool room() const;
  void housekeeping(bool force_flush = false);
  bool flush(std::span<const SlotIndex> only = {}, bool all = false);
  result<void> shutdown();
};

namespace kafka_detail {

struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;

}  // namespace kafka_detail
}  // namespace tradecapture
