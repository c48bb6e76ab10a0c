// Kafka ingress against librdkafka's in-process mock cluster (no broker install): an
// adversarial trace consumed into memory, SQLite and PostgreSQL stores equals a sequential
// reference; members that stop cleanly, die mid-run, or get fenced off hand over without
// applying anything twice; broker failures are survived; two topics that carry events of the
// same trade partitions are applied exactly once, in each Kafka partition's order.

#if defined(__SANITIZE_THREAD__)

#include <doctest/doctest.h>

// Debian's librdkafka starts its threads with C11 thrd_create, which ThreadSanitizer does not
// intercept: its first allocation on such a thread crashes. The sans-I/O core
// (test_offset_tracker.cpp) still runs here; the Kafka tests run in the other builds.
TEST_CASE("kafka: skipped under ThreadSanitizer (librdkafka's threads are invisible to it)") {
  MESSAGE("skipped: librdkafka's C11 threads crash ThreadSanitizer");
}

#else

#include <tradecapture/detail/validate_once.hpp>
#include <tradecapture/event_codec.hpp>
#include <tradecapture/kafka_source.hpp>
#include <tradecapture/memory.hpp>
#include <tradecapture/store_wrapper.hpp>
#ifdef TRADECAPTURE_HAVE_SOCI
#include <tradecapture/soci_store.hpp>
#include "common/store_conformance.hpp"  // store_factories, make_sqlite_store, make_postgres_store
#endif
#include "support/down_store.hpp"
#include "support/events.hpp"
#include "support/trace.hpp"
#include "support/validation_cases.hpp"
#include "results_producer.hpp"  // backends/kafka (internal)

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/use_future.hpp>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <tuple>

using namespace tradecapture;
using namespace std::chrono_literals;

namespace {

// Kafka API keys (librdkafka's rdkafka_protocol.h is not public).
constexpr std::int16_t api_fetch = 1;
constexpr std::int16_t api_offset_commit = 8;
constexpr std::int16_t api_heartbeat = 12;

std::shared_ptr<spdlog::logger> quiet_logger() {
  static auto log = [] {
    auto l = std::make_shared<spdlog::logger>("kafka-test",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    const char* level = std::getenv("TC_KAFKA_TEST_LOG");  // e.g. "info" when debugging
    l->set_level(level ? spdlog::level::from_str(level) : spdlog::level::err);
    return l;
  }();
  return log;
}

/// librdkafka's mock cluster, living in this process.
class MockCluster {
 public:
  explicit MockCluster(int brokers) {
    char err[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "2", err, sizeof err);
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    REQUIRE(rk_ != nullptr);
    mc_ = rd_kafka_mock_cluster_new(rk_, brokers);
    REQUIRE(mc_ != nullptr);
    bootstraps_ = rd_kafka_mock_cluster_bootstraps(mc_);
  }
  ~MockCluster() {
    rd_kafka_mock_cluster_destroy(mc_);
    rd_kafka_destroy(rk_);
  }
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  const std::string& bootstraps() const { return bootstraps_; }
  rd_kafka_mock_cluster_t* get() const { return mc_; }
  void create_topic(const std::string& topic, int partitions, int replication = 1) {
    REQUIRE(rd_kafka_mock_topic_create(mc_, topic.c_str(), partitions, replication) ==
            RD_KAFKA_RESP_ERR_NO_ERROR);
  }

 private:
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_mock_cluster_t* mc_ = nullptr;
  std::string bootstraps_;
};

/// One message of a trace, with what a sequential run must answer for it.
struct Message {
  std::optional<std::string> key;
  std::string value;
  // Filled by produce().
  std::int32_t partition = -1;
  std::int64_t offset = -1;
};

/// Produces `messages` in order (keyed, default partitioner); records partition and offset.
void produce(const std::string& brokers, const std::string& topic,
             std::vector<Message>& messages) {
  char err[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "max.in.flight.requests.per.connection", "1", err, sizeof err);
  rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof err);
  rd_kafka_conf_set(conf, "log_level", "2", err, sizeof err);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    auto* msg = static_cast<Message*>(m->_private);
    REQUIRE(m->err == RD_KAFKA_RESP_ERR_NO_ERROR);
    msg->partition = m->partition;
    msg->offset = m->offset;
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  REQUIRE(rk != nullptr);
  for (auto& m : messages) {
    const void* key = m.key ? static_cast<const void*>(m.key->data()) : nullptr;
    const std::size_t key_len = m.key ? m.key->size() : 0;
    for (;;) {
      auto e = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key, key_len),
          RD_KAFKA_V_VALUE(m.value.data(), m.value.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&m), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk, 10);
        continue;
      }
      REQUIRE(e == RD_KAFKA_RESP_ERR_NO_ERROR);
      break;
    }
  }
  REQUIRE(rd_kafka_flush(rk, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(rk);
  for (const auto& m : messages) REQUIRE(m.offset >= 0);
}

/// Every message of `topic` (all partitions, from the start) until `count` are read.
std::vector<std::pair<std::optional<std::string>, std::string>> read_topic(
    const std::string& brokers, const std::string& topic, int partitions, std::size_t count) {
  char err[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", "reader", err, sizeof err);
  rd_kafka_conf_set(conf, "log_level", "2", err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  REQUIRE(rk != nullptr);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p)
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  REQUIRE(rd_kafka_assign(rk, list) == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(list);
  std::vector<std::pair<std::optional<std::string>, std::string>> out;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (out.size() < count && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) continue;
    if (!m->err) {
      std::optional<std::string> key;
      if (m->key) key.emplace(static_cast<const char*>(m->key), m->key_len);
      out.emplace_back(key, std::string(static_cast<const char*>(m->payload), m->len));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return out;
}

// ---- an adversarial trace -------------------------------------------------------------------

std::string event_json(const std::string& id, std::int64_t version, const char* type,
                       const PartitionKey& k, const char* side, const std::string& qty,
                       const std::string& px) {
  std::string s = "{\"trade_id\": ";
  append_json_string(s, id);
  s += ", \"version\": " + std::to_string(version) + ", \"type\": \"" + type + "\", \"account\": ";
  append_json_string(s, k.account);
  s += ", \"book\": ";
  append_json_string(s, k.book);
  s += ", \"security\": ";
  append_json_string(s, k.security);
  if (std::string_view(type) != "CANCEL") {
    s += std::string(", \"side\": \"") + side + "\", \"quantity\": \"" + qty + "\", \"price\": \"" +
         px + "\"";
  }
  return s + "}";
}

/// A seeded trace over `partitions` trade partitions: the adversarial mix of
/// tests/support/trace.hpp (NEWs, AMENDs, CANCELs, exact and conflicting resends, stale
/// versions, AMENDs before their NEW, unknown trades, amends after cancels, invalid events) with
/// Kafka's own faults on top, one message in ten: bad JSON, an empty object, no key, the key of
/// another partition. Trade ids are unique per trade partition, so no outcome depends on the
/// order of different Kafka partitions.
std::vector<Message> make_trace(unsigned seed, std::size_t n, int partitions) {
  tctest::TraceOptions o;
  o.seed = seed;
  o.events = n;
  for (int i = 0; i < partitions; ++i)
    o.keys.push_back(PartitionKey{"ACC" + std::to_string(i % 5), i % 2 ? "B_C" : "EQ",
                                  "SEC" + std::to_string(i)});
  o.mix = tctest::adversarial_mix();
  const auto trace = tctest::make_trace(o);
  std::mt19937 rng(seed);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<Message> out;
  for (const auto& te : trace) {
    if (out.size() >= n) break;
    const std::string key = o.keys[te.partition].encode();
    const int r = pick(0, 99);
    if (r < 3) {  // not JSON
      out.push_back(Message{key, "{\"trade_id\": \"X\","});
    } else if (r < 6) {  // no value at all is not producible with a key here: an empty object
      out.push_back(Message{key, "{}"});
    } else if (r < 8) {  // no key
      out.push_back(Message{std::nullopt, tctest::event_json(te.event)});
      continue;
    } else if (r < 10) {  // the key of another partition
      out.push_back(Message{o.keys[(te.partition + 1) % o.keys.size()].encode(),
                            tctest::event_json(te.event)});
      continue;
    }
    out.push_back(Message{key, tctest::event_json(te.event)});
  }
  out.resize(std::min(out.size(), n));
  return out;
}

/// What a sequential run of the trace answers and leaves in a store.
struct Reference {
  std::vector<Outcome> outcomes;  // by message index
  std::vector<PositionRow> positions;
  std::vector<std::string> events;  // `events` lines
};

Reference reference_of(const std::vector<Message>& trace) {
  Reference ref;
  auto store = make_memory_store();
  PipelineOptions o;
  o.threads = 1;
  o.logger = quiet_logger();
  Pipeline pipeline(store, make_local_lock(), make_position_processor(), o);
  for (const auto& m : trace) {
    ParsedEvent p = parse_event(m.value);
    if (!p.event) {
      ref.outcomes.push_back(Outcome::rejected(p.reason));
    } else if (!m.key || *m.key != kafka_message_key(p.event->partition)) {
      ref.outcomes.push_back(Outcome::rejected("invalid: key"));
    } else {
      ref.outcomes.push_back(pipeline.submit(*p.event).value());
    }
  }
  ref.positions = store->positions().value();
  REQUIRE(store->scan_events([&](const StoredEvent& e) {
    std::string line;
    append_event_json(line, e);
    ref.events.push_back(line);
    return true;
  }));
  return ref;
}

std::vector<std::string> events_of(TradeStore& store) {
  std::vector<std::string> out;
  REQUIRE(store.scan_events([&](const StoredEvent& e) {
    std::string line;
    append_event_json(line, e);
    out.push_back(line);
    return true;
  }));
  return out;
}

/// The end offset of every Kafka partition that got messages of the trace.
std::map<std::int32_t, std::int64_t> end_offsets(const std::vector<Message>& trace) {
  std::map<std::int32_t, std::int64_t> end;
  for (const auto& m : trace) end[m.partition] = std::max(end[m.partition], m.offset + 1);
  return end;
}

/// The state of `store` equals the reference; its stored offsets are the end offsets.
void check_store(TradeStore& store, const Reference& ref, const std::vector<Message>& trace,
                 const std::string& group, const std::string& topic) {
  CHECK(store.positions().value() == ref.positions);
  const auto events = events_of(store);
  CHECK(events.size() == ref.events.size());
  CHECK(events == ref.events);
  const auto end = end_offsets(trace);
  auto offsets = store.source_offsets(group);
  REQUIRE(offsets);
  std::map<std::int32_t, std::int64_t> stored;
  for (const auto& o : offsets.value())
    if (o.topic == topic) stored[o.partition] = o.next_offset;
  CHECK(stored == end);
}

/// Records every outcome a source reports.
struct Reported {
  std::mutex mu;
  std::map<std::pair<std::int32_t, std::int64_t>, std::vector<Outcome>> by_offset;
  std::atomic<std::size_t> count{0};
  void add(const KafkaOutcome& k) {
    std::lock_guard lk(mu);
    by_offset[{k.partition, k.offset}].push_back(k.outcome);
    count.fetch_add(1);
  }
  /// Every message of the trace got exactly one outcome, the sequential one (its kind and seq;
  /// with `reasons` also its reason, invalid ones by their prefix only).
  void check(const std::vector<Message>& trace, const Reference& ref, bool reasons) {
    std::lock_guard lk(mu);
    for (std::size_t i = 0; i < trace.size(); ++i) {
      const auto& got = by_offset[{trace[i].partition, trace[i].offset}];
      REQUIRE(got.size() == 1);
      INFO("message " << i << ": " << trace[i].value);
      CHECK(got[0].kind == ref.outcomes[i].kind);
      CHECK(got[0].seq == ref.outcomes[i].seq);
      if (!reasons) continue;
      if (ref.outcomes[i].reason.rfind("invalid:", 0) == 0) {
        CHECK(got[0].reason.rfind("invalid:", 0) == 0);
      } else {
        CHECK(got[0].reason == ref.outcomes[i].reason);
      }
    }
  }
};

/// A member of a test: the source's options and those of the pipeline the member feeds (its
/// host's; `Running` makes one per member, as one process each would).
struct MemberOptions : KafkaSourceOptions {
  PipelineOptions pipeline;
};

MemberOptions source_options(const std::string& brokers, const std::string& topic,
                             const std::string& group) {
  MemberOptions o;
  o.brokers = brokers;
  o.topics = {topic};
  o.group = group;
  o.consumer_config = {{"session.timeout.ms", "4000"},
                       {"heartbeat.interval.ms", "250"},
                       {"fetch.wait.max.ms", "20"},
                       {"log_level", "2"}};
  o.producer_config = {{"log_level", "2"}};
  if (const char* strategy = std::getenv("TC_KAFKA_TEST_STRATEGY"))  // e.g. cooperative-sticky
    o.consumer_config.emplace_back("partition.assignment.strategy", strategy);
  if (const char* debug = std::getenv("TC_KAFKA_DEBUG")) {  // e.g. "cgrp,fetch" when debugging
    o.consumer_config.emplace_back("debug", debug);
    o.consumer_config.emplace_back("log_level", "7");
  }
  o.offsets_interval = 50ms;
  o.revoke_timeout = 10s;
  o.progress_interval = 0ms;
  o.pipeline.threads = 2;
  o.pipeline.retry.budget = 2000ms;
  o.pipeline.retry.max_backoff = 100ms;
  o.pipeline.logger = quiet_logger();
  o.logger = quiet_logger();
  return o;
}

/// A member's pipeline (over `store`, with a lock of its own, as in a process of its own).
std::unique_ptr<Pipeline> member_pipeline(std::shared_ptr<TradeStore> store,
                                          const MemberOptions& o) {
  return std::make_unique<Pipeline>(std::move(store), make_local_lock(),
                                    make_position_processor(), o.pipeline);
}

/// The source of a member, over its pipeline; its own store calls retry like the pipeline's.
std::unique_ptr<KafkaSource> member_source(Pipeline& pipeline, std::shared_ptr<TradeStore> store,
                                           const MemberOptions& o) {
  KafkaSourceOptions so = o;
  so.retry = o.pipeline.retry;
  return std::make_unique<KafkaSource>(pipeline, std::move(store), std::move(so));
}

/// A mock cluster whose topic "trades" holds a seeded trace (make_trace), what a sequential run
/// answers for it, and an empty memory store to consume it into.
struct TracedTopic {
  MockCluster cluster;
  const std::string topic = "trades";
  std::vector<Message> trace;
  Reference ref;
  std::shared_ptr<TradeStore> memory = make_memory_store();
  /// `brokers` brokers; `partitions` Kafka partitions of `replication` replicas; `n` messages
  /// over `keys` trade partitions.
  TracedTopic(int brokers, int partitions, int replication, unsigned seed, std::size_t n, int keys)
      : cluster(brokers) {
    cluster.create_topic(topic, partitions, replication);
    trace = make_trace(seed, n, keys);
    produce(cluster.bootstraps(), topic, trace);
    ref = reference_of(trace);
  }
  /// The options of a member of `group` consuming the topic.
  MemberOptions options(const std::string& group) const {
    return source_options(cluster.bootstraps(), topic, group);
  }
};

/// A started member: its pipeline, and its source on its own thread (KafkaSource::start). The
/// source stops before the pipeline.
class Running {
 public:
  Running(std::shared_ptr<TradeStore> store, const MemberOptions& o)
      : pipeline_(member_pipeline(store, o)), source_(member_source(*pipeline_, store, o)) {
    REQUIRE(source_->start());
  }
  ~Running() {
    (void)stop();
    source_.reset();
    pipeline_->stop();
  }
  /// Stops and waits; the result of the run.
  result<void> stop() {
    source_->stop();
    return source_->wait();
  }
  /// Waits for the source to finish on its own.
  result<void> join(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
    REQUIRE(done());
    return source_->wait();
  }
  bool done() const { return source_->finished(); }
  KafkaSource& source() { return *source_; }

 private:
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<KafkaSource> source_;
};

/// Waits until `pred` or fails the test after `timeout`.
template <class Pred>
void wait_for(Pred pred, std::chrono::milliseconds timeout, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) FAIL("timed out waiting for " << std::string(what));
    std::this_thread::sleep_for(20ms);
  }
}

std::uint64_t outcomes_of(const KafkaSourceMetrics& m) {
  return m.accepted + m.duplicate + m.stale + m.rejected + m.replayed;
}

/// A store that slows every commit down (so that members hand over mid-run), can hold the
/// commits of chosen partitions, and can "crash": from then on every call fails and nothing
/// lands, like a process that died at that instant.
class ControlledStore final : public tctest::DownStore {
 public:
  using DownStore::DownStore;
  std::atomic<int> delay_ms{0};
  /// Crash right after the first successful commit that accepts an event with this trade id.
  std::string crash_after_trade;
  /// Commits that touch this partition wait until released (or the crash).
  std::optional<PartitionKey> hold;
  std::atomic<int> commits{0};

  void release() {
    std::lock_guard lk(mu_);
    hold.reset();
    cv_.notify_all();
  }
  /// From now on, commits that touch `p` wait until released (`hold`, set while running).
  void hold_partition(const PartitionKey& p) {
    std::lock_guard lk(mu_);
    hold = p;
  }
  /// From now on every call fails and nothing lands (DownStore::down); held commits go on to fail.
  void crash() {
    down.store(true);
    release();
  }

 protected:
  result<void> do_commit_(const CommitBatch& b) override {
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] {
        if (!hold) return true;
        for (const auto& p : b.partitions)
          if (p.partition == *hold) return false;
        return true;
      });
    }
    if (down) return errc::store_unavailable;
    if (int d = delay_ms.load()) std::this_thread::sleep_for(std::chrono::milliseconds(d));
    auto r = TradeStoreWrapper::do_commit_(b);
    if (!r) return r;
    ++commits;
    if (!crash_after_trade.empty()) {
      for (const auto& p : b.partitions)
        for (const auto& e : p.events)
          if (e.event.trade_id == crash_after_trade) crash();
    }
    return r;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

/// A ControlledStore over `inner` whose every commit takes `delay_ms` longer.
std::shared_ptr<ControlledStore> slowed(std::shared_ptr<TradeStore> inner, int delay_ms) {
  auto s = std::make_shared<ControlledStore>(std::move(inner));
  s->delay_ms = delay_ms;
  return s;
}

/// `o` with small batches and a small in-flight window, so that there is work left when members
/// come, go or fail.
MemberOptions small_windows(MemberOptions o) {
  o.pipeline.max_batch = 4;
  o.max_in_flight = 32;
  return o;
}

/// A traced topic (TracedTopic) for members of `group` with small windows (small_windows)
/// that report every outcome to `reported`, through `store`: the memory store 15 ms slower per
/// commit, so that what a test does to the members (handovers, broker failures) happens mid-run.
struct ReportingMembers : TracedTopic {
  ReportingMembers(int brokers, int partitions, int replication, unsigned seed, std::size_t n,
                   int keys, const std::string& group)
      : TracedTopic(brokers, partitions, replication, seed, n, keys),
        store(slowed(memory, 15)),
        o(small_windows(options(group))) {
    o.on_outcome = [this](const KafkaOutcome& k) { reported.add(k); };
  }
  std::shared_ptr<ControlledStore> store;
  Reported reported;
  MemberOptions o;
};

/// Every store backend of this build (memory, SQLite, PostgreSQL): name and a factory of a
/// fresh store (with whatever keeps its storage alive).
std::vector<std::pair<std::string, std::function<std::pair<std::shared_ptr<TradeStore>,
                                                           std::shared_ptr<void>>()>>>
all_stores() {
  std::vector<std::pair<std::string, std::function<std::pair<std::shared_ptr<TradeStore>,
                                                              std::shared_ptr<void>>()>>>
      stores = {{"memory", [] {
                   return std::make_pair(make_memory_store(), std::shared_ptr<void>());
                 }}};
#ifdef TRADECAPTURE_HAVE_SOCI
  for (const auto& f : tctest::store_factories()) {
    if (f.name == "memory") continue;
    stores.push_back({f.name, [make = f.make] {
                        auto s = make();
                        return std::make_pair(s.store, s.storage);
                      }});
  }
#endif
  return stores;
}

/// Runs `body(name, store)` on a fresh store of every backend (all_stores), a SUBCASE each.
template <class Body>
void for_each_store(Body body) {
  for (auto& [name, make] : all_stores()) {
    SUBCASE(name.c_str()) {
      auto [store, keep] = make();
      body(name, store);
    }
  }
}

// ---- several topics feeding the same trade partitions -----------------------------------------

/// One produced message of a multi-topic run, with where it landed.
struct TopicMessage {
  std::string topic;
  Message message;
  std::string trade_id;
  std::int64_t version = 0;
  bool resend = false;  ///< an exact resend of an earlier message of the same topic
};

/// Events for `topic` over the shared trade partitions `keys`: NEWs, AMENDs and CANCELs of trades
/// of this topic only (ids prefixed by the topic), in version order, and exact resends of earlier
/// messages. All of a trade's events share its trade partition, hence one Kafka partition of the
/// topic: whatever the interleaving with the other topic, every first copy is ACCEPTED and every
/// resend is DUPLICATE; nothing is REJECTED.
std::vector<TopicMessage> make_topic_trace(const std::string& topic, unsigned seed, std::size_t n,
                                           const std::vector<PartitionKey>& keys) {
  tctest::TraceOptions o;
  o.seed = seed;
  o.events = n;
  o.keys = keys;
  o.mix.amend = 450;
  o.mix.cancel = 80;
  o.mix.resend = 120;
  o.id_prefix = topic + "-T";
  std::vector<TopicMessage> out;
  for (const auto& te : tctest::make_trace(o)) {
    out.push_back(TopicMessage{topic,
                               Message{te.event.partition.encode(), tctest::event_json(te.event)},
                               te.event.trade_id, te.event.version, te.resend});
  }
  return out;
}

/// Produces the messages of each topic in order; fills in partitions and offsets.
void produce_topics(const std::string& brokers, std::vector<TopicMessage>& all) {
  std::map<std::string, std::vector<Message>> by_topic;
  for (const auto& m : all) by_topic[m.topic].push_back(m.message);
  for (auto& [topic, messages] : by_topic) {
    produce(brokers, topic, messages);
    std::size_t i = 0;
    for (auto& m : all)
      if (m.topic == topic) m.message = messages[i++];
  }
}

/// Every outcome a source reports, by (topic, partition, offset).
struct TopicReported {
  std::mutex mu;
  std::map<std::tuple<std::string, std::int32_t, std::int64_t>, std::vector<Outcome>> by_message;
  std::atomic<std::size_t> count{0};
  void add(const KafkaOutcome& k) {
    std::lock_guard lk(mu);
    by_message[{std::string(k.topic), k.partition, k.offset}].push_back(k.outcome);
    count.fetch_add(1);
  }
};

/// The end offset of every (topic, partition) that got messages.
using EndOffsets = std::map<std::pair<std::string, std::int32_t>, std::int64_t>;

EndOffsets end_offsets(const std::vector<TopicMessage>& all) {
  EndOffsets end;
  for (const auto& m : all) {
    auto& e = end[{m.topic, m.message.partition}];
    e = std::max(e, m.message.offset + 1);
  }
  return end;
}

/// The end offsets of one topic's messages.
EndOffsets end_offsets(const std::string& topic, const std::vector<Message>& trace) {
  EndOffsets end;
  for (const auto& [partition, offset] : end_offsets(trace)) end[{topic, partition}] = offset;
  return end;
}

/// True when the stored offsets of `group` are the end offsets of every (topic, partition) that
/// got messages (a partition without messages: no row, or offset 0).
bool all_stored(TradeStore& store, const std::string& group, const EndOffsets& end) {
  auto rows = store.source_offsets(group);
  if (!rows) return false;
  EndOffsets stored;
  for (const auto& r : rows.value())
    if (r.next_offset != 0 || end.count({r.topic, r.partition}) != 0)
      stored[{r.topic, r.partition}] = r.next_offset;
  return stored == end;
}

/// Waits until `group`'s stored offsets cover every message of `end` and `source` has nothing
/// in flight; fails the test after `timeout`.
void wait_all_stored(TradeStore& store, const std::string& group, const EndOffsets& end,
                     const KafkaSource& source, std::chrono::milliseconds timeout) {
  wait_for([&] { return all_stored(store, group, end) && source.metrics().in_flight == 0; },
           timeout, "the end offsets to be stored");
}

/// The store holds every produced event exactly once (each (trade_id, version) once, the first
/// copy's content), the positions of a sequential run (order does not matter for them: every
/// event is accepted), and in each trade partition the events of each Kafka partition in the
/// order they were produced.
void check_topics_store(TradeStore& store, const std::vector<TopicMessage>& all,
                        const Reference& ref) {
  std::map<std::pair<std::string, std::int64_t>, const TopicMessage*> first;
  for (const auto& m : all)
    if (!m.resend) first.emplace(std::make_pair(m.trade_id, m.version), &m);
  std::set<std::pair<std::string, std::int64_t>> stored;
  std::size_t twice = 0, unknown = 0, wrong_content = 0, out_of_order = 0;
  // Per trade partition, per Kafka partition: the last offset seen in seq order.
  std::map<std::tuple<PartitionKey, std::string, std::int32_t>, std::int64_t> last;
  REQUIRE(store.scan_events([&](const StoredEvent& e) {
    const auto key = std::make_pair(e.event.trade_id, e.event.version);
    if (!stored.insert(key).second) ++twice;
    auto it = first.find(key);
    if (it == first.end()) {
      ++unknown;
      return true;
    }
    const TopicMessage& m = *it->second;
    const auto parsed = parse_event(m.message.value);
    if (!parsed.event || !parsed.event->same_content(e.event)) ++wrong_content;
    auto [pos, fresh] =
        last.try_emplace({e.event.partition, m.topic, m.message.partition}, m.message.offset);
    if (!fresh) {
      if (m.message.offset <= pos->second) ++out_of_order;
      pos->second = m.message.offset;
    }
    return true;
  }));
  CHECK(twice == 0);
  CHECK(unknown == 0);
  CHECK(wrong_content == 0);
  CHECK(out_of_order == 0);
  CHECK(stored.size() == first.size());
  CHECK(store.positions().value() == ref.positions);
  // Both topics fed at least one common trade partition (the point of the test).
  std::map<PartitionKey, std::set<std::string>> topics_of;
  for (const auto& [key, m] : first) {
    auto p = parse_event(m->message.value);
    topics_of[p.event->partition].insert(m->topic);
  }
  std::size_t shared = 0;
  for (const auto& [k, t] : topics_of) shared += t.size() > 1 ? 1 : 0;
  CHECK(shared > 0);
}

/// Two topics over the same 20 trade partitions, 4,000 messages in all.
std::vector<TopicMessage> two_topics_trace(unsigned seed) {
  std::vector<PartitionKey> keys;
  for (int i = 0; i < 20; ++i)
    keys.push_back(PartitionKey{"ACC" + std::to_string(i % 4), i % 2 ? "B_C" : "EQ",
                                "SEC" + std::to_string(i)});
  auto all = make_topic_trace("t1", seed, 2000, keys);
  auto more = make_topic_trace("t2", seed + 1, 2000, keys);
  all.insert(all.end(), more.begin(), more.end());
  return all;
}

/// The sequential reference of all messages (any order gives the same positions here).
Reference topics_reference(const std::vector<TopicMessage>& all) {
  std::vector<Message> flat;
  for (const auto& m : all) flat.push_back(m.message);
  Reference ref = reference_of(flat);
  for (std::size_t i = 0; i < all.size(); ++i)
    REQUIRE(ref.outcomes[i].kind ==
            (all[i].resend ? OutcomeKind::Duplicate : OutcomeKind::Accepted));
  return ref;
}

/// A mock cluster of 3 brokers whose topics t1 and t2 hold two_topics_trace(seed), with the
/// sequential reference and the end offsets.
struct TwoTopics {
  struct Layout {
    int partitions, replication;
  };
  MockCluster cluster{3};
  std::vector<TopicMessage> all;
  Reference ref;
  std::map<std::pair<std::string, std::int32_t>, std::int64_t> end;
  TwoTopics(Layout t1, Layout t2, unsigned seed) {
    cluster.create_topic("t1", t1.partitions, t1.replication);
    cluster.create_topic("t2", t2.partitions, t2.replication);
    all = two_topics_trace(seed);
    produce_topics(cluster.bootstraps(), all);
    ref = topics_reference(all);
    end = end_offsets(all);
  }
};

}  // namespace

// ------------------------------------------------------------------------------------------

TEST_CASE("kafka: one member consumes an adversarial trace exactly like a sequential run") {
  TracedTopic t(3, 6, 2, 11, 2500, 24);
  auto& [cluster, topic, trace, ref, memory] = t;
  cluster.create_topic("outcomes", 3, 1);

  for_each_store([&](const std::string& name, const std::shared_ptr<TradeStore>& store) {
    const std::string group = "g-" + name;
    Reported reported;
    auto o = t.options(group);
    o.results_topic = name == "memory" ? "outcomes" : "";
    o.on_outcome = [&](const KafkaOutcome& k) { reported.add(k); };
    Running run(store, o);
    wait_for([&] { return reported.count.load() >= trace.size(); }, 60s, "every outcome");
    std::this_thread::sleep_for(100ms);
    REQUIRE(run.stop());
    const auto m = run.source().metrics();
    CHECK(m.replayed == 0);
    CHECK(m.failed == 0);
    CHECK(m.messages == trace.size());
    CHECK(reported.count.load() == trace.size());
    reported.check(trace, ref, true);
    check_store(*store, ref, trace, group, topic);
    if (!o.results_topic.empty()) {
      // The results topic: one JSON outcome per message, keyed like it.
      auto results = read_topic(cluster.bootstraps(), "outcomes", 3, trace.size());
      REQUIRE(results.size() == trace.size());
      CHECK(m.results_produced == trace.size());
      std::map<std::pair<int, long long>, std::size_t> index;
      for (std::size_t i = 0; i < trace.size(); ++i)
        index[{trace[i].partition, trace[i].offset}] = i;
      std::set<std::pair<int, long long>> seen;
      for (const auto& [key, value] : results) {
        auto j = nlohmann::json::parse(value);
        const int p = j["partition"].get<int>();
        const long long off = j["offset"].get<long long>();
        CHECK(seen.insert({p, off}).second);
        REQUIRE(index.count({p, off}) == 1);
        const auto& input_key = trace[index[{p, off}]].key;
        CHECK(key.value_or("") == input_key.value_or(""));  // keyed like the input
        CHECK(j["topic"] == topic);
        const auto& want = reported.by_offset[{p, off}].at(0);
        CHECK(j["outcome"] == std::string(to_string(want.kind)));
        if (want.kind == OutcomeKind::Accepted) CHECK(j["seq"] == want.seq);
      }
      CHECK(seen.size() == trace.size());
    }
  });
}

TEST_CASE("kafka: two members hand partitions over cleanly, nothing is decided twice") {
  ReportingMembers t(3, 6, 1, 23, 3000, 30, "g2");  // the handovers happen mid-run
  auto& [cluster, topic, trace, ref, memory] = static_cast<TracedTopic&>(t);
  auto a = std::make_unique<Running>(t.store, t.o);
  wait_for([&] { return t.reported.count.load() >= trace.size() / 5; }, 30s, "member A to start");
  Running b(t.store, t.o);
  // B joins: the group rebalances, A drains and hands over half of the partitions.
  wait_for([&] { return b.source().metrics().partitions > 0; }, 30s, "member B's assignment");
  wait_for([&] { return outcomes_of(b.source().metrics()) > 100; }, 30s, "member B to consume");
  // A leaves (a clean stop): B takes everything over.
  REQUIRE(a->stop());
  const auto ma = a->source().metrics();
  wait_for([&] { return t.reported.count.load() >= trace.size(); }, 60s, "every outcome");
  REQUIRE(b.stop());
  const auto mb = b.source().metrics();
  CHECK(ma.assignments >= 6);
  CHECK(ma.revocations >= 6);
  CHECK(mb.assignments >= 6);
  CHECK(ma.accepted > 0);
  CHECK(mb.accepted > 0);
  // Clean handovers store the final offsets first: no message is read twice.
  CHECK(ma.replayed + mb.replayed == 0);
  CHECK(t.reported.count.load() == trace.size());
  t.reported.check(trace, ref, false);
  check_store(*memory, ref, trace, "g2", topic);
}

TEST_CASE("kafka: a member that dies mid-run is replaced; the re-read tail changes nothing") {
  TracedTopic t(3, 4, 1, 37, 3000, 20);
  auto& [cluster, topic, trace, ref, memory] = t;
  auto dying = slowed(memory, 1);
  // It dies when the first NEW past the middle of the trace that a sequential run accepts lands:
  // with at most 512 messages in flight, a third of the trace is then still to be read, however
  // the events are batched (a count of commits depends on that: 40 commits once covered the
  // whole trace, and the member never died).
  for (std::size_t i = trace.size() / 2; i < trace.size() && dying->crash_after_trade.empty();
       ++i) {
    const ParsedEvent p = parse_event(trace[i].value);
    if (p.event && p.event->type == TradeType::New &&
        ref.outcomes[i].kind == OutcomeKind::Accepted)
      dying->crash_after_trade = p.event->trade_id;
  }
  REQUIRE_FALSE(dying->crash_after_trade.empty());
  auto o = t.options("g3");
  o.pipeline.retry.budget = 300ms;  // the dead member gives up sooner
  o.pipeline.max_batch = 32;
  o.max_in_flight = 512;
  {
    // The first member dies: from that commit on nothing of it reaches the store (not its
    // offsets either); its events have no outcome and it stops with an error.
    Running a(dying, o);
    auto r = a.join(60s);
    CHECK(!r);
    CHECK(a.source().metrics().failed > 0);
    CHECK(!a.source().last_error().empty());
  }
  REQUIRE(dying->down.load());
  // A new member resumes at the stored offsets and re-reads what the dead one had decided.
  Running b(memory, o);
  wait_all_stored(*memory, "g3", end_offsets(topic, trace), b.source(), 60s);
  REQUIRE(b.stop());
  const auto mb = b.source().metrics();
  MESSAGE("re-read after the crash: replayed " << mb.replayed << ", duplicate " << mb.duplicate);
  CHECK(mb.replayed + mb.duplicate > 0);
  check_store(*memory, ref, trace, "g3", topic);
}

TEST_CASE("kafka: a rejection decided before a crash is not decided again on the re-read") {
  // One Kafka partition: [0] NEW X in partition K2, [1] AMEND T v2 in K1 (REJECTED: unknown
  // trade), [2] NEW T v1 in K1 (ACCEPTED). K2's commit is held, so K1's commit stores offset 0
  // with NEW T; then the member dies. A sequential re-read from offset 0 would accept the AMEND
  // (T now exists); the source mark stored with NEW T says offsets <= 2 of K1 are decided.
  MockCluster cluster(1);
  const std::string topic = "trades";
  cluster.create_topic(topic, 1, 1);
  const PartitionKey k1{"ACC", "B", "K1"};
  // K2 on the other shard of a 2-thread pipeline, so that holding it does not hold K1.
  PartitionKey k2{"ACC", "B", "K2"};
  for (int i = 0; PartitionKeyHash{}(k2) % 2 == PartitionKeyHash{}(k1) % 2; ++i)
    k2.security = "K2-" + std::to_string(i);
  std::vector<Message> trace = {
      {k2.encode(), event_json("X", 1, "NEW", k2, "BUY", "5", "1")},
      {k1.encode(), event_json("T", 2, "AMEND", k1, "SELL", "9", "9")},
      {k1.encode(), event_json("T", 1, "NEW", k1, "BUY", "1", "2")},
  };
  produce(cluster.bootstraps(), topic, trace);
  const Reference ref = reference_of(trace);
  REQUIRE(ref.outcomes[1].kind == OutcomeKind::Rejected);

  // Every store: the mark is stored in the store's source marks, never as a trade.
  for_each_store([&](const std::string&, const std::shared_ptr<TradeStore>& store) {
    auto dying = std::make_shared<ControlledStore>(store);
    dying->hold = k2;
    dying->crash_after_trade = "T";
    auto o = source_options(cluster.bootstraps(), topic, "g4");
    o.pipeline.retry.budget = 300ms;  // the dead member gives up sooner
    {
      Running a(dying, o);
      CHECK(!a.join(60s));
    }
    auto offsets = store->source_offsets("g4").value();
    REQUIRE(offsets.size() == 1);
    CHECK(offsets[0].next_offset == 0);               // the dead member's commit covered nothing
    REQUIRE(store->positions().value().size() == 1);  // but NEW T is stored
    Running b(store, o);
    wait_for([&] { return outcomes_of(b.source().metrics()) >= 3; }, 30s, "the re-read");
    REQUIRE(b.stop());
    const auto mb = b.source().metrics();
    CHECK(mb.replayed == 2);   // the AMEND and NEW T: at or below K1's mark, not decided again
    CHECK(mb.duplicate == 0);  // (NEW T is not reported again as DUPLICATE)
    CHECK(mb.accepted == 1);   // NEW X
    check_store(*store, ref, trace, "g4", topic);
    const auto st = store->load_partitions(std::vector<PartitionKey>{k1}).value().at(0);
    CHECK(st.source_marks.size() == 1);  // K1's mark: offset 2
    CHECK(st.source_marks.begin()->second == 2);
    CHECK(st.trades.size() == 1);  // T only
  });
}

TEST_CASE("kafka: a member whose partition is claimed by another cannot commit it any more") {
  TracedTopic t(1, 2, 1, 41, 600, 8);
  auto& [cluster, topic, first, ref, memory] = t;
  auto store = slowed(memory, 3);
  auto o = small_windows(t.options("g5"));
  o.pipeline.max_batch = 8;
  o.pipeline.retry.budget = 500ms;
  Running a(store, o);
  wait_for([&] { return outcomes_of(a.source().metrics()) > 50; }, 30s, "member A to start");
  // Another member (a zombie's successor) claims partition 0 behind A's back.
  REQUIRE(memory->claim_source("g5", topic, 0));
  std::set<PartitionKey> of_p0;
  for (const auto& m : first) {
    auto p = parse_event(m.value);
    if (m.partition == 0 && p.event && m.key == kafka_message_key(p.event->partition))
      of_p0.insert(p.event->partition);
  }
  auto snapshot = [&] {
    std::map<PartitionKey, std::uint64_t> seqs;
    const auto rows = memory->positions().value();
    for (const auto& row : rows)
      if (of_p0.count(row.partition)) seqs[row.partition] = row.seq;
    return seqs;
  };
  const auto at_claim = snapshot();
  wait_for([&] { return a.source().metrics().fenced >= 1; }, 30s, "A to notice the claim");
  // Partition 1 goes on; partition 0 gets nothing more from A.
  auto more = make_trace(43, 300, 8);
  produce(cluster.bootstraps(), topic, more);
  std::this_thread::sleep_for(1500ms);
  CHECK(snapshot() == at_claim);
  CHECK(a.stop());
  CHECK(snapshot() == at_claim);
}

TEST_CASE("kafka: broker failures and leader moves are survived") {
  ReportingMembers t(3, 6, 3, 59, 3000, 24, "g6");  // the failures happen mid-run
  auto& [cluster, topic, trace, ref, memory] = static_cast<TracedTopic&>(t);
  t.o.consumer_config.emplace_back("session.timeout.ms", "6000");
  Running a(t.store, t.o);
  wait_for([&] { return t.reported.count.load() > 200; }, 30s, "consumption to start");
  auto* mc = cluster.get();
  // Fetch errors that make the consumer refresh its leaders and retry.
  rd_kafka_mock_push_request_errors(mc, api_fetch, 4, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
                                    RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
  rd_kafka_mock_push_request_errors(mc, api_offset_commit, 2,
                                    RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                    RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE);
  rd_kafka_mock_push_request_errors(mc, api_heartbeat, 1, RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
  std::this_thread::sleep_for(300ms);
  // Every broker down for a moment, in turn; then the leaders move.
  for (int b = 1; b <= 3; ++b) {
    rd_kafka_mock_broker_set_down(mc, b);
    std::this_thread::sleep_for(400ms);
    rd_kafka_mock_broker_set_up(mc, b);
    std::this_thread::sleep_for(200ms);
  }
  for (int p = 0; p < 6; ++p) rd_kafka_mock_partition_set_leader(mc, topic.c_str(), p, 1 + p % 3);
  {
    // The failures happened while there was work left.
    std::lock_guard lk(t.reported.mu);
    CHECK(t.reported.by_offset.size() < trace.size() * 3 / 4);
  }
  wait_for([&] {
    std::lock_guard lk(t.reported.mu);
    return t.reported.by_offset.size() >= trace.size();
  }, 60s, "every message");
  std::this_thread::sleep_for(200ms);
  REQUIRE(a.stop());
  const auto m = a.source().metrics();
  CHECK(m.failed == 0);
  MESSAGE("after broker failures: " << m.assignments << " assignments, " << m.replayed
                                    << " replayed");
  check_store(*memory, ref, trace, "g6", topic);
}

TEST_CASE("kafka: two topics feed the same trade partitions; every event is applied once") {
  // The order between two Kafka partitions is not defined, so any interleaving is valid: no
  // valid event may be refused because its trade partition is in flight from the other topic.
  TwoTopics t({4, 2}, {3, 1}, 71);
  auto& [cluster, all, ref, end] = t;

  for_each_store([&](const std::string& name, const std::shared_ptr<TradeStore>& store) {
    const std::string group = "gt-" + name;
    TopicReported reported;
    auto o = source_options(cluster.bootstraps(), "t1", group);
    o.topics = {"t1", "t2"};
    o.on_outcome = [&](const KafkaOutcome& k) { reported.add(k); };
    Running run(store, o);
    wait_for([&] { return reported.count.load() >= all.size(); }, 120s, "every outcome");
    wait_for([&] { return all_stored(*store, group, end); }, 30s, "the end offsets");
    REQUIRE(run.stop());
    const auto m = run.source().metrics();
    CHECK(m.messages == all.size());
    CHECK(m.rejected == 0);
    CHECK(m.invalid == 0);
    CHECK(m.failed == 0);
    CHECK(m.replayed == 0);
    CHECK(reported.count.load() == all.size());
    std::size_t wrong = 0;
    for (const auto& msg : all) {
      const auto& got = reported.by_message[{msg.topic, msg.message.partition, msg.message.offset}];
      const auto want = msg.resend ? OutcomeKind::Duplicate : OutcomeKind::Accepted;
      if (got.size() != 1 || got[0].kind != want) {
        if (++wrong <= 5)
          MESSAGE(msg.topic << "[" << msg.message.partition << "]@" << msg.message.offset << ": "
                            << got.size() << " outcomes, first "
                            << (got.empty()
                                    ? std::string("-")
                                    : std::string(to_string(got[0].kind)) + " " + got[0].reason));
      }
    }
    CHECK(wrong == 0);
    check_topics_store(*store, all, ref);
    CHECK(all_stored(*store, group, end));
  });
}

TEST_CASE("kafka: two topics, several members, one dies and one leaves: applied exactly once") {
  TwoTopics t({4, 1}, {4, 1}, 83);
  auto& [cluster, all, ref, end] = t;
  auto memory = make_memory_store();
  TopicReported reported;
  auto o = small_windows(source_options(cluster.bootstraps(), "t1", "gm"));
  o.topics = {"t1", "t2"};
  o.pipeline.retry.budget = 1000ms;
  o.on_outcome = [&](const KafkaOutcome& k) { reported.add(k); };
  // Each member has its own view of the one store: A's can crash (A dies: from then on nothing
  // of it lands, not even its offsets; its events end without an outcome).
  // Slow enough that the rebalances happen mid-run.
  auto sa = slowed(memory, 10), sb = slowed(memory, 10), sc = slowed(memory, 10);
  auto a = std::make_unique<Running>(sa, o);
  auto b = std::make_unique<Running>(sb, o);
  wait_for([&] { return reported.count.load() >= all.size() / 8; }, 60s, "A and B to start");
  Running c(sc, o);
  wait_for([&] { return c.source().metrics().partitions > 0; }, 30s, "member C's assignment");
  wait_for([&] { return outcomes_of(a->source().metrics()) > 100; }, 30s, "member A to go on");
  {
    std::lock_guard lk(reported.mu);
    CHECK(reported.by_message.size() < all.size() * 3 / 4);  // work left for the handovers
  }
  // A dies: from now on nothing of it lands (its in-flight events end without an outcome), then
  // it goes away (its final offsets cannot be stored either).
  sa->crash();
  (void)a->stop();
  const auto ma = a->source().metrics();
  a.reset();
  // B leaves cleanly a little later.
  wait_for([&] { return outcomes_of(c.source().metrics()) > 100; }, 30s, "C to go on");
  REQUIRE(b->stop());
  const auto mb = b->source().metrics();
  b.reset();
  wait_all_stored(*memory, "gm", end, c.source(), 120s);
  REQUIRE(c.stop());
  const auto mc = c.source().metrics();
  MESSAGE("A: accepted " << ma.accepted << ", failed " << ma.failed << "; B: accepted "
                         << mb.accepted << "; C: accepted " << mc.accepted << ", duplicate "
                         << mc.duplicate << ", replayed " << mc.replayed);
  CHECK(ma.accepted > 0);
  CHECK(mb.accepted > 0);
  CHECK(mc.accepted > 0);
  CHECK(ma.invalid + mb.invalid + mc.invalid == 0);
  CHECK(mb.failed == 0);
  CHECK(mc.failed == 0);
  // Nothing valid was rejected, and every message has an outcome (a re-read may repeat one:
  // an event ACCEPTED before A died comes back DUPLICATE).
  std::size_t missing = 0, rejected = 0;
  {
    std::lock_guard lk(reported.mu);
    for (const auto& msg : all) {
      auto it = reported.by_message.find({msg.topic, msg.message.partition, msg.message.offset});
      if (it == reported.by_message.end()) {
        ++missing;
        continue;
      }
      for (const auto& out : it->second) {
        if (out.kind == OutcomeKind::Rejected || out.kind == OutcomeKind::Stale) {
          if (++rejected <= 5)
            MESSAGE(msg.topic << "[" << msg.message.partition << "]@" << msg.message.offset
                              << ": " << to_string(out.kind) << " " << out.reason);
        }
      }
    }
  }
  CHECK(missing == 0);
  CHECK(rejected == 0);
  check_topics_store(*memory, all, ref);
  CHECK(all_stored(*memory, "gm", end));
}


TEST_CASE("kafka: one pipeline fed by a source and by direct submissions at once decides every "
          "event once") {
  // The host owns the pipeline; a Kafka member and a submitter without a source (an HTTP
  // gateway, say) feed the same trade partitions at the same time.
  MockCluster cluster(1);
  cluster.create_topic("t1", 3, 1);
  std::vector<PartitionKey> keys;
  for (int i = 0; i < 12; ++i)
    keys.push_back(PartitionKey{"ACC" + std::to_string(i % 3), "EQ", "SEC" + std::to_string(i)});
  auto kafka = make_topic_trace("t1", 97, 1500, keys);
  produce_topics(cluster.bootstraps(), kafka);
  auto direct = make_topic_trace("direct", 98, 1500, keys);
  for (std::size_t i = 0; i < direct.size(); ++i) {
    direct[i].message.partition = 0;  // one stream, in submission order
    direct[i].message.offset = static_cast<std::int64_t>(i);
  }
  std::vector<TopicMessage> all = kafka;
  all.insert(all.end(), direct.begin(), direct.end());
  const Reference ref = topics_reference(all);
  const EndOffsets end = end_offsets(kafka);

  for_each_store([&](const std::string& name, const std::shared_ptr<TradeStore>& inner) {
    const std::string group = "gs-" + name;
    auto store = slowed(inner, 2);  // slow enough that the two feeds overlap
    auto o = source_options(cluster.bootstraps(), "t1", group);
    o.pipeline.max_batch = 16;
    TopicReported reported;
    o.on_outcome = [&](const KafkaOutcome& k) { reported.add(k); };
    auto pipeline = member_pipeline(store, o);
    auto source = member_source(*pipeline, store, o);
    REQUIRE(source->start());
    wait_for([&] { return reported.count.load() >= 50; }, 30s, "the source to consume");
    // The source must not be done before every direct event is submitted, however fast this
    // machine is: the commits of one partition (a twelfth of the topic, not consumed yet) wait
    // until then.
    store->hold_partition(keys[0]);
    std::vector<std::future<Outcome>> outcomes;
    for (const auto& m : direct)
      outcomes.push_back(
          pipeline->async_submit(*parse_event(m.message.value).event, boost::asio::use_future));
    CHECK(reported.count.load() < kafka.size());  // the source goes on while they are decided
    store->release();
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < direct.size(); ++i) {
      const Outcome got = outcomes[i].get();
      if (got.kind != (direct[i].resend ? OutcomeKind::Duplicate : OutcomeKind::Accepted) &&
          ++wrong <= 5)
        MESSAGE("direct " << i << ": " << to_string(got.kind) << " " << got.reason);
    }
    CHECK(wrong == 0);
    wait_all_stored(*inner, group, end, *source, 120s);
    source->stop();
    REQUIRE(source->wait());
    // Every message has one outcome, as a sequential run answers it.
    const auto m = source->metrics();
    CHECK(m.failed == 0);
    CHECK(m.replayed == 0);
    CHECK(reported.count.load() == kafka.size());
    for (const auto& msg : kafka) {
      const auto& got = reported.by_message[{msg.topic, msg.message.partition, msg.message.offset}];
      REQUIRE(got.size() == 1);
      CHECK(got[0].kind == (msg.resend ? OutcomeKind::Duplicate : OutcomeKind::Accepted));
    }
    // Each event stored once, each feed in its order, the positions of a sequential run.
    check_topics_store(*inner, all, ref);
    CHECK(all_stored(*inner, group, end));
    const PipelineMetrics pm = pipeline->metrics();
    CHECK(pm.failed == 0);
    CHECK(pm.rejected == 0);
    source.reset();
    pipeline->stop();
  });
}


// ---- the lifecycle -------------------------------------------------------------------------

TEST_CASE("kafka: start returns at once; stop drains; wait and on_finished give the result") {
  SUBCASE("a bad configuration is the result of wait and of on_finished") {
    MemberOptions o = source_options("127.0.0.1:1", "trades", "g");
    o.topics.clear();
    auto store = make_memory_store();
    auto pipeline = member_pipeline(store, o);
    KafkaSource source(*pipeline, store, o);
    std::atomic<int> calls{0};
    boost::system::error_code seen;
    REQUIRE(source.start([&](boost::system::error_code ec) {
      seen = ec;
      ++calls;
    }));
    CHECK(source.start().error() == kafka_errc::bad_config);  // once per source
    const auto r = source.wait();
    REQUIRE(!r);
    CHECK(r.error() == kafka_errc::bad_config);
    CHECK(source.finished());
    CHECK(calls.load() == 1);
    CHECK(seen == kafka_errc::bad_config);
  }
  SUBCASE("a member consumes on its own thread until stop, then drains and stores its offsets") {
    TracedTopic t(1, 4, 1, 11, 2000, 40);
    auto store = make_memory_store();
    auto pipeline = member_pipeline(store, t.options("g"));
    KafkaSource source(*pipeline, store, t.options("g"));
    std::atomic<int> calls{0};
    REQUIRE(source.start([&](boost::system::error_code ec) {
      CHECK(!ec);
      ++calls;
    }));
    CHECK(!source.finished());
    wait_for([&] { return outcomes_of(source.metrics()) >= 50; }, 30s, "the member to consume");
    CHECK(!source.finished());
    source.stop();
    REQUIRE(source.wait());
    CHECK(source.finished());
    CHECK(calls.load() == 1);
    const auto m = source.metrics();
    CHECK(m.in_flight == 0);
    CHECK(m.partitions == 0);
    // Every message decided is covered by the stored offsets, and nothing beyond.
    auto rows = store->source_offsets("g");
    REQUIRE(rows);
    std::int64_t stored = 0;
    for (const auto& r : rows.value()) stored += r.next_offset;
    CHECK(static_cast<std::uint64_t>(stored) == outcomes_of(m));
    // The pipeline is the host's: it goes on after the source stopped.
    CHECK(pipeline->submit(tctest::ev("AFTER", 1, TradeType::New, PartitionKey{"A", "B", "C"}))
              .value()
              .kind == OutcomeKind::Accepted);
  }
}

// ---- validate once (issue #12) ----------------------------------------------------------------

TEST_CASE("kafka: every kind of invalid message gets parse_event's outcome; each event validated "
          "once") {
  // The source needs `validate`'s verdict before it submits (an invalid event is rejected by the
  // source itself, counted `invalid`, its key checked only after it, and consumed without the
  // pipeline), so it keeps `parse_event` and submits through the pipeline's internal entry that
  // skips the second `validate` (detail/validate_once.hpp). Each outcome must be exactly the one
  // `parse_event` + the key checks + the pipeline's public path give, and each event that gets
  // as far as `validate` validated once, on the polling thread (where `parse_event` and, before
  // issue #12, the pipeline's `validate` in `async_submit` both ran).
  MockCluster cluster(1);
  const std::string topic = "validate-once";
  cluster.create_topic(topic, 1);
  const auto cases = tctest::validation_cases();
  std::vector<Message> messages;
  std::uint64_t decodable = 0;
  for (const auto& c : cases) {
    const ParsedEvent d = decode_event(c.text);
    if (d.event) ++decodable;
    // The right key when the value decodes; also, for the first events, none or a wrong one
    // (an invalid event gets validate's reason whatever its key).
    const std::string key = d.event ? kafka_message_key(d.event->partition) : "A:B:C";
    messages.push_back(Message{key, c.text});
    if (d.event && messages.size() % 3 == 0) {
      messages.push_back(Message{std::nullopt, c.text});
      messages.push_back(Message{"1:X1:Y1:Z", c.text});
      decodable += 2;
    }
  }
  messages.push_back(Message{"A:B:C", "{}"});  // the last: rejected on the polling thread
  produce(cluster.bootstraps(), topic, messages);
  const std::int64_t last = messages.back().offset;

  // The reference: parse_event, then the source's key checks, then a pipeline's public path.
  std::vector<Outcome> want;
  std::uint64_t want_invalid = 0;
  {
    auto store = make_memory_store();
    Pipeline ref(store, make_local_lock(), make_position_processor(), PipelineOptions{});
    for (const auto& m : messages) {
      ParsedEvent p = parse_event(m.value);
      if (!p.event) {
        want.push_back(Outcome::rejected(p.reason));
      } else if (!m.key) {
        want.push_back(Outcome::rejected(
            "invalid: the message has no key (it must be the event's partition, " +
            kafka_message_key(p.event->partition) + ")"));
      } else if (*m.key != kafka_message_key(p.event->partition)) {
        want.push_back(Outcome::rejected("invalid: the message key is not the event's partition "
                                         "(expected " +
                                         kafka_message_key(p.event->partition) + ")"));
      } else {
        want.push_back(ref.submit(*p.event).value());
        continue;
      }
      ++want_invalid;
    }
  }

  std::mutex mu;
  std::map<std::int64_t, KafkaOutcome> got;  // by offset; topic and key not kept
  std::optional<std::uint64_t> validations;  // on the polling thread, at the last message
  MemberOptions o = source_options(cluster.bootstraps(), topic, "g");
  o.on_outcome = [&](const KafkaOutcome& k) {
    std::lock_guard lk(mu);
    if (k.offset == last) validations = detail::validations_on_this_thread();
    KafkaOutcome copy = k;
    copy.topic = {};
    copy.key = {};
    CHECK(got.emplace(k.offset, std::move(copy)).second);
  };
  auto store = make_memory_store();
  {
    Running member(store, o);
    wait_for(
        [&] {
          std::lock_guard lk(mu);
          return got.size() == messages.size();
        },
        30s, "every outcome");
    REQUIRE(member.stop());
    CHECK(member.source().metrics().invalid == want_invalid);
  }
  std::lock_guard lk(mu);
  for (std::size_t i = 0; i < messages.size(); ++i) {
    INFO("message " << i << " key " << messages[i].key.value_or("(none)") << ": "
                    << messages[i].value);
    const ParsedEvent p = parse_event(messages[i].value);
    const KafkaOutcome& k = got.at(messages[i].offset);
    CHECK(k.outcome == want[i]);
    CHECK(k.trade_id == p.echo_trade_id);
    CHECK(k.version == p.echo_version);
  }
  REQUIRE(validations.has_value());
  // The polling thread validated nothing else: one `validate` per event that decoded.
  CHECK(*validations == decodable);
}

// ---- the results producer -------------------------------------------------------------------

namespace {

KafkaOutcome results_outcome(std::int64_t offset) {
  KafkaOutcome k;
  k.topic = "trades";
  k.partition = 0;
  k.offset = offset;
  k.key = "4:ACC17:EQ-FLOW4:AAPL";
  k.trade_id = "T" + std::to_string(offset);
  k.version = 1;
  k.outcome = Outcome::accepted(offset + 1);
  return k;
}

rd_kafka_conf_t* results_conf(const std::string& brokers,
                              std::vector<std::pair<std::string, std::string>> extra = {}) {
  char err[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  extra.emplace_back("bootstrap.servers", brokers);
  extra.emplace_back("log_level", "2");
  for (const auto& [k, v] : extra)
    REQUIRE(rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) == RD_KAFKA_CONF_OK);
  return conf;
}

}  // namespace

TEST_CASE("kafka: the results producer's queue is bounded; a message past it is counted failed") {
  MockCluster cluster(1);
  cluster.create_topic("outcomes", 1);
  std::atomic<int> room_calls{0};
  kafka_detail::ResultsProducer producer("outcomes", quiet_logger(), 3, [&] { ++room_calls; });
  // Not started: nothing leaves the queue.
  std::vector<bool> pushed;
  for (std::int64_t i = 0; i < 5; ++i) pushed.push_back(producer.push(results_outcome(i)));
  CHECK(pushed == std::vector<bool>{true, true, true, false, false});
  CHECK(producer.pending() == 3);
  CHECK(producer.failed() == 2);
  std::string error;
  REQUIRE(producer.start(results_conf(cluster.bootstraps()), error));
  producer.stop();
  CHECK(producer.pending() == 0);
  CHECK(producer.produced() == 3);
  CHECK(producer.failed() == 2);
  CHECK(room_calls.load() >= 1);
}

TEST_CASE("kafka: the results producer never waits in push, even with its broker down") {
  // Nothing listens on port 1; librdkafka's own queue holds one message, which is never
  // delivered: the producer thread waits for room, push does not.
  kafka_detail::ResultsProducer producer("outcomes", quiet_logger(), 4, {},
                                         std::chrono::milliseconds(300));
  std::string error;
  REQUIRE(producer.start(results_conf("127.0.0.1:1", {{"queue.buffering.max.messages", "1"},
                                                      {"message.timeout.ms", "60000"}}),
                         error));
  int accepted = 0;
  auto slowest = std::chrono::steady_clock::duration::zero();
  for (std::int64_t i = 0; i < 40; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    if (producer.push(results_outcome(i))) ++accepted;
    slowest = std::max(slowest, std::chrono::steady_clock::now() - t0);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  CHECK(slowest < std::chrono::milliseconds(200));
  // One message in librdkafka's queue, at most 4 waiting for room: the rest were dropped.
  CHECK(accepted <= 5);
  CHECK(producer.failed() >= static_cast<std::uint64_t>(40 - accepted));
  const auto t0 = std::chrono::steady_clock::now();
  producer.stop();  // gives up after the patience: counts every undelivered message
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CHECK(producer.produced() == 0);
  CHECK(producer.failed() == 40);
}

#endif  // __SANITIZE_THREAD__
