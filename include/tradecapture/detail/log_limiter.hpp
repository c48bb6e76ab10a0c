#pragma once
// Bounded noise (spec section 6, point 6): one log line per fault episode and kind, then at most
// one summary line per interval with the count of what was suppressed, and one line on recovery.
// Not thread-safe: one instance per shard (or guarded by its owner). Reads no clock: the caller
// passes the time, so a sans-I/O core stays deterministic.

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace tradecapture::detail {

class LogLimiter {
 public:
  using Time = std::chrono::steady_clock::time_point;

  explicit LogLimiter(std::chrono::milliseconds interval = std::chrono::seconds(5))
      : interval_(interval) {}

  /// One more occurrence of `kind`. Returns true when a line should be logged now; then
  /// `suppressed` holds how many occurrences were not logged since the last line and
  /// `episode_count` how many occurred since the episode began.
  bool occur(const std::string& kind, Time now, std::uint64_t& suppressed,
             std::uint64_t& episode_count) {
    auto& e = episodes_[kind];
    ++e.count;
    episode_count = e.count;
    if (e.count == 1) {
      e.started = now;
      e.logged = now;
      suppressed = 0;
      return true;
    }
    if (now - e.logged >= interval_) {
      suppressed = e.count - 1 - e.lines_count;
      e.lines_count = e.count - 1;
      e.logged = now;
      return true;
    }
    return false;
  }

  /// The episode of `kind` ended (a success after failures). Returns true when there was one;
  /// then `count` holds its occurrences and `since` when it began.
  bool recover(const std::string& kind, std::uint64_t& count, Time& since) {
    auto it = episodes_.find(kind);
    if (it == episodes_.end()) return false;
    count = it->second.count;
    since = it->second.started;
    episodes_.erase(it);
    return true;
  }

  /// True while an episode of `kind` is open.
  bool open(const std::string& kind) const { return episodes_.count(kind) != 0; }

 private:
  struct Episode {
    Time started{};
    Time logged{};
    std::uint64_t count = 0;
    std::uint64_t lines_count = 0;  // occurrences accounted for by logged lines
  };
  std::chrono::milliseconds interval_;
  std::unordered_map<std::string, Episode> episodes_;
};

}  // namespace tradecapture::detail
