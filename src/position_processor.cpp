#include <tradecapture/processor.hpp>

#include <array>
#include <string>

namespace tradecapture {
namespace {

using rep = Decimal::rep;

// The five position totals as raw units, so intermediate sums need no range checks.
struct Totals {
  rep net_quantity = 0;
  rep bought_quantity = 0;
  rep sold_quantity = 0;
  rep bought_notional = 0;
  rep sold_notional = 0;
};

// Adds (`sign` = +1) or subtracts (`sign` = -1) the effect of a live trade. Returns false on
// __int128 overflow (impossible within the documented ranges, checked anyway).
bool add_effect(Totals& t, Side side, Decimal quantity, Decimal notional, int sign) noexcept {
  const rep q = quantity.units();
  const rep n = notional.units();
  auto step = [sign](rep& total, rep amount) noexcept {
    return sign > 0 ? !__builtin_add_overflow(total, amount, &total)
                    : !__builtin_sub_overflow(total, amount, &total);
  };
  if (side == Side::Buy) {
    return step(t.bought_quantity, q) && step(t.net_quantity, q) && step(t.bought_notional, n);
  }
  return step(t.sold_quantity, q) && step(t.net_quantity, -q) && step(t.sold_notional, n);
}

Decision rejected(const PartitionState& state, std::string reason) {
  return Decision{Outcome::rejected(std::move(reason)), state.position, TradeRecord{}};
}

Decision stale(const PartitionState& state) {
  return Decision{Outcome::stale(), state.position, TradeRecord{}};
}

/// The reference processor of spec section 3.
///
/// A cancelled trade's record keeps the side, quantity and price of the effect that the cancel
/// reversed (for audit); they no longer count in the position.
class PositionProcessor final : public Processor {
 public:
  Decision decide(const TradeEvent& event, const PartitionState& state) const override {
    const auto it = state.trades.find(event.trade_id);
    const TradeRecord* current = it == state.trades.end() ? nullptr : &it->second;

    switch (event.type) {
      case TradeType::New:
        // The global idempotency check makes this unreachable; stay defensive.
        if (current != nullptr) {
          return rejected(state, "conflict: trade already exists in partition");
        }
        return apply(state, nullptr, &event, 1, event.version, false);
      case TradeType::Amend:
      case TradeType::Cancel: {
        if (current == nullptr) return rejected(state, "unknown trade");
        if (event.version <= current->version) return stale(state);
        if (current->cancelled) return rejected(state, "trade cancelled");
        if (event.type == TradeType::Amend) {
          return apply(state, current, &event, 0, event.version, false);
        }
        return apply(state, current, nullptr, -1, event.version, true);
      }
    }
    return rejected(state, "invalid: type: must be NEW, AMEND or CANCEL");
  }

 private:
  // Reverses `old_record`'s effect (when set), applies `event`'s effect (when set), adjusts
  // live_trades by `live_delta` and range-checks every total.
  static Decision apply(const PartitionState& state, const TradeRecord* old_record,
                        const TradeEvent* event, int live_delta, std::int64_t version,
                        bool cancel) {
    const Position& pos = state.position;
    Totals t{pos.net_quantity.units(), pos.bought_quantity.units(), pos.sold_quantity.units(),
             pos.bought_notional.units(), pos.sold_notional.units()};

    if (old_record != nullptr) {
      const auto old_notional = checked_mul(old_record->quantity, old_record->price);
      if (!old_notional) return rejected(state, "out of range: notional exceeds 1e24");
      if (!add_effect(t, old_record->side, old_record->quantity, old_notional.value(), -1)) {
        return rejected(state, "out of range: position total overflow");
      }
    }

    TradeRecord record;
    if (event != nullptr) {
      const auto notional = checked_mul(event->quantity, event->price);
      if (!notional) {
        return rejected(state, "out of range: notional (quantity*price) exceeds 1e24");
      }
      if (!add_effect(t, event->side, event->quantity, notional.value(), +1)) {
        return rejected(state, "out of range: position total overflow");
      }
      record = TradeRecord{version, event->side, event->quantity, event->price, false};
    } else {
      record = *old_record;
      record.version = version;
      record.cancelled = cancel;
    }

    std::int64_t live = 0;
    if (__builtin_add_overflow(pos.live_trades, live_delta, &live)) {
      return rejected(state, "out of range: live_trades overflow");
    }

    const std::array<std::pair<const char*, rep>, 5> totals{{
        {"net_quantity", t.net_quantity},
        {"bought_quantity", t.bought_quantity},
        {"sold_quantity", t.sold_quantity},
        {"bought_notional", t.bought_notional},
        {"sold_notional", t.sold_notional},
    }};
    Position next;
    Decimal* fields[5] = {&next.net_quantity, &next.bought_quantity, &next.sold_quantity,
                          &next.bought_notional, &next.sold_notional};
    for (std::size_t k = 0; k < totals.size(); ++k) {
      const auto value = Decimal::from_units(totals[k].second);
      if (!value) {
        return rejected(state, std::string("out of range: ") + totals[k].first +
                                   " would exceed 1e24 in magnitude");
      }
      *fields[k] = value.value();
    }
    next.live_trades = live;
    return Decision{Outcome::accepted(0), next, record};
  }
};

}  // namespace

std::shared_ptr<const Processor> make_position_processor() {
  return std::make_shared<const PositionProcessor>();
}

}  // namespace tradecapture
