// The results producer of the Kafka source: its own thread hands queued outcome messages to
// librdkafka and serves the delivery reports.

#include "results_producer.hpp"

#include <tradecapture/event_codec.hpp>

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace tradecapture::kafka_detail {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

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

namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

}  // namespace

ResultsProducer::ResultsProducer(std::string topic, std::shared_ptr<spdlog::logger> log,
                                 std::size_t capacity, std::function<void()> on_room,
                                 std::chrono::milliseconds patience)
    : topic_(std::move(topic)),
      log_(std::move(log)),
      capacity_(std::max<std::size_t>(capacity, 1)),
      patience_(patience),
      on_room_(std::move(on_room)) {}

ResultsProducer::~ResultsProducer() { stop(); }

bool ResultsProducer::start(rd_kafka_conf_t* conf, std::string& error) {
  char err[512];
  rd_kafka_conf_set_dr_msg_cb(conf, &ResultsProducer::delivery_cb);
  producer_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (producer_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    error = std::string("cannot create the results producer: ") + err;
    return false;
  }
  thread_ = std::thread([this] { run(); });
  return true;
}

bool ResultsProducer::push(const KafkaOutcome& k) {
  std::size_t n = pending_.load(std::memory_order_acquire);
  do {
    if (n >= capacity_) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      const std::int64_t now = now_ns();
      std::int64_t last = last_drop_warning_ns_.load(std::memory_order_relaxed);
      if (now - last >= 1'000'000'000 &&
          last_drop_warning_ns_.compare_exchange_strong(last, now, std::memory_order_relaxed))
        log_->warn("kafka source: the results queue is full ({} messages); the outcome of "
                   "{}[{}]@{} is not sent to {}",
                   capacity_, k.topic, k.partition, k.offset, topic_);
      return false;
    }
  } while (!pending_.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel));
  Pending r{std::string(k.key), outcome_json(k),
            std::string(k.topic) + "[" + std::to_string(k.partition) + "]@" +
                std::to_string(k.offset)};
  {
    std::lock_guard lk(mu_);
    queue_.push_back(std::move(r));
  }
  cv_.notify_one();
  return true;
}

/// Produces queued outcome messages (waiting for room in librdkafka's queue when it is full) and
/// serves delivery reports; after `stop_`, ends once the queue is empty.
void ResultsProducer::run() {
  std::deque<Pending> batch;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      if (queue_.empty()) {
        if (stop_.load()) return;
        cv_.wait_for(lk, 50ms);
      }
      batch.swap(queue_);
    }
    for (auto& r : batch) {
      const auto deadline = Clock::now() + patience_;
      for (;;) {
        const rd_kafka_resp_err_t err = rd_kafka_producev(
            producer_, RD_KAFKA_V_TOPIC(topic_.c_str()),
            RD_KAFKA_V_KEY(r.key.data(), r.key.size()),
            RD_KAFKA_V_VALUE(r.value.data(), r.value.size()),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(this), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
        // librdkafka's queue is full: wait for delivery reports (on this thread only, never
        // where outcomes are reported), at most `patience_` per message, and after stop() at
        // most until `patience_` after it.
        const std::int64_t give_up = give_up_ns_.load(std::memory_order_acquire);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && Clock::now() < deadline &&
            (give_up == 0 || now_ns() < give_up)) {
          rd_kafka_poll(producer_, 10);  // delivery reports make room
          continue;
        }
        failed_.fetch_add(1, std::memory_order_relaxed);
        log_->warn("kafka source: cannot produce the outcome of {} to {}: {}", r.where, topic_,
                   rd_kafka_err2str(err));
        break;
      }
    }
    if (!batch.empty()) {
      pending_.fetch_sub(batch.size(), std::memory_order_acq_rel);
      batch.clear();
      if (on_room_) on_room_();
    }
    rd_kafka_poll(producer_, 0);
  }
}

void ResultsProducer::delivery_cb(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
  auto* self = static_cast<ResultsProducer*>(m->_private);
  if (m->err) {
    self->failed_.fetch_add(1, std::memory_order_relaxed);
    self->log_->warn("kafka source: an outcome message was not delivered to {}: {}", self->topic_,
                     rd_kafka_err2str(m->err));
  } else {
    self->produced_.fetch_add(1, std::memory_order_relaxed);
  }
}

void ResultsProducer::stop() {
  if (thread_.joinable()) {
    give_up_ns_.store(
        now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(patience_).count(),
        std::memory_order_release);
    {
      std::lock_guard lk(mu_);
      stop_.store(true);
    }
    cv_.notify_all();
    thread_.join();  // after every queued outcome message was handed to librdkafka
  }
  if (producer_ != nullptr) {
    if (rd_kafka_flush(producer_, static_cast<int>(patience_.count())) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      const int left = rd_kafka_outq_len(producer_);
      log_->warn("kafka source: {} outcome messages were not delivered before shutdown", left);
      // Purged: their delivery reports (served by the poll) count them as failed.
      rd_kafka_purge(producer_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      rd_kafka_poll(producer_, 0);  // purged messages get their failed delivery reports
    }
    rd_kafka_destroy(producer_);
    producer_ = nullptr;
  }
}

}  // namespace tradecapture::kafka_detail
