// `tradecapture replay`: JSON lines in, durable outcomes out, in input order, in bounded memory.

#include "host.hpp"
#include "signals.hpp"

#include <tradecapture/event_codec.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/processor.hpp>

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace tradecapture::host {
namespace {

using Clock = std::chrono::steady_clock;

/// A self-pipe: `signal` (any thread, async-signal-safe) makes `fd` readable for good.
class WakePipe {
 public:
  WakePipe() {
    if (::pipe2(fds_, O_CLOEXEC | O_NONBLOCK) != 0)
      throw HostError(std::string("cannot create a pipe: ") + std::strerror(errno));
  }
  ~WakePipe() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  WakePipe(const WakePipe&) = delete;
  WakePipe& operator=(const WakePipe&) = delete;
  int fd() const noexcept { return fds_[0]; }
  void signal() noexcept {
    const char c = 1;
    [[maybe_unused]] ssize_t n = ::write(fds_[1], &c, 1);  // full pipe: already signalled
  }

 private:
  int fds_[2] = {-1, -1};
};

/// Reads an input (a path, or "-" for standard input) in large chunks and hands out its physical
/// lines without their '\n'. A last line without '\n' is still a line. A wake-up fd interrupts a
/// read that waits for a slow producer (a pipe or a terminal): the reader then ends early.
class LineReader {
 public:
  explicit LineReader(const std::string& path) : buf_(std::size_t{4} << 20) {
    if (path == "-") {
      name_ = "standard input";
      return;
    }
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw HostError("cannot open input '" + path + "': " + std::strerror(errno),
                      exit_noinput);
    owned_ = true;
    name_ = "'" + path + "'";
  }
  ~LineReader() {
    if (owned_) ::close(fd_);
  }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  /// Ends the input early once `fd` becomes readable.
  void interrupt_on(int fd) noexcept { wake_fd_ = fd; }

  /// The next line, or false at the end. The view stays valid until the next call. Throws
  /// HostError when the input cannot be read.
  bool next(std::string_view& line) {
    std::size_t scan_from = begin_;
    for (;;) {
      const char* base = buf_.data();
      if (const void* nl = std::memchr(base + scan_from, '\n', end_ - scan_from)) {
        const std::size_t pos = static_cast<std::size_t>(static_cast<const char*>(nl) - base);
        line = std::string_view(base + begin_, pos - begin_);
        begin_ = pos + 1;
        return true;
      }
      if (eof_) {
        if (begin_ == end_) return false;
        line = std::string_view(base + begin_, end_ - begin_);
        begin_ = end_;
        return true;
      }
      // Keep the partial line, make room, read more; scanning resumes after what was seen.
      const std::size_t partial = end_ - begin_;
      if (begin_ > 0) {
        std::memmove(buf_.data(), buf_.data() + begin_, partial);
        begin_ = 0;
        end_ = partial;
      }
      if (end_ == buf_.size()) buf_.resize(buf_.size() * 2);
      scan_from = partial;
      if (!read_more_()) return false;  // interrupted: a partial line is not a line
    }
  }

 private:
  /// Reads what is available; false when interrupted.
  bool read_more_() {
    for (;;) {
      if (wake_fd_ >= 0) {
        pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
          if (errno == EINTR) continue;
          throw HostError(std::string("cannot poll the input: ") + std::strerror(errno),
                          exit_noinput);
        }
        if (fds[1].revents != 0) return false;
      }
      ssize_t n = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
      if (n > 0) {
        end_ += static_cast<std::size_t>(n);
        return true;
      }
      if (n == 0) {
        eof_ = true;
        return true;
      }
      if (errno == EINTR || errno == EAGAIN) continue;
      throw HostError("cannot read input " + name_ + ": " + std::strerror(errno), exit_noinput);
    }
  }

  int fd_ = 0;
  int wake_fd_ = -1;
  bool owned_ = false;
  std::string name_;
  std::vector<char> buf_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  bool eof_ = false;
};

/// The outcomes of a replay, written in input order as soon as the contiguous prefix is known.
///
/// Each non-blank line takes a slot in a window; completions (from any thread) fill their slot,
/// and whoever completes the head writes out the ready prefix. The window is bounded: opening a
/// slot blocks while it is full, which bounds memory even when one slow event holds the head.
class OutcomeLog {
 public:
  struct Counts {
    std::uint64_t accepted = 0, duplicate = 0, stale = 0, rejected = 0, failed = 0;
    std::uint64_t outcomes() const { return accepted + duplicate + stale + rejected; }
  };

  OutcomeLog(Output* out, std::size_t window, WakePipe& wake)
      : out_(out), window_(window), wake_(wake) {}

  /// Opens the slot of the next non-blank line; blocks while the window is full.
  std::uint64_t open(std::uint64_t line, std::optional<std::string> trade_id,
                     std::optional<std::int64_t> version) {
    std::unique_lock lock(mutex_);
    room_.wait(lock, [&] { return slots_.size() < window_; });
    slots_.push_back(Slot{line, std::move(trade_id), version, {}, {}, false});
    return base_ + slots_.size() - 1;
  }

  /// Records the result of slot `index` (exactly once per slot) and writes out what is ready.
  void complete(std::uint64_t index, boost::system::error_code ec, Outcome outcome) noexcept {
    std::lock_guard lock(mutex_);
    Slot& slot = slots_[index - base_];
    slot.done = true;
    slot.ec = ec;
    slot.outcome = std::move(outcome);
    count_(slot);
    if (index != base_) return;
    bool wrote = false;
    while (!slots_.empty() && slots_.front().done) {
      Slot& s = slots_.front();
      if (!s.ec && out_ != nullptr && write_error_.empty()) {
        append_outcome_json(out_->buffer(), s.line, s.trade_id, s.version, s.outcome);
        ++written_;
        wrote = true;
      }
      slots_.pop_front();
      ++base_;
    }
    if (wrote) {
      try {
        out_->maybe_flush();
      } catch (const std::exception& e) {
        write_error_ = e.what();
        request_stop_();
      }
    }
    room_.notify_all();
  }

  /// Blocks until every opened slot is complete and written to the buffer.
  void wait_all() {
    std::unique_lock lock(mutex_);
    room_.wait(lock, [&] { return slots_.empty(); });
  }

  /// True once a submission failed or the outcomes could not be written: stop reading.
  bool should_stop() const noexcept { return stop_.load(std::memory_order_relaxed); }

  Counts counts() const noexcept {
    Counts c;
    const auto of = [&](OutcomeKind k) {
      return by_kind_[static_cast<std::size_t>(k)].load(std::memory_order_relaxed);
    };
    c.accepted = of(OutcomeKind::Accepted);
    c.duplicate = of(OutcomeKind::Duplicate);
    c.stale = of(OutcomeKind::Stale);
    c.rejected = of(OutcomeKind::Rejected);
    c.failed = failed_.load(std::memory_order_relaxed);
    return c;
  }

  /// The first submission error and its line (call after `wait_all`).
  std::optional<std::pair<boost::system::error_code, std::uint64_t>> first_failure() const {
    std::lock_guard lock(mutex_);
    return first_failure_;
  }
  /// The first write error of the outcomes file, or empty (call after `wait_all`).
  std::string write_error() const {
    std::lock_guard lock(mutex_);
    return write_error_;
  }
  /// Outcome lines written (call after `wait_all`).
  std::uint64_t written() const {
    std::lock_guard lock(mutex_);
    return written_;
  }

 private:
  struct Slot {
    std::uint64_t line;
    std::optional<std::string> trade_id;
    std::optional<std::int64_t> version;
    Outcome outcome;
    boost::system::error_code ec;
    bool done;
  };

  void request_stop_() {
    if (!stop_.exchange(true, std::memory_order_relaxed)) wake_.signal();
  }

  void count_(const Slot& s) {
    if (s.ec) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      if (!first_failure_) first_failure_.emplace(s.ec, s.line);
      request_stop_();
      return;
    }
    by_kind_[static_cast<std::size_t>(s.outcome.kind)].fetch_add(1, std::memory_order_relaxed);
  }

  Output* out_;
  const std::size_t window_;
  WakePipe& wake_;
  mutable std::mutex mutex_;
  std::condition_variable room_;
  std::deque<Slot> slots_;
  std::uint64_t base_ = 0;  // index of slots_.front()
  std::uint64_t written_ = 0;
  std::string write_error_;
  std::optional<std::pair<boost::system::error_code, std::uint64_t>> first_failure_;
  std::atomic<bool> stop_{false};
  std::array<std::atomic<std::uint64_t>, 4> by_kind_{};  // by OutcomeKind
  std::atomic<std::uint64_t> failed_{0};
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// A single '\r'-rewritten status line on stderr every 250 ms, only when stderr is a terminal.
class Progress {
 public:
  Progress(const std::atomic<std::uint64_t>& lines, const OutcomeLog& log, Clock::time_point t0)
      : lines_(lines), log_(log), t0_(t0) {
    if (::isatty(2)) thread_ = std::thread([this] { run_(); });
  }
  ~Progress() { stop(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Stops the updates and clears the status line.
  void stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
  }

 private:
  void run_() {
    std::unique_lock lock(mutex_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(250), [&] { return done_; })) {
      const auto n = lines_.load(std::memory_order_relaxed);
      const auto c = log_.counts();
      const double s = seconds_since(t0_);
      std::fprintf(
          stderr,
          "\r\033[Kreplay: %llu lines, %.0f lines/s, accepted %llu, duplicate %llu, "
          "stale %llu, rejected %llu",
          static_cast<unsigned long long>(n), s > 0 ? static_cast<double>(n) / s : 0.0,
          static_cast<unsigned long long>(c.accepted), static_cast<unsigned long long>(c.duplicate),
          static_cast<unsigned long long>(c.stale), static_cast<unsigned long long>(c.rejected));
      std::fflush(stderr);
    }
  }

  const std::atomic<std::uint64_t>& lines_;
  const OutcomeLog& log_;
  Clock::time_point t0_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

int run_replay(const ReplayOptions& o) {
  // A closed terminal must not kill a replay half way: SIGHUP is ignored (SIGINT/SIGTERM stop it
  // cleanly, below).
  ignore_hangups();
  const PipelineFlags& f = o.pipeline;
  auto logger = spdlog::default_logger();
  // Input first (no side effects), the outcomes file last (it truncates).
  LineReader reader(o.input);
  auto store = open_store(f.store, {.concurrency = f.threads + 1, .must_exist = false});
  auto lock = open_lock(f);
  std::optional<Output> out;
  if (!o.outcomes.empty()) out.emplace(o.outcomes);
  logger->info("instance {}: replaying {} into {} with lock {} ({} threads)", f.instance_id,
               o.input, store->describe(), lock->describe(), f.threads);

  PipelineOptions options = make_pipeline_options(f, logger);
  // Lines are submitted ahead of their outcomes: once a partition failed, none of its later
  // lines may be decided, so that re-sending from the first failed line is exact.
  options.sticky_failures = true;

  const auto t0 = Clock::now();
  std::atomic<std::uint64_t> lines_read{0};
  WakePipe wake;
  reader.interrupt_on(wake.fd());
  // SIGINT/SIGTERM: stop reading, finish what is in flight, write its outcomes. A second signal
  // has the default effect.
  SignalGuard signals([&wake](int, int) { wake.signal(); });
  logger->debug("instance {}: reading {} (SIGINT/SIGTERM stop the replay cleanly)", f.instance_id,
                o.input);
  // Declared before the pipeline: completions may run until the pipeline is destroyed.
  OutcomeLog log(out ? &*out : nullptr, 2 * f.max_in_flight + 4096, wake);
  Progress progress(lines_read, log, t0);
  std::string input_error;
  int input_error_code = exit_noinput;
  {
    Pipeline pipeline(store, lock, make_position_processor(), options);
    try {
      std::uint64_t n = 0;
      std::string_view line;
      while (!log.should_stop() && SignalGuard::first_signal() == 0 && reader.next(line)) {
        lines_read.store(++n, std::memory_order_relaxed);
        if (n == 1 && line.substr(0, utf8_bom.size()) == utf8_bom)
          line.remove_prefix(utf8_bom.size());
        if (is_blank_line(line)) continue;
        // The form only: the pipeline validates what it is given (once), with parse_event's
        // reason for an event that breaks a rule of spec section 1.
        ParsedEvent parsed = decode_event(line);
        const std::uint64_t slot =
            log.open(n, std::move(parsed.echo_trade_id), parsed.echo_version);
        if (!parsed.event) {
          log.complete(slot, {}, Outcome::rejected(std::move(parsed.reason)));
          continue;
        }
        pipeline.async_submit(std::move(*parsed.event),
                              [&log, slot](boost::system::error_code ec, Outcome outcome) {
                                log.complete(slot, ec, std::move(outcome));
                              });
      }
    } catch (const HostError& e) {
      input_error = e.what();
      input_error_code = e.code();
    }
    log.wait_all();
    pipeline.stop();
  }
  progress.stop();

  std::string write_error = log.write_error();
  if (out && write_error.empty()) {
    try {
      out->flush();
    } catch (const HostError& e) {
      write_error = e.what();
    }
  }
  const auto c = log.counts();
  const double secs = seconds_since(t0);
  const auto lines = lines_read.load();
  std::fprintf(
      stderr,
      "tradecapture: replay: %llu lines, %llu outcomes (accepted %llu, duplicate %llu, "
      "stale %llu, rejected %llu), %llu failed, in %.3f s (%.0f lines/s)\n",
      static_cast<unsigned long long>(lines), static_cast<unsigned long long>(c.outcomes()),
      static_cast<unsigned long long>(c.accepted), static_cast<unsigned long long>(c.duplicate),
      static_cast<unsigned long long>(c.stale), static_cast<unsigned long long>(c.rejected),
      static_cast<unsigned long long>(c.failed), secs,
      secs > 0 ? static_cast<double>(lines) / secs : 0.0);

  int rc = 0;
  if (const int sig = SignalGuard::first_signal(); sig != 0) {
    std::fprintf(stderr,
                 "tradecapture: replay interrupted after %llu lines; every line read has its "
                 "outcome, resume from line %llu\n",
                 static_cast<unsigned long long>(lines),
                 static_cast<unsigned long long>(lines + 1));
    rc = 128 + sig;
  }
  if (auto failure = log.first_failure()) {
    std::fprintf(stderr,
                 "tradecapture: replay failed: %s (first at line %llu; %llu events without an "
                 "outcome, %llu outcomes reported; re-sending the input is safe)\n",
                 failure->first.message().c_str(), static_cast<unsigned long long>(failure->second),
                 static_cast<unsigned long long>(c.failed),
                 static_cast<unsigned long long>(c.outcomes()));
    rc = exit_unavailable;
  }
  if (!input_error.empty()) {
    std::fprintf(stderr, "tradecapture: replay failed: %s (after %llu lines)\n",
                 input_error.c_str(), static_cast<unsigned long long>(lines));
    rc = input_error_code;
  }
  if (!write_error.empty()) {
    std::fprintf(stderr, "tradecapture: replay failed: %s\n", write_error.c_str());
    rc = exit_ioerr;
  }
  return rc;
}

}  // namespace tradecapture::host
