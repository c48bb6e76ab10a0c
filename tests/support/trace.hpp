#pragma once
/// \file trace.hpp
/// The one trace generator of the tests and the benchmarks: a seeded stream of trade events over
/// a set of partitions, with a mix of kinds chosen by the caller. The benchmarks use the
/// realistic mix (mostly NEWs, some AMENDs and CANCELs of live trades, a few exact resends);
/// the pipeline's model-based test and the Kafka tests use adversarial mixes (conflicting and
/// stale resends, AMENDs before their NEW, unknown trades, invalid events; the Kafka tests add
/// their transport faults on top). Deterministic for a seed; no test framework, no floating
/// point near an amount (the weights that pick a partition are the only doubles).

#include <tradecapture/decimal.hpp>
#include <tradecapture/event_codec.hpp>
#include <tradecapture/types.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tctest {

/// How often each kind of event appears, per mille of the trace; NEWs make up the rest. A kind
/// that needs an earlier trade or event is a NEW until there is one.
struct TraceMix {
  int amend = 0;               ///< AMEND of a trade at its next version
  int cancel = 0;              ///< CANCEL of a live trade at its next version
  int resend = 0;              ///< an exact resend of an earlier event (DUPLICATE)
  int conflicting_resend = 0;  ///< an earlier idempotency key with other content
  int stale = 0;               ///< an AMEND at a version the trade has passed
  int version_gap = 0;         ///< an AMEND three versions ahead of the trade's next one
  int amend_before_new = 0;    ///< an AMEND at version 2 whose NEW follows 1-40 events later
  int unknown = 0;             ///< a CANCEL of a trade never sent
  int invalid = 0;             ///< version 0, or a quantity of 0 or below
  /// AMENDs may hit cancelled trades (the processor rejects them).
  bool amend_cancelled = false;
  /// Conflicting resends may move to another partition (one key in two partitions), and NEWs
  /// may reuse a trade id of another partition: the key gate's cross-partition cases.
  bool cross_partition = false;
  /// Amounts from a small set of edge values (0, 1e-8, 1,000,000, ...) instead of round lots
  /// near a per-partition price.
  bool edge_amounts = false;
};

/// The realistic mix of the benchmarks: ~83% NEW, 12% AMEND, 4.5% CANCEL, 0.5% exact resends.
inline TraceMix realistic_mix() {
  TraceMix m;
  m.amend = 120;
  m.cancel = 45;
  m.resend = 5;
  return m;
}

/// Every kind of trouble an ingress sees, at rates that exercise each path many times.
inline TraceMix adversarial_mix() {
  TraceMix m;
  m.amend = 220;
  m.cancel = 60;
  m.resend = 100;
  m.conflicting_resend = 40;
  m.stale = 60;
  m.version_gap = 10;
  m.amend_before_new = 60;
  m.unknown = 30;
  m.invalid = 30;
  m.amend_cancelled = true;
  return m;
}

/// What to generate.
struct TraceOptions {
  std::uint64_t seed = 20240601;
  std::size_t events = 1000;
  /// The partitions; empty means `partitions` keys named by `trace_partition_key`.
  std::vector<tradecapture::PartitionKey> keys;
  std::size_t partitions = 1000;
  /// Partition weights 1/(rank+10) (a few hot partitions) instead of uniform.
  bool skewed = false;
  TraceMix mix = realistic_mix();
  /// Trade ids start with this; empty means "T<seed>-". Traces that share a store and must not
  /// share trades get prefixes of their own.
  std::string id_prefix;
};

/// One generated event and the index of its partition in the trace's keys.
struct TraceEvent {
  tradecapture::TradeEvent event;
  std::uint32_t partition = 0;
  bool resend = false;  ///< an exact resend of an earlier event of the trace
};

/// The key of partition `i` of a generated trace: 100 accounts x 2 books x 5 securities per
/// thousand partitions.
inline tradecapture::PartitionKey trace_partition_key(std::size_t i) {
  return tradecapture::PartitionKey{"ACC-" + std::to_string(1000 + i / 10),
                                    "BOOK-" + std::to_string((i / 5) % 2),
                                    "SEC-" + std::to_string(100 + i % 5 + 5 * ((i / 10) % 40))};
}

/// A trace as `options` say. Trade ids are unique to their partition unless
/// `mix.cross_partition`.
inline std::vector<TraceEvent> make_trace(const TraceOptions& options) {
  using namespace tradecapture;
  std::vector<PartitionKey> keys = options.keys;
  if (keys.empty()) {
    for (std::size_t i = 0; i < options.partitions; ++i) keys.push_back(trace_partition_key(i));
  }
  if (keys.empty()) throw std::invalid_argument("make_trace: no partitions");
  const TraceMix& mix = options.mix;
  std::mt19937_64 rng(options.seed);
  auto below = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  std::vector<double> w(keys.size(), 1.0);
  if (options.skewed) {
    for (std::size_t k = 0; k < keys.size(); ++k) w[k] = 1.0 / double(k + 10);
  }
  std::discrete_distribution<std::uint32_t> pick_partition(w.begin(), w.end());
  std::vector<std::int64_t> base_price(keys.size());  // in 1e-4
  for (auto& b : base_price) b = (1000 + std::int64_t(rng() % 50000)) * 100;

  auto units = [](std::int64_t e4) {
    return Decimal::from_units(Decimal::rep(e4) * Decimal::pow10(Decimal::scale - 4)).value();
  };
  auto text = [](std::string_view t) { return Decimal::parse(t, Decimal::scale).value(); };
  static constexpr std::string_view edge_quantities[] = {"1", "10", "0.5", "123.456789",
                                                        "1000000", "7"};
  static constexpr std::string_view edge_prices[] = {"0", "1", "187.25", "0.00000001", "99.5",
                                                    "3"};
  auto fill_amounts = [&](TradeEvent& e, std::uint32_t p) {
    e.side = (rng() & 1) ? Side::Buy : Side::Sell;
    if (mix.edge_amounts) {
      e.quantity = text(edge_quantities[below(6)]);
      e.price = text(edge_prices[below(6)]);
      return;
    }
    // Mostly round lots of 100..10,000; otherwise 0.0001..500; prices within 5% of the base.
    const std::int64_t q = below(10) < 8 ? std::int64_t(1 + below(100)) * 100 * 10000
                                         : std::int64_t(1 + below(5000000));
    const std::int64_t base = base_price[p];
    e.quantity = units(q);
    e.price = units(base + std::int64_t(below(std::size_t(base / 10 + 1))) - base / 20);
  };

  struct Trade {
    std::string id;
    std::uint32_t partition;
    std::int64_t version;  ///< the last version sent
  };
  std::vector<Trade> trades;
  std::vector<std::size_t> live;  // indexes into trades of trades not cancelled
  std::vector<TraceEvent> out;
  out.reserve(options.events);
  std::vector<std::pair<std::size_t, TraceEvent>> later;  // NEWs due after their AMEND
  std::uint64_t next_id = 1;
  const std::string prefix = options.id_prefix.empty()
                                 ? "T" + std::to_string(options.seed % 100000) + "-"
                                 : options.id_prefix;
  auto fresh_id = [&] { return prefix + std::to_string(next_id++); };
  auto event_of = [&](const Trade& t, std::int64_t version, TradeType type) {
    TraceEvent te;
    te.partition = t.partition;
    te.event.trade_id = t.id;
    te.event.version = version;
    te.event.type = type;
    te.event.partition = keys[t.partition];
    if (type != TradeType::Cancel) fill_amounts(te.event, t.partition);
    return te;
  };
  auto emit_new = [&](std::uint32_t p) {
    std::string id = fresh_id();
    if (mix.cross_partition && !trades.empty() && below(4) == 0) id = trades[below(trades.size())].id;
    trades.push_back(Trade{std::move(id), p, 1});
    live.push_back(trades.size() - 1);
    out.push_back(event_of(trades.back(), 1, TradeType::New));
  };

  while (out.size() < options.events) {
    for (auto it = later.begin(); it != later.end();) {
      if (it->first <= out.size()) {
        out.push_back(std::move(it->second));
        it = later.erase(it);
      } else {
        ++it;
      }
    }
    if (out.size() >= options.events) break;
    int r = static_cast<int>(below(1000));
    auto take = [&r](int per_mille) {
      if (r < per_mille) return true;
      r -= per_mille;
      return false;
    };
    const std::uint32_t p = pick_partition(rng);
    if (take(mix.resend)) {
      if (!out.empty()) {
        out.push_back(out[below(out.size())]);
        out.back().resend = true;
        continue;
      }
    } else if (take(mix.conflicting_resend)) {
      if (!out.empty()) {
        TraceEvent te = out[below(out.size())];
        te.resend = false;
        if (te.event.type == TradeType::Cancel) {
          te.event.type = TradeType::Amend;  // same key, a CANCEL turned AMEND
          fill_amounts(te.event, te.partition);
        } else {
          te.event.quantity = text("777");
        }
        if (mix.cross_partition && below(2) == 0) {
          te.partition = p;
          te.event.partition = keys[p];
        }
        out.push_back(std::move(te));
        continue;
      }
    } else if (take(mix.stale)) {
      if (!trades.empty()) {
        const Trade& t = trades[below(trades.size())];
        if (t.version >= 2) {
          out.push_back(event_of(t, 2 + std::int64_t(below(std::size_t(t.version - 1))),
                                 TradeType::Amend));
          continue;
        }
      }
    } else if (take(mix.version_gap)) {
      if (!live.empty()) {
        Trade& t = trades[live[below(live.size())]];
        t.version += 3;
        out.push_back(event_of(t, t.version, TradeType::Amend));
        continue;
      }
    } else if (take(mix.amend_before_new)) {
      trades.push_back(Trade{fresh_id(), p, 2});
      live.push_back(trades.size() - 1);
      out.push_back(event_of(trades.back(), 2, TradeType::Amend));
      later.emplace_back(out.size() + 1 + below(40), event_of(trades.back(), 1, TradeType::New));
      continue;
    } else if (take(mix.unknown)) {
      Trade ghost{"U" + fresh_id(), p, 2};
      out.push_back(event_of(ghost, 3, TradeType::Cancel));
      continue;
    } else if (take(mix.invalid)) {
      Trade bad{"Q" + fresh_id(), p, 1};
      TraceEvent te = event_of(bad, 1, TradeType::New);
      if (below(2) == 0) {
        te.event.version = 0;
      } else {
        te.event.quantity = below(2) == 0 ? Decimal{} : Decimal::from_units(-1).value();
      }
      out.push_back(std::move(te));
      continue;
    } else if (take(mix.amend)) {
      const bool any = mix.amend_cancelled && !trades.empty();
      if (any || !live.empty()) {
        Trade& t = any ? trades[below(trades.size())] : trades[live[below(live.size())]];
        out.push_back(event_of(t, ++t.version, TradeType::Amend));
        continue;
      }
    } else if (take(mix.cancel)) {
      if (!live.empty()) {
        const std::size_t k = below(live.size());
        Trade& t = trades[live[k]];
        out.push_back(event_of(t, ++t.version, TradeType::Cancel));
        live[k] = live.back();
        live.pop_back();
        continue;
      }
    }
    emit_new(p);
  }
  for (auto& [at, te] : later) {
    if (out.size() >= options.events) break;
    out.push_back(std::move(te));
  }
  return out;
}

/// The events of a trace, without their partition indexes.
inline std::vector<tradecapture::TradeEvent> events_of(const std::vector<TraceEvent>& trace) {
  std::vector<tradecapture::TradeEvent> out;
  out.reserve(trace.size());
  for (const auto& te : trace) out.push_back(te.event);
  return out;
}

/// An event as the JSON object of spec section 1 (the input of replay, serve and consume).
inline std::string event_json(const tradecapture::TradeEvent& e) {
  std::string s;
  tradecapture::append_input_event_json(s, e);
  return s;
}

}  // namespace tctest
