#pragma once
// tradecapture_sim: a deterministic simulation of the shard core (house style point 13).
//
// world.cpp builds a seeded world (hosts running detail::ShardCore, the memory store behind a
// fault injector, a lock server with its own clock, proxy-like clients, source streams that the
// hosts claim and consume like Kafka partitions, a fault schedule) and runs it on one simulated
// clock. check.cpp judges the run against spec section 6 and the source contract (SourceHook,
// README "Why the effect is exactly once"), using only what the clients and sources saw, what
// the store's fault wrapper logged and the final store contents.

#include "shard_core.hpp"

#include <tradecapture/processor.hpp>
#include <tradecapture/source_hook.hpp>
#include <tradecapture/trade_store.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace sim {

using namespace tradecapture;
using detail::Time;
using Micros = std::int64_t;  ///< simulated time, microseconds

struct Params {
  std::uint64_t seed = 1;
  int events = 300;  ///< stream events per seed, over all partitions
  detail::Mutation mutation = detail::Mutation::none;
  bool verbose = false;
};

/// Totals over the seeds of a run, for the summary.
struct Stats {
  std::uint64_t seeds = 0, stream_events = 0, submissions = 0, commits = 0;
  Micros sim_time = 0;
  std::map<std::string, std::uint64_t> faults;    ///< injected, by kind
  std::map<std::string, std::uint64_t> outcomes;  ///< reported, by kind
  std::map<std::string, std::uint64_t> sources;   ///< source events and claims, by kind
  std::map<std::string, std::uint64_t> overlap;   ///< overlapped commits, actions meanwhile
};

/// One commit that the store applied, as the fault-injecting wrapper saw it. With the final scan
/// of the store, this log is the checker's only source about the store's history.
struct CommitRecord {
  Micros at = 0;                    ///< simulated time at which it applied
  int host = -1, incarnation = 0;   ///< who sent it
  std::uint64_t sent_step = 0;      ///< scheduler step at which it was sent
  std::vector<StoredEvent> events;  ///< appended: partitions ascending, then seq ascending
  std::vector<SourceOffset> sources;  ///< the batch's source rows
  /// The source marks it wrote: (partition, mark id, position).
  std::vector<std::tuple<PartitionKey, std::string, std::int64_t>> marks;
  /// The source events its batch completes (SourceHook::before_commit's `events`); `stream` is
  /// the global slot id (Slot below).
  std::vector<SourceEvent> source_events;
};

/// One claim of a source stream (TradeStore::claim_source) as the store executed it.
struct Claim {
  int stream = 0;
  std::uint64_t epoch = 0;
  std::size_t h = 0;  ///< commits applied before it
};

/// One assignment of a source stream to a host incarnation (a Kafka slot); its id is the
/// SourceRef::stream of its events.
struct Slot {
  int stream = 0, host = 0, incarnation = 0;
  std::uint64_t epoch = 0;  ///< of its claim
};

/// A simulated source stream (a Kafka topic partition): messages in production order, each an
/// event of one source-fed trade partition (a partition is fed by one stream or by a client).
struct SourceStream {
  std::vector<std::pair<int, std::size_t>> msgs;  ///< (partition, index in its event stream)
  std::vector<Micros> planned;                    ///< when each message is produced
};

/// One submission of a stream event to a host, as its client saw it.
struct Submission {
  int partition = 0;
  std::size_t index = 0;  ///< position in the partition's stream
  int host = 0, incarnation = 0, epoch = 0;
  int stream = -1;             ///< the source stream it comes from; -1: a client's
  std::int64_t position = -1;  ///< its position in that stream
  std::uint32_t slot = 0;      ///< the slot that submitted it
  std::uint64_t stamp = 0;     ///< as set by the host on entry
  std::size_t h0 = 0, h1 = 0;  ///< commits applied before submission / before the report
  std::optional<Time> deadline;           ///< in the host's clock
  std::uint64_t pass_step = UINT64_MAX;   ///< step at which the host clock passed the deadline
  std::size_t h_pass = 0;                 ///< commits applied by then
  enum class State { in_network, pending, decided, failed, dropped, replayed, abandoned };
  State state = State::in_network;
  Outcome outcome;
  boost::system::error_code ec;
};

struct CheckInput {
  const std::vector<PartitionKey>& partitions;
  const std::vector<std::vector<TradeEvent>>& streams;
  const std::vector<CommitRecord>& history;
  const std::vector<Submission>& subs;
  TradeStore& store;  ///< the memory store itself, without the fault wrapper
  const Processor& processor;
  const std::vector<SourceStream>& sources;
  const std::vector<int>& fed_by;      ///< per partition: its source stream, -1: a client
  const std::vector<Slot>& slots;      ///< by slot id (0 unused)
  const std::vector<Claim>& claims;    ///< in the order the store executed them
};

/// The mark id of a simulated source stream (SourceHook::mark_id) and its offsets' consumer.
std::string stream_mark_id(int stream);
inline constexpr const char* kSourceConsumer = "sim";

/// Checks (1), (3) and (4) of the brief (spec section 6 points 1, 2 and the sequential result)
/// and the source checks (S1) marks, (S2) source rows and offsets, (S3) one result per message,
/// (S4) replays, (S5) abandons; (2) and (5) are checked online by the world. Empty when
/// everything holds, else what broke.
std::string check_run(const CheckInput& in);

/// Runs one seed; adds to `stats`. Returns an empty string on success, else what broke.
std::string run_seed(const Params& p, Stats& stats);

}  // namespace sim
