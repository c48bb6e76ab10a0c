#pragma once
// The decisions of one pipeline shard as a sans-I/O state machine (house style point 5).
//
// A ShardCore has no threads, reads no clock and does no I/O. It is fed inputs (events that
// arrived, a key gate that opened, the result of the last action, the time) and answers with the
// next action: acquire, renew or release leases, claim partitions (load their state with a new
// fencing token from the store), look up idempotency keys, commit a batch, or wait until a time.
// Completions (an outcome, or an error meaning "no outcome") are queued for the caller to
// deliver. The Asio shell in pipeline.cpp executes the actions against the real store and lock;
// the simulator in tests/sim drives the very same class against simulated servers, a simulated
// clock and injected faults.
//
// Protocol: call `next(now)`; it returns at most one I/O action at a time, except that an
// overlapped commit (`Action::overlapped`, ShardConfig::overlap) does not count: while it runs,
// `next` may return one more action, for the next batch. After executing an action, feed its
// result to the matching `on_*` method, then call `next` again. `Action::Kind::wait`
// asks for `next` to be called again at or after `until` (or earlier when something arrives);
// `Action::Kind::idle` means nothing to do until something arrives. `release` actions need no
// result. After every call, `take_completions()` returns what must be completed now, in order.
//
// What the core guarantees (spec section 6):
// - Every outcome is validated by the commit of its batch: partitions whose events were all
//   decided without a write go into the batch as check-only updates, keys found absent for
//   non-writing outcomes as `absent_keys`; a refused commit is decided again on fresh state.
// - The fencing token of every write is the fence returned by the store's `claim_partitions`
//   for this holder, never the lock's and never a clock.
// - A partition never moves past a failure: when an event ends without an outcome, every event
//   of its partition submitted before that moment (stamp below the barrier) that is not decided
//   ends without an outcome too.
// - Deadlines: an event whose deadline passed is withdrawn before any commit that would decide
//   it; nothing of its partition behind it is decided.
// - Sources (SourceHook): an event submitted with a source is first put to its hook, with its
//   stream's mark in the partition: a `replayed` one completes with errc::replayed, an
//   `abandoned` one with errc::source_abandoned, neither decided nor failing its partition. The
//   marks of the events a batch accepts are written with them (PartitionUpdate::marks); each
//   hook adds its rows (CommitBatch::sources) and hears of every attempt. A batch refused as
//   fenced_off while it carries source rows reads the stored rows (Action::sources) and tells
//   the hooks which are stale, so the source that lost its stream abandons its events and the
//   rest of the batch, decided again, commits without them.
// - Overlap (latency-aware group commit): when idle, a batch commits at once; when busy, the next
//   batch forms while the current one commits. It leases, claims and looks up keys meanwhile, but
//   is decided only after that commit succeeded, and it never takes a partition of the
//   committing batch. When that commit fails, the next batch is put back (its events in order at
//   the front of their partitions, nothing of it decided) and the failed batch is handled as
//   without overlap: retried, verified, decided again or failed. A commit is overlapped only on
//   its first attempt; a retry runs alone.
// - Every retry is bounded: store calls by RetryPolicy's attempts and budget, lock busy or
//   unavailable by the budget, re-decisions by max_attempts.

#include <tradecapture/detail/submit_op.hpp>
#include <tradecapture/error.hpp>
#include <tradecapture/metrics.hpp>
#include <tradecapture/partition_lock.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/processor.hpp>
#include <tradecapture/trade_store.hpp>

#include <spdlog/fwd.h>

#include <array>
#include <atomic>
#include <span>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace tradecapture::detail {

using Time = std::chrono::steady_clock::time_point;

/// Microseconds from `a` to `b`, 0 when `b` is earlier (for latency histograms).
std::uint64_t micros_between(Time a, Time b);

/// Counters shared by the shards of a pipeline (atomics: read by `Pipeline::metrics`).
struct Counters {
  std::atomic<std::uint64_t> accepted{0}, duplicate{0}, stale{0}, rejected{0}, failed{0};
  std::atomic<std::uint64_t> replayed{0};
  std::atomic<std::uint64_t> batches{0}, commits{0}, commit_failures{0}, retries{0};
  std::atomic<std::uint64_t> lock_grants{0}, lock_busy{0}, lease_losses{0};
  std::atomic<std::uint64_t> queue_depth{0};
  std::array<std::atomic<std::uint64_t>, retry_cause_count> retries_by_cause{};
  Histogram batch_size, commit_latency_us, latency_us, lock_wait_us;

  /// Counts one retry after `ec`.
  void retry(const boost::system::error_code& ec);
  /// Counts one completion.
  void count(const boost::system::error_code& ec, const Outcome& o);
};

/// Bugs the core can be told to re-introduce, so that the simulator shows it finds each one
/// (tests/sim: `--mutation NAME` must fail within a few hundred seeds). Never set by the library.
enum class Mutation {
  none,
  no_failure_barrier,  ///< a failure fails only its batch; later events of the partition go on
  unvalidated_noop,    ///< non-writing outcomes skip the commit (decided on the cached state)
  lock_fences,         ///< load without claiming; the lock's grant fence is the write token
  ignore_deadlines,    ///< deadlines are not checked: a withdrawn event may still be decided
  redecide_stored,     ///< a replayed event whose key is stored is decided again (DUPLICATE)
  accepted_marks,      ///< only ACCEPTED events move source marks (a re-read decides again)
  early_outcomes,      ///< an overlapped commit's events complete when it goes out, not on success
  batch_blind_keys,    ///< a re-send decided in its original's batch does not see the original
  conflict_blind,      ///< a batch refused for a key skips the same key lookups again
  all_trades_new,      ///< every trade of an update is listed as new (PartitionUpdate::new_trades)
};

/// What the core needs from the pipeline's options.
struct ShardConfig {
  std::size_t max_batch = 8192;
  std::size_t max_batch_per_partition = 1024;
  std::size_t max_cached_partitions = 200000;
  RetryPolicy retry;
  std::chrono::milliseconds lease{10000};  ///< the lock's lease length
  std::uint64_t seed = 1;                  ///< jitter of backoffs (deterministic per seed)
  bool sticky_failures = false;            ///< PipelineOptions::sticky_failures
  std::string store_name = "the store";    ///< for logs (TradeStore::describe)
  std::string lock_name = "the lock";      ///< for logs (PartitionLock::describe)
  /// Overlap a batch's commit with the next batch (PipelineOptions::overlap_commits).
  bool overlap = false;
  Mutation mutation = Mutation::none;      ///< tests only
};

/// One thing for the shell to do.
struct Action {
  enum class Kind {
    idle,      ///< nothing to do until an op arrives or a key gate opens
    wait,      ///< call `next` again at or after `until`
    acquire,   ///< lock.try_acquire(keys) -> on_acquired
    renew,     ///< lock.renew(grants) -> on_renewed (the grants as updated by the lock)
    release,   ///< lock.release(grants); no result
    claim,     ///< store.claim_partitions(keys) -> on_claimed
    load,      ///< store.load_partitions(keys) -> on_claimed (only with Mutation::lock_fences)
    find,      ///< store.find_events_into(*idem_keys, take_found_buffer()) -> on_found
    commit,    ///< store.commit(batch) -> on_committed
    verify,    ///< store.find_events(*idem_keys) -> on_verified (did a commit whose ack was lost apply?)
    sources,   ///< read_source_offsets(store, consumers) -> on_sources (which source was fenced?)
  };
  Kind kind = Kind::idle;
  Time until{};                          ///< wait
  std::vector<PartitionKey> keys;        ///< acquire, claim (strictly ascending for claim)
  std::vector<Grant> grants;             ///< renew, release
  /// find, verify: the core's own keys, shared, never copied; the core fills the same vector
  /// again for a later lookup once nothing else holds it (so a lookup allocates nothing).
  std::shared_ptr<const std::vector<IdempotencyKey>> idem_keys;
  std::shared_ptr<const CommitBatch> batch;  ///< commit (the core's own, shared: never copied)
  std::vector<std::string> consumers;    ///< sources (ascending, distinct)
  /// commit only: the commit runs in the background (ShardConfig::overlap). While it is out,
  /// `next` goes on with the next batch (its leases, claims and key lookups, never its commit,
  /// never a partition of the committing batch); its result goes to `on_committed` whenever it
  /// comes, before or after the result of another action out at the same time.
  bool overlapped = false;
};

/// The stored source offsets of every consumer of `consumers`, concatenated (Action::sources).
result<std::vector<SourceOffset>> read_source_offsets(TradeStore& store,
                                                      std::span<const std::string> consumers);

/// One submission to complete: an outcome (ec clear) or no outcome (ec set).
struct Completion {
  SubmitOp* op = nullptr;
  boost::system::error_code ec;
  Outcome outcome;
};

class ShardCore {
 public:
  ShardCore(ShardConfig config, std::shared_ptr<const Processor> processor, Counters& counters,
            std::shared_ptr<spdlog::logger> log);
  ~ShardCore();
  ShardCore(const ShardCore&) = delete;
  ShardCore& operator=(const ShardCore&) = delete;

  /// An op arrived (it has entered the key gate; `state_of(op).stamp` is set, increasing per pipeline).
  void add(SubmitOp* op, Time now);
  /// The key gate made the first queued op of `key` decidable.
  void wake(const PartitionKey& key);
  /// The next action (see the protocol above).
  Action next(Time now);

  void on_acquired(result<std::vector<result<Grant>>> r, Time now);
  void on_renewed(std::vector<Grant> renewed, result<std::vector<result<void>>> r, Time now);
  void on_claimed(result<std::vector<PartitionState>> r, Time now);
  void on_found(result<std::vector<std::optional<StoredEvent>>> r, Time now);
  /// An empty vector for the result of a find action, with the capacity of a result fed to
  /// `on_found` before (TradeStore::find_events_into fills it; on_found takes it back).
  std::vector<std::optional<StoredEvent>> take_found_buffer();
  void on_committed(result<void> r, Time now);
  void on_verified(result<std::vector<std::optional<StoredEvent>>> r, Time now);
  void on_sources(result<std::vector<SourceOffset>> r, Time now);

  /// Withdraws every op not being decided by the action under way (completes them with `ec`),
  /// and makes the action under way end its batch without retrying (pipeline stop timeout).
  /// Later `add`s still work (the shell refuses them first).
  void abort_all(boost::system::error_code ec, Time now);
  /// The stamp the next submission will get. The shell updates it before every input, so that
  /// a failure barrier (see above) covers everything submitted until then, queued here or not.
  void set_stamp_now(std::uint64_t stamp_now);

  /// Leases to give back now (everything held: the shard is stopping). Clears the cache.
  std::vector<Grant> shutdown();

  /// Completions produced since the last call, in order.
  std::vector<Completion> take_completions();
  /// The same into `out` (cleared first), whose capacity the core keeps for the next ones.
  void take_completions(std::vector<Completion>& out);

  /// For metrics: partitions known, partitions with work, leases held.
  std::size_t cached() const;
  std::size_t active() const;
  std::size_t leases() const;
  /// True when no op is queued or in a batch.
  bool empty() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tradecapture::detail
