#pragma once
/// \file workload.hpp
/// The event generator of `tradecapture-load`: partitions with a skew, a NEW/AMEND/CANCEL mix
/// over trades whose earlier versions the server has confirmed, and decimals written in plain
/// notation from integers (spec section 1). No I/O; one instance per client thread.

#include "../tradecapture/conventions.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tradecapture::load {

enum class EventType : std::uint8_t { new_trade, amend, cancel };

/// One generated event; `body` is its JSON object text, `trade` what is needed to follow up.
struct Event {
  std::string trade_id;
  std::int64_t version = 1;
  EventType type = EventType::new_trade;
  std::uint32_t partition = 0;
  bool buy = true;
  std::uint64_t quantity_cents = 0;  ///< quantity in units of 0.01
  std::uint64_t price_units = 0;     ///< price in units of 0.0001
};

/// How events are spread over partitions: `zipf:S` / a bare number S (weight of the k-th
/// partition 1/k^S; 0 is uniform) or `hot:F:W` (a fraction F of the partitions gets a share W
/// of the events, the rest is uniform over the others).
class PartitionChooser {
 public:
  PartitionChooser(std::uint32_t partitions, std::string_view spec) : n_(partitions) {
    if (n_ == 0) throw std::invalid_argument("--partitions must be at least 1");
    std::string s(spec);
    auto number = [](const std::string& t, const char* what) {
      const auto v = cli::parse_number<double>(t);
      if (!v || !(*v >= 0)) throw std::invalid_argument(std::string("bad ") + what);
      return *v;
    };
    if (s.rfind("hot:", 0) == 0) {
      auto colon = s.find(':', 4);
      if (colon == std::string::npos) throw std::invalid_argument("--skew hot:F:W needs F and W");
      double f = number(s.substr(4, colon - 4), "hot fraction");
      share_ = number(s.substr(colon + 1), "hot share");
      if (f <= 0 || f > 1 || share_ > 1)
        throw std::invalid_argument("--skew hot:F:W needs 0<F<=1, 0<=W<=1");
      hot_ = std::max<std::uint32_t>(1, static_cast<std::uint32_t>(f * n_ + 0.5));
      hot_ = std::min(hot_, n_);
      mode_ = Mode::hot;
      return;
    }
    if (s.rfind("zipf:", 0) == 0) s = s.substr(5);
    double exponent = number(s, "--skew (want S, zipf:S or hot:F:W)");
    if (exponent == 0) return;  // uniform
    mode_ = Mode::zipf;
    cdf_.resize(n_);
    double sum = 0;
    for (std::uint32_t k = 0; k < n_; ++k) {
      sum += 1.0 / std::pow(static_cast<double>(k + 1), exponent);
      cdf_[k] = sum;
    }
    for (auto& c : cdf_) c /= sum;
  }

  template <class Rng>
  std::uint32_t operator()(Rng& rng) const {
    switch (mode_) {
      case Mode::uniform:
        return static_cast<std::uint32_t>(rng() % n_);
      case Mode::hot: {
        bool hot = unit(rng) < share_ || hot_ == n_;
        return hot ? static_cast<std::uint32_t>(rng() % hot_)
                   : hot_ + static_cast<std::uint32_t>(rng() % (n_ - hot_));
      }
      case Mode::zipf: {
        auto it = std::lower_bound(cdf_.begin(), cdf_.end(), unit(rng));
        return static_cast<std::uint32_t>(std::min<std::size_t>(it - cdf_.begin(), n_ - 1));
      }
    }
    return 0;
  }

  template <class Rng>
  static double unit(Rng& rng) {
    return static_cast<double>(rng() >> 11) * 0x1.0p-53;  // [0, 1)
  }

 private:
  enum class Mode { uniform, zipf, hot };
  std::uint32_t n_;
  Mode mode_ = Mode::uniform;
  std::uint32_t hot_ = 0;
  double share_ = 0;
  std::vector<double> cdf_;
};

/// Writes `units / 10^digits` in plain notation ("187.25", "100"): integer arithmetic only.
inline void append_decimal(std::string& out, std::uint64_t units, int digits) {
  std::uint64_t scale = 1;
  for (int i = 0; i < digits; ++i) scale *= 10;
  out += std::to_string(units / scale);
  std::uint64_t frac = units % scale;
  if (frac == 0) return;
  std::string f = std::to_string(frac);
  out += '.';
  out.append(static_cast<std::size_t>(digits) - f.size(), '0');
  out += f;
  while (out.back() == '0') out.pop_back();  // "1.50" -> "1.5": fewer digits is still exact
}

/// Appends `s` as a JSON string (quotes, escapes for `"`, `\` and control characters).
inline void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      static const char hex[] = "0123456789abcdef";
      out += "\\u00";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  out += '"';
}

/// The partition triple of partition number `p`: distinct numbers give distinct triples.
inline void partition_names(std::uint32_t p, std::string& account, std::string& book,
                            std::string& security) {
  account = "ACC" + std::to_string(p % 20);
  book = "BOOK" + std::to_string(p % 7);
  security = "SEC" + std::to_string(p);
}

/// Appends the JSON object of `e` (spec section 1; decimals as JSON strings).
/// The first keys of an event object, without the closing brace:
/// {"trade_id":..,"version":..,"type":..,"account":..,"book":..,"security":..
inline void append_event_head(std::string& out, const Event& e) {
  std::string account, book, security;
  partition_names(e.partition, account, book, security);
  out += "{\"trade_id\":";
  append_json_string(out, e.trade_id);
  out += ",\"version\":";
  out += std::to_string(e.version);
  out += e.type == EventType::new_trade ? ",\"type\":\"NEW\""
         : e.type == EventType::amend   ? ",\"type\":\"AMEND\""
                                        : ",\"type\":\"CANCEL\"";
  out += ",\"account\":";
  append_json_string(out, account);
  out += ",\"book\":";
  append_json_string(out, book);
  out += ",\"security\":";
  append_json_string(out, security);
}

inline void append_event_json(std::string& out, const Event& e) {
  append_event_head(out, e);
  if (e.type != EventType::cancel) {
    out += e.buy ? ",\"side\":\"BUY\",\"quantity\":\"" : ",\"side\":\"SELL\",\"quantity\":\"";
    append_decimal(out, e.quantity_cents, 2);
    out += "\",\"price\":\"";
    append_decimal(out, e.price_units, 4);
    out += '"';
  }
  out += '}';
}

/// Generates events. AMEND and CANCEL only target live trades that have no event in flight
/// and whose last event the server confirmed (ACCEPTED or DUPLICATE), so that with a correct
/// server they are accepted too; when there is none, a NEW is generated instead.
///
/// With `route_groups` G > 0, partition p belongs to group p % G and `next(g)` only yields
/// events of group g (the skew is kept: a drawn partition is moved into g), so that a request
/// built from one group can carry a routing key for partition affinity in a load balancer.
class Workload {
 public:
  struct Mix {
    unsigned new_trade = 85, amend = 10, cancel = 5;
  };

  Workload(std::string trade_prefix, const PartitionChooser& chooser, Mix mix, std::uint64_t seed,
           std::uint32_t partitions = 0, std::uint32_t route_groups = 0)
      : prefix_(std::move(trade_prefix)),
        chooser_(chooser),
        mix_(mix),
        rng_(seed),
        partitions_(partitions),
        groups_(route_groups),
        idle_(std::max<std::uint32_t>(route_groups, 1)) {
    if (mix_.new_trade + mix_.amend + mix_.cancel == 0) throw std::invalid_argument("empty --mix");
    if (groups_ > 0 && (partitions_ == 0 || groups_ > partitions_))
      throw std::invalid_argument("--route-groups must be between 1 and --partitions");
  }

  /// The routing group of a new request (drawn with the partition skew); 0 without groups.
  std::uint32_t pick_group() { return groups_ > 0 ? chooser_(rng_) % groups_ : 0; }

  /// The next event (of group `group` when there are groups).
  Event next(std::uint32_t group = 0) {
    auto& idle = idle_[groups_ > 0 ? group : 0];
    unsigned total = mix_.new_trade + mix_.amend + mix_.cancel;
    unsigned r = static_cast<unsigned>(rng_() % total);
    if (r >= mix_.new_trade && !idle.empty()) {
      std::size_t i = rng_() % idle.size();
      Event e = std::move(idle[i]);
      idle[i] = std::move(idle.back());
      idle.pop_back();
      --idle_count_;
      ++e.version;
      if (r < mix_.new_trade + mix_.amend) {
        e.type = EventType::amend;
        randomize(e);
      } else {
        e.type = EventType::cancel;
      }
      return e;
    }
    Event e;
    e.trade_id = prefix_ + std::to_string(next_trade_++);
    e.version = 1;
    e.type = EventType::new_trade;
    e.partition = chooser_(rng_);
    if (groups_ > 0) {
      e.partition = e.partition - e.partition % groups_ + group;
      if (e.partition >= partitions_) e.partition -= groups_;
    }
    e.buy = (rng_() & 1) != 0;
    randomize(e);
    return e;
  }

  /// Reports that the server confirmed `e` (ACCEPTED or DUPLICATE): a NEW or AMEND makes the
  /// trade available for a later AMEND/CANCEL.
  void confirmed(Event&& e) {
    if (e.type == EventType::cancel || idle_count_ >= max_idle) return;
    idle_[groups_ > 0 ? e.partition % groups_ : 0].push_back(std::move(e));
    ++idle_count_;
  }

  static constexpr std::size_t max_idle = 65536;

 private:
  void randomize(Event& e) {
    // Quantity 0.01 .. 10,000.00 (mostly whole numbers), price 1.0000 .. 1,000.0000.
    e.quantity_cents = (rng_() % 4 == 0) ? 1 + rng_() % 1000000 : 100 * (1 + rng_() % 10000);
    e.price_units = 10000 + rng_() % 9990001;
  }

  std::string prefix_;
  const PartitionChooser& chooser_;
  Mix mix_;
  std::mt19937_64 rng_;
  std::uint32_t partitions_;
  std::uint32_t groups_;
  std::uint64_t next_trade_ = 1;
  std::vector<std::vector<Event>> idle_;  // per group
  std::size_t idle_count_ = 0;
};

}  // namespace tradecapture::load
