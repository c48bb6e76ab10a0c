#pragma once
/// \file kafka_source.hpp
/// Kafka ingress: a consumer-group member that feeds trade events from Kafka topics into a
/// Pipeline with an exactly-once effect. No librdkafka type appears here.
///
/// Keying contract for producers: the message key is `kafka_message_key(partition)` (the
/// trade partition's `PartitionKey::encode()`, e.g. "4:ACC17:EQ-FLOW4:AAPL"), the value one
/// event JSON object (spec section 1). With a key-hashing partitioner (librdkafka's and Java's
/// defaults) one trade partition then always lands in one Kafka partition of a topic, so its
/// events of that topic are consumed in the order they were produced. Do not change a topic's
/// partition count while consumers that write the same store run.
///
/// Several topics (or several Kafka partitions) may carry events of the same trade partition:
/// events of one Kafka partition are applied in their order; events of different Kafka
/// partitions interleave in whatever order they are consumed (Kafka defines no order between
/// partitions, so any interleaving is a valid order), and every event is decided exactly once.
///
/// Exactly-once effect: the consumed position of each Kafka partition lives in the TradeStore
/// (`TradeStore::source_offsets`, consumer = the group id), written in the same transaction as
/// the events it covers (the source is the `SourceHook` of its events); an assignment resumes
/// there, never at Kafka's committed offset. Correctness rests on the store's fences (the
/// pipeline's claim tokens, the claim epoch of each Kafka partition), not on the pipeline's
/// lock. See the README ("Kafka ingress") for the whole argument.

#include <tradecapture/error.hpp>
#include <tradecapture/metrics.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/trade_store.hpp>
#include <tradecapture/types.hpp>

#include <spdlog/fwd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tradecapture {

/// Errors of the Kafka source (category "tradecapture.kafka").
enum class kafka_errc : int {
  bad_config = 1,    ///< librdkafka refused a setting, or a required option is missing
  client_error,      ///< librdkafka could not create a client or subscribe
  fatal_error,       ///< librdkafka reported a fatal consumer or producer error
  revoke_timeout,    ///< in-flight events of a revoked partition did not finish in time
};

/// The error category of the Kafka source.
const boost::system::error_category& kafka_category() noexcept;

/// Makes an error code from a `kafka_errc` value (found by ADL).
inline boost::system::error_code make_error_code(kafka_errc e) noexcept {
  return {static_cast<int>(e), kafka_category()};
}

/// The Kafka message key of events of `partition`: `partition.encode()`.
std::string kafka_message_key(const PartitionKey& partition);

/// One outcome as the source reports it (see `KafkaSourceOptions::on_outcome`).
struct KafkaOutcome {
  std::string_view topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string_view key;                     ///< the message key (empty when it had none)
  std::optional<std::string> trade_id;      ///< echoed when the value had a string trade_id
  std::optional<std::int64_t> version;      ///< echoed when the value had an integer version
  Outcome outcome;
  std::int64_t timestamp_ms = -1;           ///< the message timestamp, -1 when it had none
};

/// Configuration of a KafkaSource.
struct KafkaSourceOptions {
  std::string brokers;              ///< bootstrap servers, "host:port[,host:port...]"
  std::vector<std::string> topics;  ///< the input topics (at least one)
  std::string group;                ///< the consumer group; also names the stored offsets
  /// Where one outcome JSON per message goes (keyed like the input): the fields of a replay
  /// `--outcomes` line, with topic, partition and offset instead of line. Empty: none.
  std::string results_topic;
  /// Extra librdkafka properties of the consumer (session.timeout.ms, security settings...).
  /// The source sets enable.auto.commit=false itself; it must not be overridden.
  std::vector<std::pair<std::string, std::string>> consumer_config;
  /// Extra librdkafka properties of the results producer.
  std::vector<std::pair<std::string, std::string>> producer_config;
  /// Messages handed to the pipeline and not completed yet, plus outcome messages waiting for
  /// the results topic, at most: the poll loop waits for room (librdkafka's own prefetch is
  /// bounded by queued.max.messages.kbytes). It also waits while the pipeline itself is full
  /// (`Pipeline::max_in_flight`, shared with the pipeline's other submitters). The results
  /// producer runs on its own thread; reporting an outcome never waits for Kafka.
  std::size_t max_in_flight = 65536;
  /// How often completions that no event commit covered (rejects, duplicates, stale events)
  /// are stored as offsets-only commits.
  std::chrono::milliseconds offsets_interval{200};
  /// How long a revoke waits for the in-flight events of the revoked partitions before it
  /// abandons them (their commits are then refused; the next owner decides them).
  std::chrono::milliseconds revoke_timeout{30000};
  /// How often a progress line is logged at info level (0: never).
  std::chrono::milliseconds progress_interval{10000};
  /// Retries of the source's own store calls (claims, offsets-only commits) on the polling
  /// thread; the pipeline's are its own (`PipelineOptions::retry`).
  RetryPolicy retry;
  /// Where the source logs (librdkafka's log lines too); null means spdlog's default logger.
  std::shared_ptr<spdlog::logger> logger;
  /// Called once per reported outcome, on a pipeline or the polling thread; must not block.
  std::function<void(const KafkaOutcome&)> on_outcome;
};

/// Counters of a KafkaSource.
struct KafkaSourceMetrics {
  std::uint64_t messages = 0;      ///< messages received
  std::uint64_t accepted = 0;      ///< outcomes reported, by kind
  std::uint64_t duplicate = 0;
  std::uint64_t stale = 0;
  std::uint64_t rejected = 0;      ///< all rejections, `invalid` included
  std::uint64_t invalid = 0;       ///< rejected by the source itself (not JSON, bad key, ...)
  std::uint64_t replayed = 0;      ///< re-read after a restart and found decided: not reported
  std::uint64_t failed = 0;        ///< events without an outcome (store failure, abandoned)
  std::uint64_t offset_commits = 0;          ///< offsets-only store commits
  std::uint64_t offset_commit_failures = 0;  ///< offsets-only store commits that failed
  std::uint64_t fenced = 0;        ///< partitions given up because another member claimed them
  std::uint64_t assignments = 0;   ///< partitions assigned (claims), cumulative
  std::uint64_t revocations = 0;   ///< partitions revoked or lost, cumulative
  std::uint64_t partitions = 0;    ///< partitions assigned now
  std::uint64_t in_flight = 0;     ///< messages in the pipeline now
  std::uint64_t lag = 0;           ///< messages between the consumed positions and the high
                                   ///< watermarks of the assigned partitions (as last fetched)
  std::uint64_t results_produced = 0;  ///< outcome messages delivered to the results topic
  std::uint64_t results_failed = 0;    ///< outcome messages that could not be delivered
                                       ///< (refused, undelivered, or given up at shutdown)
  /// Message timestamp (producer CreateTime, milliseconds) to durable outcome, microseconds.
  Histogram::Snapshot end_to_end_us;
};

/// A consumer-group member that feeds a Pipeline the host owns (and that other ingresses may
/// share: HTTP, a file, another source) from Kafka.
///
/// `start` subscribes and consumes on a thread of the source's own until `stop`, then stops
/// fetching, lets every event it submitted reach its durable outcome, stores the final offsets
/// and leaves the group; `wait` returns the result. The pipeline goes on: the host stops it once
/// every ingress has stopped (a pipeline stopped under a running source refuses its events,
/// which ends the run with that error). `run` is `start` then `wait`. Malformed messages (not
/// JSON, not a valid event, no key, a key that is not the event's partition) are REJECTED with
/// an "invalid: ..." reason, counted, reported (results topic, `on_outcome`, and a warning when
/// there is no results topic) and consumed.
///
/// The source submits its events with `SubmitOptions::source` (it is their `SourceHook`): the
/// pipeline asks it about each event, stores its Kafka partitions' marks with the events and
/// lets it add its offsets to each commit. The pipeline's `on_overload` should be
/// `OverloadPolicy::wait` (the default): the source waits for room before it submits, but under
/// `fail_fast` an event refused by a race for the last slots is an event without an outcome,
/// which ends the run (a restart resumes from the stored offsets).
///
/// Thread-safety: `start` (or `run`) once; `wait` from one thread at a time; `stop`, `finished`,
/// `metrics` and `last_error` from any thread (`stop` also from a signal handler). Destruction
/// stops the source and waits for it.
class KafkaSource {
 public:
  /// Sets the source up; nothing connects before `start`. `store` is the one `pipeline` commits
  /// to (or a wrapper of it): the source claims its Kafka partitions there and stores the offsets
  /// of outcomes that commit nothing. `pipeline` must outlive the source.
  KafkaSource(Pipeline& pipeline, std::shared_ptr<TradeStore> store, KafkaSourceOptions options);
  ~KafkaSource();
  KafkaSource(const KafkaSource&) = delete;
  KafkaSource& operator=(const KafkaSource&) = delete;

  /// Starts consuming on the source's own thread and returns at once (nothing is checked
  /// here: a bad configuration is the result of `wait`). `on_finished`, when set, is called on
  /// that thread with the run's error (clear after a clean stop) once it has finished: drained,
  /// offsets stored, group left; it must not call `wait` or destroy the source (that thread
  /// is what they wait for). Once per source; `kafka_errc::bad_config` if started already.
  result<void> start(std::function<void(boost::system::error_code)> on_finished = {});

  /// Waits until the source has finished (after `stop` or a failure). Success after `stop`; a
  /// failure: a bad configuration, a fatal librdkafka error, or a store failure past the
  /// pipeline's retry budget (an event without an outcome; everything stored stays true and a
  /// restart resumes from the stored offsets); `last_error` says more. Before `start`: success.
  result<void> wait();

  /// `start`, then `wait`.
  result<void> run();

  /// Asks the source to finish (async-signal-safe; before `start` too: it then stops at once).
  void stop() noexcept;

  /// True once a started source has finished (`wait` returns at once).
  bool finished() const noexcept;

  /// A copy of the source's counters (the pipeline's are the pipeline's: `Pipeline::metrics`).
  KafkaSourceMetrics metrics() const;
  /// A description of the failure that ended the run, empty otherwise.
  std::string last_error() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tradecapture

namespace boost::system {
template <>
struct is_error_code_enum<tradecapture::kafka_errc> : std::true_type {};
}  // namespace boost::system
