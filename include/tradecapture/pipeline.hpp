#pragma once
/// \file pipeline.hpp
/// The partition-sequential pipeline a host embeds: submit events, get durable outcomes.

#include <tradecapture/detail/submit_op.hpp>
#include <tradecapture/error.hpp>
#include <tradecapture/metrics.hpp>
#include <tradecapture/partition_lock.hpp>
#include <tradecapture/processor.hpp>
#include <tradecapture/source_hook.hpp>
#include <tradecapture/trade_store.hpp>
#include <tradecapture/types.hpp>

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <spdlog/fwd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

namespace tradecapture {

namespace detail {
class Admission;
struct PrevalidatedSubmit;  // detail/validate_once.hpp: the core's and backends' own ingresses
}

/// What `async_submit` does when the in-flight limit is reached.
enum class OverloadPolicy {
  wait,       ///< block the submitting thread until there is room (back-pressure)
  fail_fast,  ///< complete at once with `errc::overloaded`
};

/// Bounded, jittered exponential backoff for retryable failures. One type for every retry
/// loop of the library (pipeline store calls, lock acquisition, the Kafka source).
struct RetryPolicy {
  int max_attempts = 200;                            ///< attempts per call, the first included
  std::chrono::milliseconds initial_backoff{2};      ///< backoff before the first retry
  std::chrono::milliseconds max_backoff{500};        ///< cap of one backoff
  /// Total time a batch may spend retrying a store call, and a partition may wait for its lease
  /// (lock unavailable or held by another holder), before its events end without an outcome.
  std::chrono::milliseconds budget{15000};

  /// The backoff before retry number `attempt` (1-based): exponential from `initial_backoff`,
  /// capped at `max_backoff`, jittered into its upper half by `unit` in [0, 1).
  std::chrono::milliseconds backoff(int attempt, double unit) const {
    const auto base = initial_backoff.count() << (attempt < 20 ? attempt - 1 : 19);
    const auto capped = std::max<std::int64_t>(1, std::min<std::int64_t>(base, max_backoff.count()));
    return std::chrono::milliseconds(capped / 2 +
                                     static_cast<std::int64_t>(unit * static_cast<double>(capped - capped / 2)));
  }
};

/// Per-submission options.
struct SubmitOptions {
  /// The source, stream and position the event comes from (see `SourceHook`): the pipeline asks
  /// the hook whether the event was decided before, stores the stream's mark with the events it
  /// accepts and lets the hook add its progress to the commit. Default: no source.
  SourceRef source;
  /// When set: if the event is not decided by then, it is withdrawn and completes with
  /// `errc::deadline_exceeded` (no outcome), and it is never decided later by this pipeline
  /// (spec section 6, point 5), so a client or proxy may re-send it elsewhere after the
  /// deadline. The deadline is checked before every commit attempt; a commit already under way
  /// when it passes still decides (a proxy's timeout must leave room for one commit).
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

/// Pipeline configuration.
struct PipelineOptions {
  /// Worker shards; each owns a share of the partitions (by hash) and decides one batch at a
  /// time (with `overlap_commits`, while the batch before it commits).
  std::size_t threads = 2;
  /// Run the shards on the host's executor instead of an internal thread pool of `threads`.
  /// Store calls and retry backoffs run synchronously on the shard, so they occupy one of the
  /// executor's threads while they last; give the executor at least `threads` threads of its own.
  std::optional<boost::asio::any_io_executor> executor;
  /// Submitted and not yet completed events, at most (memory bound and back-pressure).
  std::size_t max_in_flight = 65536;
  /// Events per store transaction, at most.
  std::size_t max_batch = 8192;
  /// Events of one partition per batch, at most (so one hot partition cannot starve others).
  std::size_t max_batch_per_partition = 1024;
  /// Partition states kept in memory per shard before idle ones are evicted.
  std::size_t max_cached_partitions = 200000;
  OverloadPolicy on_overload = OverloadPolicy::wait;
  RetryPolicy retry;
  /// When an event of a partition ends without an outcome, every event of that partition
  /// submitted later to this pipeline ends without one too (`errc::predecessor_failed`), not
  /// only those submitted before the failure. For batch hosts that submit ahead of their
  /// outcomes (`tradecapture replay`): a line read after the failure but before the host heard
  /// of it can never be decided, so re-sending from the first line without an outcome gives the
  /// sequential result. A gateway leaves it off: its clients' later requests go on.
  bool sticky_failures = false;
  /// Overlapped group commit: while a shard's batch commits (on a thread of its own), the shard
  /// forms the next batch from what queued meanwhile (leases, claims, key lookups, started as
  /// late as the measured commit time allows) and decides it the moment the commit succeeds.
  /// Off (the default): each batch is looked up, decided and committed in turn. Off is faster
  /// on a 2-core machine shared with PostgreSQL (BENCHMARKS.md, session 9): the overlap adds
  /// concurrent statements to a CPU-bound server and a thread hand-off per batch. It is meant
  /// for a database across a network, where the lookups' round trips are the cost it hides.
  bool overlap_commits = false;
  /// Where the pipeline logs; null means spdlog's default logger.
  std::shared_ptr<spdlog::logger> logger;
};

/// The partition-sequential pipeline.
///
/// Events of one partition are applied in submission order; partitions spread over shards and
/// run in parallel. Each shard takes whatever is queued for many partitions and commits it in
/// one store transaction (group commit). The completion of a submission fires only after its
/// outcome is durable. The global idempotency key (trade_id, version) is decided in submission
/// order even across partitions and shards: an event waits for an earlier event with the same
/// key to complete, or, when every such event is of its own partition (a re-send) and it has no
/// source (SubmitOptions::source), is decided right after them in their batch.
///
/// Faults (spec section 6, `../shared/spec/trade-events.md#6-faults-what-stays-true`; the README's
/// "Fault contract" section): whatever fails (store, lock server, clock, this process),
/// - every outcome it reports, those that write nothing included, is the outcome for the
///   partition's stored history at one instant between submission and report: each batch is
///   validated by its commit (check-only updates, absent keys) and decided again when refused;
/// - fencing tokens come from the store (`TradeStore::claim_partitions`), never from a clock or
///   a lock server's memory: a lock that forgets or a clock step costs retries, not correctness;
/// - a partition never moves past a failure: when an event ends without an outcome (retry budget
///   spent, deadline passed, stop), every event of its partition submitted before that moment and
///   not yet decided ends without an outcome too, so re-sending from the first event without an
///   outcome, in order, gives exactly the sequential result;
/// - an event withdrawn at its deadline (`SubmitOptions::deadline`) is never decided later;
/// - every wait is bounded (`RetryPolicy`, `stop(timeout)`), fault logs are rate-limited.
/// The decisions live in a sans-I/O state machine (src/shard_core.hpp) that the seeded simulator
/// (tests/sim) drives through thousands of fault schedules.
///
/// Thread-safety: every public method may be called from any thread. Destruction stops the
/// pipeline (see `stop`) and never loses a completion.
class Pipeline {
 public:
  /// Builds a pipeline over a store, a lock and a processor, and starts its shards.
  Pipeline(std::shared_ptr<TradeStore> store, std::shared_ptr<PartitionLock> lock,
           std::shared_ptr<const Processor> processor, PipelineOptions options = {});
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  /// Submits one event. The completion signature is `void(boost::system::error_code, Outcome)`:
  /// on success the error code is clear and the outcome durable; an error code means the event
  /// has no outcome (stopped, overloaded, infrastructure failure past the retry budget) and
  /// re-sending it is safe. Works with callbacks, `use_future` and `use_awaitable`.
  template <class CompletionToken>
  auto async_submit(TradeEvent event, CompletionToken&& token) {
    return initiate_submit_(std::move(event), SubmitOptions{},
                            std::forward<CompletionToken>(token));
  }
  /// Submits one event with options (source, deadline). Otherwise the same as above. An event
  /// with a source may also complete with `errc::replayed` (decided before: at or below its
  /// stream's mark) or `errc::source_abandoned` (its source gave the stream up), both without
  /// an outcome and without failing the rest of its partition.
  template <class CompletionToken>
  auto async_submit(TradeEvent event, SubmitOptions options, CompletionToken&& token) {
    return initiate_submit_(std::move(event), std::move(options),
                            std::forward<CompletionToken>(token));
  }

  /// Room for a whole batch under `PipelineOptions::max_in_flight`, held until used by
  /// `async_submit_batch` or released (RAII; see `try_reserve`). Movable, not copyable. May
  /// outlive its pipeline (releasing it then does nothing useful, and nothing harmful).
  class Reservation {
   public:
    /// An empty reservation (no slots).
    Reservation() noexcept = default;
    Reservation(Reservation&& other) noexcept;
    Reservation& operator=(Reservation&& other) noexcept;
    /// Releases the slots not used (as `release`).
    ~Reservation();
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;

    /// Slots held and not used yet.
    std::size_t size() const noexcept { return size_; }
    /// Gives the unused slots back to the pipeline at once; the reservation is empty after.
    void release() noexcept;

   private:
    friend class Pipeline;
    Reservation(std::shared_ptr<detail::Admission> admission, std::size_t n) noexcept
        : admission_(std::move(admission)), size_(n) {}
    std::shared_ptr<detail::Admission> admission_;
    std::size_t size_ = 0;
  };

  /// Whole-batch admission: reserves `n` in-flight slots when they fit next to the events in
  /// flight (admitted or reserved) under `max_in_flight`, or when nothing at all is in flight
  /// (a batch larger than the limit then runs alone). Never waits, whatever `on_overload` says.
  /// Fails with `errc::overloaded` when the batch does not fit, `errc::stopped` once `stop` has
  /// begun. The slots count in `in_flight()` and against every other submitter until they are
  /// used by `async_submit_batch` (then each is freed when its event completes) or released.
  /// `drain` and `stop` do not wait for slots that were never used.
  result<Reservation> try_reserve(std::size_t n);

  /// Submits `events` as one batch on the room of `reservation` (from `try_reserve` of this
  /// pipeline): each event is submitted as by `async_submit`, in vector order, so events of one
  /// partition keep their order, but takes a reserved slot instead of waiting for room. Events
  /// beyond `reservation.size()` are admitted one by one as `async_submit` admits them (waiting
  /// or failing per `on_overload`); slots left over are released once every event is submitted.
  /// `options` applies to every event (a deadline: each event not decided by then is withdrawn;
  /// a source: the events are consecutive messages of its stream, event i at
  /// `options.source.position + i`).
  ///
  /// The completion signature is
  /// `void(boost::system::error_code, std::vector<result<Outcome>>)`, called once, after the
  /// last event completed: one result per event, in event order, each the durable outcome or
  /// the error that left that event without one (re-sending it is safe); the error code is the
  /// first such error in event order, clear when every event has its outcome. With
  /// `use_awaitable` a failed event throws: use `redirect_error` to keep the results.
  template <class CompletionToken>
  auto async_submit_batch(std::vector<TradeEvent> events, Reservation reservation,
                          SubmitOptions options, CompletionToken&& token) {
    return initiate_batch_(std::move(events), std::move(reservation), std::move(options),
                           std::forward<CompletionToken>(token), false);
  }
  /// `async_submit_batch` without options.
  template <class CompletionToken>
  auto async_submit_batch(std::vector<TradeEvent> events, Reservation reservation,
                          CompletionToken&& token) {
    return async_submit_batch(std::move(events), std::move(reservation), SubmitOptions{},
                              std::forward<CompletionToken>(token));
  }

  /// Events admitted and not completed, plus reserved slots not used yet (cheap; also in
  /// `metrics()`).
  std::size_t in_flight() const noexcept;
  /// `PipelineOptions::max_in_flight` as in force (at least 1).
  std::size_t max_in_flight() const noexcept;

  /// Submits one event and blocks until its outcome is durable.
  result<Outcome> submit(TradeEvent event);

  /// Blocks until every submission accepted so far has completed.
  void drain();

  /// Refuses new submissions (`errc::stopped`), finishes every accepted one, stops the shards.
  /// Idempotent. Waits as long as the accepted submissions take (each bounded by the retry
  /// budget); see the overload with a timeout.
  void stop();

  /// As `stop()`, but once `timeout` has passed every submission not yet decided is withdrawn
  /// (completes with `errc::stopped`, no outcome; spec section 6, point 2); a store call under
  /// way finishes first. Returns true when everything finished within the timeout.
  bool stop(std::chrono::milliseconds timeout);

  /// A copy of the counters.
  PipelineMetrics metrics() const;

 private:
  /// The gateway and the Kafka source submit events they validated themselves through it
  /// (`validated` true: no second `validate`); see detail/validate_once.hpp.
  friend struct detail::PrevalidatedSubmit;

  /// Both `async_submit`s: the event is moved once more, into its SubmitOp (each move of a
  /// TradeEvent moves its four strings). `validated`: the caller ran `validate` on the event
  /// (never set from the public API).
  template <class CompletionToken>
  auto initiate_submit_(TradeEvent&& event, SubmitOptions&& options, CompletionToken&& token,
                        bool validated = false) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code, Outcome)>(
        [this, validated](auto handler, auto&& ev, auto&& opts) {
          using H = std::decay_t<decltype(handler)>;
          auto op = detail::SubmitOpImpl<H>::make(op_pool_(), std::move(ev), std::move(handler));
          op->source = opts.source;
          if (opts.deadline) op->deadline = *opts.deadline;
          enqueue_(std::move(op), validated);
        },
        token, std::move(event), std::move(options));
  }
  /// `async_submit_batch`; `validated` as in `initiate_submit_`.
  template <class CompletionToken>
  auto initiate_batch_(std::vector<TradeEvent>&& events, Reservation&& reservation,
                       SubmitOptions&& options, CompletionToken&& token, bool validated) {
    return boost::asio::async_initiate<
        CompletionToken, void(boost::system::error_code, std::vector<result<Outcome>>)>(
        [this, validated, options = std::move(options)](
            auto handler, std::vector<TradeEvent> evs, Reservation r) {
          using H = std::decay_t<decltype(handler)>;
          enqueue_batch_(std::move(evs), std::move(r), options, validated,
                         std::make_unique<detail::BatchOpImpl<H>>(std::move(handler)));
        },
        token, std::move(events), std::move(reservation));
  }
  /// The pool of this pipeline's SubmitOps.
  detail::OpPool* op_pool_() const noexcept;
  void enqueue_(detail::SubmitOpPtr op, bool validated);
  void enqueue_batch_(std::vector<TradeEvent> events, Reservation reservation,
                      const SubmitOptions& options, bool validated,
                      std::unique_ptr<detail::BatchOp> op);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tradecapture
