#pragma once
// Internal: the results producer of the Kafka source (backends/kafka). One outcome JSON per
// message goes to the results topic, keyed like the input message. `push` runs where outcomes
// are reported (pipeline shards and the polling thread) and never waits for Kafka: it queues the
// message for the producer's own thread, which hands it to librdkafka and serves the delivery
// reports. The queue is bounded by construction: it holds at most `capacity` messages, and the
// source never has more than `max_in_flight` messages in the pipeline and in this queue together
// (the poll loop waits for room), so with capacity = max_in_flight a push is never refused; one
// that would exceed it is dropped and counted as failed, never queued.

#include <tradecapture/kafka_source.hpp>

#include <spdlog/fwd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

struct rd_kafka_s;
struct rd_kafka_conf_s;
struct rd_kafka_message_s;

namespace tradecapture::kafka_detail {

/// The results JSON of one outcome: a replay --outcomes line with topic/partition/offset.
std::string outcome_json(const KafkaOutcome& o);

/// The producer of the results topic, with its own thread.
class ResultsProducer {
 public:
  /// `capacity`: queued messages at most (at least 1). `on_room` is called (on the producer
  /// thread) whenever queued messages left the queue. `patience`: how long the thread waits for
  /// room in librdkafka's queue for one message, and `stop` for the last deliveries.
  ResultsProducer(std::string topic, std::shared_ptr<spdlog::logger> log, std::size_t capacity,
                  std::function<void()> on_room,
                  std::chrono::milliseconds patience = std::chrono::seconds(10));
  ~ResultsProducer();
  ResultsProducer(const ResultsProducer&) = delete;
  ResultsProducer& operator=(const ResultsProducer&) = delete;

  /// Creates the librdkafka producer from `conf` (taken over, also on failure) and starts the
  /// thread. False with `error` set when librdkafka refuses.
  bool start(rd_kafka_conf_s* conf, std::string& error);

  /// Queues the outcome message of `k`; never waits. False (counted in `failed`, a warning
  /// logged at most once a second) when `capacity` messages are queued already.
  bool push(const KafkaOutcome& k);

  /// Messages queued and not handed to librdkafka yet.
  std::size_t pending() const noexcept { return pending_.load(std::memory_order_acquire); }

  /// Hands every queued message to librdkafka, ends the thread, waits for the deliveries and
  /// destroys the producer; whatever librdkafka cannot take or deliver within `patience` of the
  /// call (twice that at worst) is counted as failed. Idempotent.
  void stop();

  /// Messages delivered to the results topic.
  std::uint64_t produced() const noexcept { return produced_.load(std::memory_order_relaxed); }
  /// Messages dropped (queue full), refused by librdkafka or not delivered.
  std::uint64_t failed() const noexcept { return failed_.load(std::memory_order_relaxed); }

 private:
  struct Pending {
    std::string key;
    std::string value;
    std::string where;  // topic[partition]@offset, for the warning when it cannot be produced
  };

  void run();
  static void delivery_cb(rd_kafka_s* rk, const rd_kafka_message_s* m, void* opaque);

  std::string topic_;
  std::shared_ptr<spdlog::logger> log_;
  std::size_t capacity_;
  std::chrono::milliseconds patience_;
  std::function<void()> on_room_;
  rd_kafka_s* producer_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  std::atomic<std::size_t> pending_{0};
  std::atomic<std::uint64_t> produced_{0}, failed_{0};
  std::atomic<std::int64_t> give_up_ns_{0};   // after stop(): no more waiting for room past this
  std::atomic<std::int64_t> last_drop_warning_ns_{0};
};

}  // namespace tradecapture::kafka_detail
