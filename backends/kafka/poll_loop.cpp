// The Kafka source's polling thread: takes messages into the pipeline (with back-pressure),
// stores offsets-only commits, keeps the lag and progress line, and drains on shutdown.

#include "source_impl.hpp"

#include <tradecapture/detail/validate_once.hpp>
#include <tradecapture/event_codec.hpp>

namespace tradecapture {

using namespace kafka_detail;
using namespace std::chrono_literals;

/// Stores the watermarks that moved (of `only`, or of every live slot; `all`: moved or not)
/// in an offsets-only commit, then commits them to Kafka too (for monitoring only; never read
/// back). False when the store refused or failed.
bool KafkaSource::Impl::flush(std::span<const SlotIndex> only, bool all) {
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
    counters.offset_commit_failures.fetch_add(1, std::memory_order_relaxed);
    log->warn("kafka source: cannot store offsets: {}", r.error().message());
    if (r.error() == errc::fenced_off) check_fenced();
    return false;
  }
  counters.offset_commits.fetch_add(1, std::memory_order_relaxed);
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

void KafkaSource::Impl::housekeeping(bool force_flush) {
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
    counters.lag.store(total, std::memory_order_relaxed);
  }
  if (o.progress_interval.count() > 0 && now >= next_progress) {
    if (next_progress != Clock::time_point{}) counters.log_progress(*log, now - started);
    next_progress = now + o.progress_interval;
  }
}

void KafkaSource::Impl::handle(rd_kafka_message_t* m) {
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
  counters.messages.fetch_add(1, std::memory_order_relaxed);
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
    if (reason.empty()) tag = tracker.submitted(slot, offset);
  }
  if (!reason.empty()) {
    counters.invalid.fetch_add(1, std::memory_order_relaxed);
    k.outcome = Outcome::rejected(std::move(reason));
    report(k);
    std::lock_guard lk(mu);
    tracker.answered(slot, offset);
    return;
  }
  counters.in_flight.fetch_add(1, std::memory_order_acq_rel);
  Done done{this,
            tag,
            results || o.on_outcome ? std::string(key) : std::string(),
            parsed.event->trade_id,
            parsed.event->version,
            k.timestamp_ms};
  SubmitOptions so;
  so.source = SourceRef{hook.get(), slot, offset};
  // Validate once (issue #12): `parse_event` above ran `validate`, whose verdict the source
  // needs before it submits (an invalid event is answered here, counted `invalid`, its key
  // checked only after it, and consumed without the pipeline). The event submitted is the one
  // it accepted, so the internal entry skips the pipeline's second `validate`
  // (detail/validate_once.hpp).
  detail::PrevalidatedSubmit::async_submit(pipeline, std::move(*parsed.event), std::move(so),
                                           std::move(done));
}

/// Room for one more message: the messages in the pipeline and the outcome messages queued for
/// the results topic stay below max_in_flight together, which bounds the results queue. A
/// completion queues its outcome message before it leaves `in_flight`, so reading `in_flight`
/// first can only overestimate. The pipeline, which other ingresses may share, must have room
/// too, so that the poll loop waits here (and keeps its housekeeping) rather than in
/// `async_submit`.
bool KafkaSource::Impl::room() const {
  const std::size_t in_pipeline = counters.in_flight.load(std::memory_order_acquire);
  const std::size_t queued = results ? results->pending() : 0;
  return in_pipeline + queued < o.max_in_flight &&
         pipeline.in_flight() < pipeline.max_in_flight();
}

result<void> KafkaSource::Impl::run() {
  started = Clock::now();
  if (!start_clients()) return shutdown();
  consuming = true;
  std::string topics;
  for (const auto& t : o.topics) topics += (topics.empty() ? "" : ",") + t;
  log->info("kafka source: group {} consuming {} from {} into {}{}", o.group, topics,
            o.brokers, store->describe(),
            o.results_topic.empty() ? "" : ", outcomes to " + o.results_topic);
  while (!stop_requested.load(std::memory_order_relaxed) && !failed.load()) {
    if (!room()) {
      wait_until(Clock::now() + 50ms, [&] {
        return room() || stop_requested.load(std::memory_order_relaxed) || failed.load();
      });
      housekeeping();
      continue;
    }
    // A burst ends at a stop request too: nothing fetched after it is submitted (the stored
    // offsets stay at what completed; the next owner reads the rest).
    int burst = 0;
    while (room() && burst < 4096 && !failed.load() &&
           !stop_requested.load(std::memory_order_relaxed)) {
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
/// The pipeline is the host's: it goes on.
result<void> KafkaSource::Impl::shutdown() {
  if (consuming) {
    log->info("kafka source: stopping; {} events in flight", counters.in_flight.load());
    while (counters.in_flight.load() > 0) {
      wait_until(Clock::now() + 50ms, [&] { return counters.in_flight.load() == 0; });
      housekeeping();
    }
    // The last completion may still hold wait_mu (on_done): past this, no shard touches us.
    { std::lock_guard lk(wait_mu); }
    housekeeping(true);
  }
  if (consumer != nullptr) {
    // Triggers the revoke callback: nothing is in flight, the offsets are stored already.
    rd_kafka_consumer_close(consumer);
  }
  if (results) results->stop();
  if (consumer != nullptr) {
    rd_kafka_destroy(consumer);
    consumer = nullptr;
  }
  counters.partitions.store(0);
  counters.log_summary(*log);
  std::lock_guard lk(error_mu);
  if (error) return error;
  return boost::outcome_v2::success();
}

}  // namespace tradecapture
