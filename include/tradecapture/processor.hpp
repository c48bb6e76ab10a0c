#pragma once
/// \file processor.hpp
/// The Processor interface (business rules) and the reference PositionProcessor.

#include <tradecapture/types.hpp>

#include <memory>

namespace tradecapture {

/// What a Processor decided for one event. When `outcome` is Accepted, `position` is the
/// partition's new position and `record` the trade's new state; otherwise both are ignored.
/// The sequence number of `outcome` is assigned by the pipeline, not the processor.
struct Decision {
  Outcome outcome;
  Position position;
  TradeRecord record;
};

/// The business rules: given a partition's state and the next event of that partition, decide
/// the outcome and the new state.
///
/// Thread-safety: `decide` is const and is called concurrently from several threads for
/// different partitions; implementations must not keep mutable shared state.
/// Guarantees expected of an implementation: `decide` is a pure function of its arguments. The
/// event has passed `validate` and the global idempotency check (it is not a duplicate or a
/// conflict) before it is called. It may throw; the pipeline then rejects that one event with
/// a "processor error: ..." reason and the partition goes on.
class Processor {
 public:
  Processor() = default;
  virtual ~Processor() = default;
  Processor(const Processor&) = delete;
  Processor& operator=(const Processor&) = delete;

  /// Decides the outcome of `event` against the partition's current `state`.
  virtual Decision decide(const TradeEvent& event, const PartitionState& state) const = 0;
};

/// The reference processor of spec section 3: positions, amends, cancels, out-of-range checks.
std::shared_ptr<const Processor> make_position_processor();

}  // namespace tradecapture
