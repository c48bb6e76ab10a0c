// The Kafka source's rebalancing: assignments (claimed in the store, resumed at the stored
// offset), revocations (drained, then their final offsets stored), lost partitions, and
// partitions another member claimed (fenced).

#include "source_impl.hpp"

#include <algorithm>
#include <cstring>

namespace tradecapture {

using namespace kafka_detail;

void KafkaSource::Impl::rebalance_cb(rd_kafka_t*, rd_kafka_resp_err_t err,
                                     rd_kafka_topic_partition_list_t* parts, void* opaque) {
  static_cast<Impl*>(opaque)->on_rebalance(err, parts);
}

void KafkaSource::Impl::on_rebalance(rd_kafka_resp_err_t err,
                                     rd_kafka_topic_partition_list_t* parts) {
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

void KafkaSource::Impl::on_assign(rd_kafka_topic_partition_list_t* parts) {
  for (int i = 0; i < parts->cnt; ++i) {
    rd_kafka_topic_partition_t& p = parts->elems[i];
    const std::string topic = p.topic;
    // A partition abandoned earlier in this process: its events must be out of the pipeline
    // before a new generation starts (the source hook abandons them as soon as a shard gets to
    // them).
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
      return store->claim_source(o.group, topic, p.partition);
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
    counters.assignments.fetch_add(1, std::memory_order_relaxed);
    counters.partitions.fetch_add(1, std::memory_order_relaxed);
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

void KafkaSource::Impl::on_revoke(rd_kafka_topic_partition_list_t* parts) {
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
  counters.revocations.fetch_add(slots.size(), std::memory_order_relaxed);
  counters.partitions.fetch_sub(std::min<std::uint64_t>(slots.size(), counters.partitions.load()),
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

/// Gives up every partition whose stored claim epoch is above ours (another member claimed it).
void KafkaSource::Impl::check_fenced() {
  last_fence_check = Clock::now();
  auto rows = store->source_offsets(o.group);
  if (!rows) return;
  std::lock_guard lk(mu);
  for (const auto& row : rows.value()) {
    auto s = tracker.find(row.topic, row.partition);
    if (!s) continue;
    const SlotView v = tracker.view(*s);
    if (v.state == SlotState::dead || row.epoch <= v.epoch) continue;
    tracker.set_state(*s, SlotState::dead);
    counters.fenced.fetch_add(1, std::memory_order_relaxed);
    log->error("kafka source: {}[{}] was claimed by another member (epoch {} > ours {}); "
               "giving it up, its in-flight events are abandoned",
               row.topic, row.partition, row.epoch, v.epoch);
  }
}

}  // namespace tradecapture
