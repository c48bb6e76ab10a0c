#pragma once
/// \file source_hook.hpp
/// The SourceHook interface: how an ingress whose progress is stored with the events (a Kafka
/// consumer) takes part in a Pipeline's commits, and how the pipeline keeps a re-read event from
/// being decided twice.

#include <tradecapture/trade_store.hpp>
#include <tradecapture/types.hpp>

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace tradecapture {

class SourceHook;

/// Where a submitted event comes from (`SubmitOptions::source`): a source, one of its streams
/// (a Kafka topic partition) and the event's position in that stream (its offset).
struct SourceRef {
  SourceHook* hook = nullptr;  ///< the source; null: the event has no source (HTTP, a file)
  /// The source's own number for the stream (a slot, say); `SourceHook::mark_id` names its
  /// marks. Events of one stream are submitted in position order.
  std::uint32_t stream = 0;
  std::int64_t position = 0;  ///< the event's position in the stream, >= 0
};

/// What a source says about one of its events that the pipeline is about to decide.
enum class SourceVerdict : std::uint8_t {
  decide,     ///< decide it
  replayed,   ///< decided before (at or below its stream's mark): completes with errc::replayed
  abandoned,  ///< the source gave it up: completes with errc::source_abandoned, not decided
};

/// One event of a source in a batch the pipeline is about to commit, or has tried to.
struct SourceEvent {
  std::uint32_t stream = 0;   ///< as submitted (`SourceRef::stream`)
  std::int64_t position = 0;  ///< as submitted (`SourceRef::position`)
  bool written = false;       ///< ACCEPTED: the batch stores the event
};

/// A source of events whose progress is stored in the same transaction as the events
/// (exactly-once effect): the pipeline calls it around every commit that holds its events.
///
/// The pipeline keeps, per partition, one *source mark* per stream (`SourceMark`, stored with the
/// partition and loaded with it, never among the trades): the position of the stream's last event
/// decided in that partition, whatever its outcome. Each commit that decides events of a stream in
/// a partition moves its mark there, atomically with the events and the checks of outcomes that
/// write nothing, so an outcome reported once is never decided again. After a restart the source re-reads its streams
/// from its stored progress; an event at or below its stream's mark in its partition was decided
/// before (`already_decided`) and completes with `errc::replayed` instead of being decided again,
/// whatever its outcome was (its key may be stored by now, by it or by a later event).
/// A source attaches to any Pipeline, shared with other ingresses, by submitting with
/// `SubmitOptions::source`; events of several sources and of none mix in one batch.
///
/// Thread-safety: every method is called concurrently from the pipeline's shards (each call for
/// a batch of that shard) and must not block on I/O; the implementation synchronises itself.
/// The hook must outlive every submission that names it.
class SourceHook {
 public:
  SourceHook() = default;
  virtual ~SourceHook() = default;
  SourceHook(const SourceHook&) = delete;
  SourceHook& operator=(const SourceHook&) = delete;

  /// The id of the marks of `stream`: stable across restarts and unique among every source of
  /// the store (Kafka: the group, the topic and the partition).
  virtual std::string mark_id(std::uint32_t stream) const = 0;

  /// Before deciding an event of `stream` at `position`: `mark` is the stream's mark in the
  /// event's partition as of the commit the decision will be validated by (none: nothing of the
  /// stream was decided there). The default answer is
  /// `replayed` when the event is at or below the mark, else `decide`; a source that lost the
  /// stream answers `abandoned`. Every call is a new question: a batch decided again asks again.
  virtual SourceVerdict check(std::uint32_t /*stream*/, std::int64_t position,
                              std::optional<std::int64_t> mark) {
    return already_decided(position, mark) ? SourceVerdict::replayed : SourceVerdict::decide;
  }

  /// Right before a commit: `events` are the events of this source the batch completes, in
  /// batch order: those it decided (any outcome) and those it found replayed (`written` false;
  /// the stream's progress moves past them too), none abandoned; the hook adds its rows to
  /// `batch.sources` (keeping them strictly ascending; another source's rows may be there).
  /// The batch may be refused and decided again: a call does not mean a commit.
  virtual void before_commit(std::span<const SourceEvent> events, CommitBatch& batch) = 0;

  /// After each commit attempt of a batch that held events of this source: `ec` clear when it is
  /// durable (its outcomes are then delivered), else why it was refused or failed. With
  /// `errc::fenced_off`, `stale` lists the batch's source rows whose stored epoch is above the
  /// batch's (a stream claimed by another owner, `TradeStore::claim_source`), as read right
  /// after the refusal, whichever source added them: the hook should answer `abandoned` for the
  /// events of its own streams among them from now on, so that the batch, decided again, holds
  /// the events of the other sources and of none, which commit without them.
  virtual void after_commit(std::span<const SourceEvent> /*events*/,
                            boost::system::error_code /*ec*/,
                            std::span<const SourceOffset> /*stale*/) {}

  /// The rule of `check`'s default: at or below the mark.
  static bool already_decided(std::int64_t position, std::optional<std::int64_t> mark) noexcept {
    return mark && position <= *mark;
  }
};

}  // namespace tradecapture
