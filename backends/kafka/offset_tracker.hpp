#pragma once
// Internal: the sans-I/O core of the Kafka source (backends/kafka). No librdkafka here: the shell
// in backends/kafka (source_impl.hpp) feeds it assignments, messages, completions and pipeline hooks under one
// mutex, and tests drive it directly (tests/kafka/test_offset_tracker.cpp).
//
// What it decides:
// - Tags: every event handed to the pipeline carries `make_tag(slot, offset)` (never 0).
// - Offsets: per assigned Kafka partition (a "slot", one per assignment generation) the offsets in
//   flight; the watermark is the smallest offset not yet decided. `add_sources` computes, for the
//   batch a shard is about to commit, one SourceOffset row per Kafka partition the batch touches
//   (the batch's own events count as decided: the row commits with them) with the slot's claim
//   epoch, or epoch 0 once the slot is dead and the batch writes one of its events, so the store
//   refuses the whole batch.
// - Several sources per trade partition: a trade partition may receive events from several
//   Kafka partitions (several topics) at once. Events of one Kafka partition keep their order
//   (one poll thread submits them in offset order; the pipeline keeps submission order per trade
//   partition); events of different Kafka partitions interleave in whatever order they arrive,
//   which is as valid an order as any (Kafka defines none between partitions).
// - Source marks (the SourceHook of kafka_source.cpp, `SourceHook` in the core): every event
//   handed to the pipeline names its slot (stream) and offset (position); the pipeline stores,
//   with the events and checks of every decision, each Kafka partition's mark in each trade
//   partition (the offset of its last message decided there, whatever the outcome) under
//   `replay_marker_id` (group, topic, partition) and answers a re-read event at or below its
//   own Kafka partition's mark as replayed (errc::replayed): decided again, an AMEND rejected as
//   "unknown trade" before its NEW would be accepted once the NEW is stored, and one whose key a
//   later re-send stored would come back DUPLICATE, a second and different result for one
//   message. A later event was never decided durably (its decision's commit would have moved the
//   mark), so deciding it now is its first decision. Marks of other Kafka partitions in the same
//   trade partition say nothing about this one.
// - Abandoned events: once a slot is dead (revoked past the timeout, lost, fenced, failed) its
//   events still in the pipeline are abandoned by the hook before a decision
//   (errc::source_abandoned): they write nothing and are not reported; the next owner of the
//   Kafka partition reads them again
//   from the stored offset. An event of a dead slot decided before the slot died and not yet
//   committed makes its batch carry epoch 0 (refused): decided again, it is abandoned.
// - No fencing tokens here: the pipeline writes with the tokens of the store's
//   `claim_partitions`, which fence a stale writer of a trade partition whatever fed it; claim
//   epochs fence the source offsets (and with them every commit that carries a Kafka event).

#include <tradecapture/error.hpp>
#include <tradecapture/source_hook.hpp>
#include <tradecapture/trade_store.hpp>
#include <tradecapture/types.hpp>

#include <cstdint>
#include <set>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tradecapture::kafka_detail {

/// Index of a slot in the tracker's table (1-based; reused once a slot is closed).
using SlotIndex = std::uint32_t;

/// Bits of a tag that hold the offset; the slot index takes the rest.
inline constexpr int tag_offset_bits = 44;
/// The largest Kafka offset a tag can carry.
inline constexpr std::int64_t max_tag_offset = (std::int64_t{1} << tag_offset_bits) - 1;

/// The pipeline tag of (slot, offset): (slot << 44) | offset. Never 0 (slots start at 1).
constexpr std::uint64_t make_tag(SlotIndex slot, std::int64_t offset) noexcept {
  return (std::uint64_t{slot} << tag_offset_bits) | static_cast<std::uint64_t>(offset);
}
constexpr SlotIndex tag_slot(std::uint64_t tag) noexcept {
  return static_cast<SlotIndex>(tag >> tag_offset_bits);
}
constexpr std::int64_t tag_offset(std::uint64_t tag) noexcept {
  return static_cast<std::int64_t>(tag & static_cast<std::uint64_t>(max_tag_offset));
}

/// The id of the source mark of (group, topic, partition). It starts with a control character:
/// up to schema version 3 marks were trade records (replay markers) under this id, which no
/// valid trade id can be; migration 4 moved them, ids unchanged, into the store's source marks.
std::string replay_marker_id(std::string_view group, std::string_view topic,
                             std::int32_t partition);

enum class SlotState : std::uint8_t {
  live,      ///< assigned: messages are accepted, commits carry the claim epoch
  draining,  ///< being revoked: no new messages; in-flight events still commit
  dead,      ///< revoked, lost, fenced or failed: every commit with its events is refused
};

/// What `check` says about a message.
enum class Admit : std::uint8_t {
  submit,      ///< hand it to the pipeline (or answer it at the source)
  stale,       ///< below the slot's position (a duplicate delivery): drop it
  not_live,    ///< the slot does not take messages: drop it (the next owner reads it)
};

/// What a completion was.
struct Completion {
  bool known = false;  ///< the tag was in flight in a slot of this tracker
  SlotState state = SlotState::dead;  ///< the slot's state when it completed
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
};

/// A copy of one slot's bookkeeping (for logs, metrics and tests).
struct SlotView {
  SlotIndex index = 0;
  std::string topic;
  std::int32_t partition = 0;
  std::uint64_t epoch = 0;
  std::uint64_t generation = 0;
  SlotState state = SlotState::dead;
  std::int64_t start = 0;      ///< where the assignment resumed (the stored offset)
  std::int64_t position = 0;   ///< the next offset expected from Kafka
  std::int64_t watermark = 0;  ///< the smallest offset not decided yet
  std::int64_t flushed = -1;   ///< the last offset stored by an offsets-only commit, -1: none
  std::size_t in_flight = 0;
};

/// The bookkeeping of one consumer (one Kafka consumer group member). Not thread-safe: the
/// caller serialises every call.
class OffsetTracker {
 public:
  /// `group` names the stored offsets.
  explicit OffsetTracker(std::string group);

  const std::string& group() const noexcept { return group_; }

  // ---- assignment ---------------------------------------------------------------------------

  /// Opens the slot of a new assignment of (topic, partition), claimed with `epoch`, consuming
  /// from `start`. Any earlier slot of the same partition must have been closed.
  SlotIndex open(std::string topic, std::int32_t partition, std::uint64_t epoch,
                 std::int64_t start);
  /// The open slot of (topic, partition), whatever its state.
  std::optional<SlotIndex> find(std::string_view topic, std::int32_t partition) const;
  /// Moves a slot to `draining` or `dead` (never back to live).
  void set_state(SlotIndex slot, SlotState state);
  /// True when nothing of the slot is in flight.
  bool idle(SlotIndex slot) const;
  /// Forgets an idle slot.
  void close(SlotIndex slot);
  /// A copy of a slot's bookkeeping.
  SlotView view(SlotIndex slot) const;
  /// Every open slot.
  std::vector<SlotView> slots() const;

  // ---- messages -----------------------------------------------------------------------------

  /// Whether a message at `offset` of `slot` may be taken. Any trade partition may be in flight
  /// from any number of slots at once.
  Admit check(SlotIndex slot, std::int64_t offset) const;
  /// Records an event handed to the pipeline (after `check` said submit); returns its tag.
  std::uint64_t submitted(SlotIndex slot, std::int64_t offset);
  /// Records a message answered without the pipeline (malformed): decided at once.
  void answered(SlotIndex slot, std::int64_t offset);
  /// Records the completion of a tagged event (with an outcome or with an error).
  Completion completed(std::uint64_t tag);

  // ---- pipeline hooks -----------------------------------------------------------------------

  /// SourceHook::before_commit: adds the source offset rows of a batch that decided `events`
  /// (stream = slot, position = offset). Changes nothing in the tracker (the batch may be
  /// refused and decided again).
  void add_sources(std::span<const SourceEvent> events, CommitBatch& batch) const;
  /// SourceHook::mark_id: the id of the slot's source marks (`replay_marker_id`).
  std::string mark_id(SlotIndex slot) const;
  /// True when the slot is dead or closed: its events are abandoned, not decided.
  bool dead(SlotIndex slot) const;
  /// SourceHook::after_commit's stale rows: the slots of this group whose row another owner's
  /// claim made stale die. Returns the slots it killed (as they were).
  std::vector<SlotView> lost(std::span<const SourceOffset> stale);

  // ---- offsets-only commits -----------------------------------------------------------------

  /// Rows for live and draining slots whose watermark moved since their last offsets-only
  /// commit (`only`: just these slots; `all`: moved or not), sorted as CommitBatch::sources must
  /// be. A final write needs `all`: an event commit decided earlier may have landed after the
  /// last offsets-only commit with a lower offset.
  std::vector<SourceOffset> due_offsets(std::span<const SlotIndex> only = {},
                                        bool all = false) const;
  /// Records rows of `due_offsets` as stored.
  void flushed(std::span<const SourceOffset> rows);

 private:
  struct Slot {
    bool open = false;
    std::string topic;
    std::int32_t partition = 0;
    std::uint64_t epoch = 0;
    std::uint64_t generation = 0;
    SlotState state = SlotState::dead;
    std::int64_t start = 0;
    std::int64_t position = 0;
    std::int64_t flushed = -1;
    std::set<std::int64_t> in_flight;
    std::string marker_id;
  };

  const Slot* slot_(SlotIndex i) const;
  Slot* slot_(SlotIndex i);
  static std::int64_t watermark_(const Slot& s);
  static SourceOffset row_(const std::string& group, const Slot& s, std::int64_t next);

  std::string group_;
  std::vector<Slot> slots_{1};  // index 0 unused
  std::vector<SlotIndex> free_;
  std::uint64_t generations_ = 0;
};

}  // namespace tradecapture::kafka_detail
