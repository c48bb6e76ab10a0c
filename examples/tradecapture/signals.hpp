#pragma once
/// \file signals.hpp
/// The signals of the hosts that run a pipeline (`replay`, `serve`, `consume`): SIGTERM and
/// SIGINT ask for a drain, SIGHUP is ignored (a closed terminal or a process manager's reload
/// must not kill a host without its drain).

#include <spdlog/fwd.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace tradecapture::host {

/// Ignores SIGHUP from now on (call first thing in a command; a SignalGuard keeps it ignored).
void ignore_hangups();

/// While alive, catches SIGINT, SIGTERM and SIGHUP and hands them to a thread of its own, so that
/// the reactions are ordinary code (logging, locks), never run in a signal handler. One guard
/// per process at a time. Destruction restores the dispositions it found.
class SignalGuard {
 public:
  struct Options {
    /// Called for each SIGINT/SIGTERM, on the guard's thread: the signal, and 1 for the first,
    /// 2 for the second...
    std::function<void(int sig, int count)> on_stop;
    /// True: after the first, SIGINT and SIGTERM have their default effect (a second one ends
    /// the process at once). False: every one reaches `on_stop`.
    bool second_is_default = true;
    /// Non-empty: the first SIGHUP is logged (warn) with this message, later ones silently
    /// ignored. Empty: every SIGHUP is ignored silently.
    std::string hangup_message;
    std::shared_ptr<spdlog::logger> logger;  ///< for `hangup_message`
  };

  explicit SignalGuard(Options options);
  /// `on_stop` for SIGINT/SIGTERM (a second one has the default effect); SIGHUP ignored silently.
  explicit SignalGuard(std::function<void(int sig, int count)> on_stop);
  ~SignalGuard();
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

  /// The first SIGINT/SIGTERM received, 0 while none. Exact as soon as the handler ran (it is
  /// recorded in the handler itself, before `on_stop` runs).
  static int first_signal() noexcept;

 private:
  void run_();

  Options options_;
  int fds_[2] = {-1, -1};
  std::thread thread_;
  struct Saved;
  std::unique_ptr<Saved> saved_;
};

}  // namespace tradecapture::host
