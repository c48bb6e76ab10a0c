// The Kafka source: its public API and its pipeline side (the source hook that adds the offsets
// to each commit, abandons lost partitions' events and notices fenced commits; completions).
// See source_impl.hpp for the parts.

#include "source_impl.hpp"

namespace tradecapture {
namespace {

using namespace kafka_detail;

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

}  // namespace

const boost::system::error_category& kafka_category() noexcept {
  static const KafkaCategory c;
  return c;
}

std::string kafka_message_key(const PartitionKey& partition) { return partition.encode(); }

// ------------------------------------------------------------------------------------------

// The source hook of the pipeline's commits (SourceHook): each event names its slot (stream) and
// offset (position); the pipeline keeps each Kafka partition's source mark per trade partition.
// Abandons the events of dead slots, adds the offset rows, and kills the slots whose rows a
// refused commit found claimed by another member. The pipeline is the host's and may be shared:
// its lock is not the source's concern (every commit of a Kafka event carries its partition's
// claim epoch, and the trade partitions are fenced by the pipeline's store claims).
class KafkaSource::Impl::Hook final : public SourceHook {
 public:
  explicit Hook(Impl& impl) : impl_(impl) {}
  std::string mark_id(std::uint32_t stream) const override {
    std::lock_guard lk(impl_.mu);
    return impl_.tracker.mark_id(stream);
  }
  SourceVerdict check(std::uint32_t stream, std::int64_t position,
                      std::optional<std::int64_t> mark) override {
    {
      std::lock_guard lk(impl_.mu);
      if (impl_.tracker.dead(stream)) return SourceVerdict::abandoned;
    }
    return SourceHook::check(stream, position, mark);
  }
  void before_commit(std::span<const SourceEvent> events, CommitBatch& batch) override {
    std::lock_guard lk(impl_.mu);
    impl_.tracker.add_sources(events, batch);
  }
  void after_commit(std::span<const SourceEvent>, boost::system::error_code ec,
                    std::span<const SourceOffset> stale) override {
    // A fenced commit that carried our rows: the poll thread looks for partitions another member
    // claimed (the pipeline names them in `stale` when it could read them).
    if (ec == errc::fenced_off) impl_.fence_suspect.store(true, std::memory_order_relaxed);
    if (stale.empty()) return;
    std::vector<kafka_detail::SlotView> killed;
    {
      std::lock_guard lk(impl_.mu);
      killed = impl_.tracker.lost(stale);
    }
    for (const auto& v : killed) {
      impl_.counters.fenced.fetch_add(1, std::memory_order_relaxed);
      impl_.log->error("kafka source: {}[{}] was claimed by another member (its stored epoch is "
                       "above ours, {}); giving it up, its in-flight events are abandoned",
                       v.topic, v.partition, v.epoch);
    }
    // The poll thread looks for other partitions claimed behind our back.
    impl_.fence_suspect.store(true, std::memory_order_relaxed);
  }

 private:
  Impl& impl_;
};

KafkaSource::Impl::Impl(Pipeline& p, std::shared_ptr<TradeStore> s, KafkaSourceOptions opt)
    : pipeline(p),
      store(std::move(s)),
      o(std::move(opt)),
      log(o.logger ? o.logger : spdlog::default_logger()),
      tracker(o.group),
      hook(std::make_unique<Hook>(*this)) {
  if (!o.results_topic.empty())
    // Every queued outcome message is of a message the poll loop admitted: in the pipeline and
    // in the queue together there are at most max_in_flight (see room()).
    results = std::make_unique<ResultsProducer>(o.results_topic, log, o.max_in_flight,
                                                [this] { notify(); });
}

// ---- failures ---------------------------------------------------------------------------

void KafkaSource::Impl::fail(boost::system::error_code ec, std::string text) {
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

void KafkaSource::Impl::notify() {
  if (waiters.load(std::memory_order_acquire) > 0) {
    std::lock_guard lk(wait_mu);
    wait_cv.notify_all();
  }
}

// ---- outcomes ---------------------------------------------------------------------------

void KafkaSource::Impl::report(const KafkaOutcome& k) {
  counters.count(k);
  if (k.outcome.kind == OutcomeKind::Rejected) {
    // Never silent: without a results topic every rejection is a warning.
    log->log(results ? spdlog::level::debug : spdlog::level::warn,
             "kafka source: {}[{}]@{} trade {} version {} REJECTED: {}", k.topic, k.partition,
             k.offset, k.trade_id ? *k.trade_id : std::string("?"),
             k.version ? std::to_string(*k.version) : std::string("?"), k.outcome.reason);
  }
  if (results) results->push(k);
  if (o.on_outcome) o.on_outcome(k);
}

void KafkaSource::Impl::on_done(const Done& d, boost::system::error_code ec, Outcome outcome) {
  Completion c;
  {
    std::lock_guard lk(mu);
    c = tracker.completed(d.tag);
    // An event without an outcome: nothing later of its Kafka partition may commit (the
    // source mark of a later event would skip it on the re-read).
    if (ec && ec != errc::replayed && ec != errc::source_abandoned && c.known &&
        c.state != SlotState::dead)
      tracker.set_state(tag_slot(d.tag), SlotState::dead);
  }
  if (ec == errc::replayed) {
    // Decided before a restart (at or below its Kafka partition's mark): not reported again.
    counters.replayed.fetch_add(1, std::memory_order_relaxed);
  } else if (ec == errc::source_abandoned) {
    // Its slot died before it was decided: no outcome here; the next owner reads it again.
    counters.failures.fetch_add(1, std::memory_order_relaxed);
    log->debug("kafka source: abandoned event {}[{}]@{}", c.topic, c.partition, c.offset);
  } else if (ec) {
    counters.failures.fetch_add(1, std::memory_order_relaxed);
    if (c.known && c.state != SlotState::dead) {
      fail(ec, "event " + c.topic + "[" + std::to_string(c.partition) + "]@" +
                   std::to_string(c.offset) + " has no outcome: " + ec.message() +
                   " (stored offsets stay true; a restart resumes from them)");
    } else {
      log->debug("kafka source: abandoned event {}[{}]@{}: {}", c.topic, c.partition, c.offset,
                 ec.message());
    }
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
  // The last touch of the source on a shard: once `in_flight` is 0 the source may be destroyed
  // while the host's pipeline runs on, so the decrement and the wake-up happen under `wait_mu`,
  // which `shutdown` takes once more after it has seen 0.
  std::lock_guard lk(wait_mu);
  counters.in_flight.fetch_sub(1, std::memory_order_acq_rel);
  wait_cv.notify_all();
}

// ------------------------------------------------------------------------------------------

KafkaSource::KafkaSource(Pipeline& pipeline, std::shared_ptr<TradeStore> store,
                         KafkaSourceOptions options)
    : impl_(std::make_unique<Impl>(pipeline, std::move(store), std::move(options))) {}

KafkaSource::~KafkaSource() {
  stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

result<void> KafkaSource::start(std::function<void(boost::system::error_code)> on_finished) {
  Impl& i = *impl_;
  if (i.launched.exchange(true)) return kafka_errc::bad_config;  // started already
  i.thread = std::thread([&i, on_finished = std::move(on_finished)] {
    i.outcome = i.run();
    i.done.store(true, std::memory_order_release);
    if (on_finished) on_finished(i.outcome ? boost::system::error_code() : i.outcome.error());
  });
  return boost::outcome_v2::success();
}

result<void> KafkaSource::wait() {
  Impl& i = *impl_;
  if (i.thread.joinable()) i.thread.join();
  return i.outcome;
}

result<void> KafkaSource::run() {
  if (auto r = start(); !r) return r;
  return wait();
}

void KafkaSource::stop() noexcept { impl_->stop_requested.store(true, std::memory_order_relaxed); }

bool KafkaSource::finished() const noexcept {
  return impl_->done.load(std::memory_order_acquire);
}

KafkaSourceMetrics KafkaSource::metrics() const {
  const Impl& i = *impl_;
  return i.counters.snapshot(i.results ? i.results->produced() : 0,
                             i.results ? i.results->failed() : 0);
}

std::string KafkaSource::last_error() const {
  std::lock_guard lk(impl_->error_mu);
  return impl_->error_text;
}

}  // namespace tradecapture
