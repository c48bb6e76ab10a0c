#pragma once
// Bounded noise (spec section 6, point 6): one log line per fault episode and kind, then at most
// one summary line per interval with the count of what was suppressed, and one line on recovery.
// LogLimiter is not thread-safe: one instance per shard (or guarded by its owner), and reads no
// clock: the caller passes the time, so a sans-I/O core stays deterministic. FaultLog (below) is
// the thread-safe, clock-reading form the backends use.

#include <spdlog/spdlog.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

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

/// One line of text from a driver's message: newlines, tabs and other control characters become
/// blanks, runs of blanks one blank, no blank at either end (libpq's messages span lines).
inline std::string fold_message(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  bool blank = false;
  for (char ch : message) {
    const auto u = static_cast<unsigned char>(ch);
    if (std::isspace(u) || std::iscntrl(u)) {
      blank = true;
      continue;
    }
    if (blank && !out.empty()) out += ' ';
    blank = false;
    out += ch;
  }
  return out;
}

/// The wall-clock time of a steady-clock instant, as HH:MM:SS local time.
inline std::string clock_time(std::chrono::steady_clock::time_point at) {
  const auto wall = std::chrono::system_clock::now() -
                    std::chrono::duration_cast<std::chrono::system_clock::duration>(
                        std::chrono::steady_clock::now() - at);
  const std::time_t t = std::chrono::system_clock::to_time_t(wall);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

/// Bounded fault logging for a backend called from several threads (a LogLimiter behind a
/// mutex). `subject` names the dependency and its endpoint ("PostgreSQL 127.0.0.1:5432/db",
/// "redis 127.0.0.1:6379"), never a password. Per kind of failure ("unavailable", ...):
///
/// - the first failure of an episode: `tradecapture: SUBJECT KIND: REASON`
/// - then at most one line per interval: `tradecapture: SUBJECT KIND since HH:MM:SS: N failures
///   (REASON of the latest)`
/// - the next success: `tradecapture: SUBJECT is back (was KIND since HH:MM:SS: N failures over
///   S s)` (for a single failure of a kind logged below warn, no line).
class FaultLog {
 public:
  using Clock = std::chrono::steady_clock;

  FaultLog(std::shared_ptr<spdlog::logger> logger, std::string subject,
           std::chrono::milliseconds interval = std::chrono::seconds(5))
      : logger_(logger ? std::move(logger) : spdlog::default_logger()),
        subject_(std::move(subject)),
        limiter_(interval) {}

  const std::shared_ptr<spdlog::logger>& logger() const { return logger_; }
  const std::string& subject() const { return subject_; }

  /// One failure of `kind`; `reason` is folded to one line.
  void failure(const std::string& kind, std::string_view reason,
               spdlog::level::level_enum level = spdlog::level::warn) {
    const auto now = Clock::now();
    std::string line;
    {
      std::lock_guard lock(mutex_);
      std::uint64_t suppressed = 0, count = 0;
      auto& k = kinds_[kind];
      k.level = level;
      if (!limiter_.occur(kind, now, suppressed, count)) {
        any_open_.store(true, std::memory_order_relaxed);
        return;
      }
      any_open_.store(true, std::memory_order_relaxed);
      if (count == 1) {
        k.since = now;
        line = fmt::format("tradecapture: {} {}: {}", subject_, kind, fold_message(reason));
      } else {
        line = fmt::format("tradecapture: {} {} since {}: {} failures ({})", subject_, kind,
                           clock_time(k.since), count, fold_message(reason));
      }
    }
    logger_->log(level, "{}", line);
  }

  /// True while some kind has an open episode (cheap: no lock).
  bool failing() const { return any_open_.load(std::memory_order_relaxed); }

  /// A success: ends every open episode, one line each.
  void success() {
    if (!any_open_.load(std::memory_order_relaxed)) return;
    const auto now = Clock::now();
    std::vector<std::pair<spdlog::level::level_enum, std::string>> lines;
    {
      std::lock_guard lock(mutex_);
      for (auto& [kind, k] : kinds_) {
        std::uint64_t count = 0;
        LogLimiter::Time since{};
        if (!limiter_.recover(kind, count, since)) continue;
        if (count == 1 && k.level != spdlog::level::warn) continue;
        const double seconds = std::chrono::duration<double>(now - since).count();
        lines.emplace_back(
            k.level < spdlog::level::info ? k.level : spdlog::level::info,
            fmt::format("tradecapture: {} is back (was {} since {}: {} failure{} over {:.1f} s)",
                        subject_, kind, clock_time(since), count, count == 1 ? "" : "s",
                        seconds));
      }
      kinds_.clear();
      any_open_.store(false, std::memory_order_relaxed);
    }
    for (auto& [level, line] : lines) logger_->log(level, "{}", line);
  }

 private:
  struct Kind {
    spdlog::level::level_enum level = spdlog::level::warn;
    Clock::time_point since{};
  };
  std::shared_ptr<spdlog::logger> logger_;
  std::string subject_;
  std::mutex mutex_;
  LogLimiter limiter_;
  std::unordered_map<std::string, Kind> kinds_;
  std::atomic<bool> any_open_{false};
};

}  // namespace tradecapture::detail
