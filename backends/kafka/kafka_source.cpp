// The Kafka source: its public API and its pipeline side (the pipeline, its lock, the source
// hook that adds the offsets to each commit and abandons lost partitions' events, completions).
// See source_impl.hpp for the parts.

#include "source_impl.hpp"

#include <tradecapture/store_wrapper.hpp>

#include <algorithm>

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

// The pipeline's view of the store: records that a commit carrying source offsets was fenced
// off, so the polling thread looks for partitions another member claimed.
class KafkaSource::Impl::SourceStore final : public TradeStoreWrapper {
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
// are abandoned by the hook (see Hook) or refused in the commit.
class KafkaSource::Impl::FreeLock final : public PartitionLock {
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
  std::chrono::milliseconds lease() const override { return std::chrono::seconds(60); }
  result<void> ping() override { return boost::outcome_v2::success(); }
  std::string describe() const override { return "kafka-source:" + group_; }

 private:
  std::string group_;
};

// The source hook of the pipeline's commits (SourceHook): each event names its slot (stream) and
// offset (position); the pipeline keeps each Kafka partition's source mark per trade partition.
// Abandons the events of dead slots, adds the offset rows, and kills the slots whose rows a
// refused commit found claimed by another member.
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
  void after_commit(std::span<const SourceEvent>, boost::system::error_code,
                    std::span<const SourceOffset> stale) override {
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

KafkaSource::Impl::Impl(std::shared_ptr<TradeStore> s, std::shared_ptr<const Processor> p,
                        KafkaSourceOptions opt)
    : user_store(std::move(s)),
      processor(std::move(p)),
      o(std::move(opt)),
      log(o.logger ? o.logger : spdlog::default_logger()),
      tracker(o.group) {
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

// ---- the pipeline -----------------------------------------------------------------------

void KafkaSource::Impl::start_pipeline() {
  store = std::make_shared<SourceStore>(user_store, fence_suspect);
  PipelineOptions po = o.pipeline;
  po.max_in_flight = std::max(po.max_in_flight, o.max_in_flight + 16);
  po.on_overload = OverloadPolicy::wait;
  if (!po.logger) po.logger = log;
  hook = std::make_unique<Hook>(*this);
  auto p = std::make_unique<Pipeline>(store, std::make_shared<FreeLock>(o.group), processor, po);
  std::lock_guard lk(pipeline_mu);
  pipeline = std::move(p);
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
  counters.in_flight.fetch_sub(1, std::memory_order_acq_rel);
  notify();
}

// ------------------------------------------------------------------------------------------

KafkaSource::KafkaSource(std::shared_ptr<TradeStore> store,
                         std::shared_ptr<const Processor> processor, KafkaSourceOptions options)
    : impl_(std::make_unique<Impl>(std::move(store), std::move(processor), std::move(options))) {}

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

PipelineMetrics KafkaSource::pipeline_metrics() const {
  std::lock_guard lk(impl_->pipeline_mu);
  return impl_->pipeline ? impl_->pipeline->metrics() : PipelineMetrics{};
}

std::string KafkaSource::last_error() const {
  std::lock_guard lk(impl_->error_mu);
  return impl_->error_text;
}

}  // namespace tradecapture
