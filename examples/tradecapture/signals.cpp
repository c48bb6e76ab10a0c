// SIGTERM/SIGINT drain, SIGHUP ignored: one guard for every pipeline command.

#include "signals.hpp"

#include "host.hpp"

#include <spdlog/logger.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace tradecapture::host {
namespace {

// Read by the handler: lock-free atomics and sig_atomic_t only.
std::atomic<int> g_write_fd{-1};
volatile sig_atomic_t g_first_signal = 0;
volatile sig_atomic_t g_second_is_default = 1;

extern "C" void on_host_signal(int sig) {
  const int saved_errno = errno;
  if (sig != SIGHUP) {
    if (g_first_signal == 0) g_first_signal = sig;
    if (g_second_is_default != 0) {
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
    }
  }
  const int fd = g_write_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const unsigned char c = static_cast<unsigned char>(sig);
    [[maybe_unused]] ssize_t n = ::write(fd, &c, 1);  // a full pipe: the thread is behind
  }
  errno = saved_errno;
}

}  // namespace

void ignore_hangups() { ::signal(SIGHUP, SIG_IGN); }

struct SignalGuard::Saved {
  struct sigaction int_ {};
  struct sigaction term_ {};
  struct sigaction hup_ {};
};

SignalGuard::SignalGuard(Options options)
    : options_(std::move(options)), saved_(std::make_unique<Saved>()) {
  if (::pipe2(fds_, O_CLOEXEC) != 0 || ::fcntl(fds_[1], F_SETFL, O_NONBLOCK) != 0)
    throw HostError(std::string("cannot create a pipe: ") + std::strerror(errno));
  g_first_signal = 0;
  g_second_is_default = options_.second_is_default ? 1 : 0;
  g_write_fd.store(fds_[1]);
  thread_ = std::thread([this] { run_(); });
  struct sigaction sa {};
  sa.sa_handler = on_host_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &saved_->int_);
  ::sigaction(SIGTERM, &sa, &saved_->term_);
  if (options_.hangup_message.empty()) {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    ::sigaction(SIGHUP, &ignore, &saved_->hup_);
  } else {
    ::sigaction(SIGHUP, &sa, &saved_->hup_);
  }
}

SignalGuard::SignalGuard(std::function<void(int sig, int count)> on_stop)
    : SignalGuard([&] {
        Options options;
        options.on_stop = std::move(on_stop);
        return options;
      }()) {}

SignalGuard::~SignalGuard() {
  ::sigaction(SIGINT, &saved_->int_, nullptr);
  ::sigaction(SIGTERM, &saved_->term_, nullptr);
  ::sigaction(SIGHUP, &saved_->hup_, nullptr);
  g_write_fd.store(-1);
  const unsigned char stop = 0;
  while (::write(fds_[1], &stop, 1) < 0 && (errno == EINTR || errno == EAGAIN)) {
  }
  thread_.join();
  ::close(fds_[0]);
  ::close(fds_[1]);
}

int SignalGuard::first_signal() noexcept { return g_first_signal; }

void SignalGuard::run_() {
  int count = 0;
  bool hangup_seen = false;
  for (;;) {
    unsigned char c = 0;
    const ssize_t n = ::read(fds_[0], &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || c == 0) return;
    if (c == SIGHUP) {
      if (!hangup_seen && options_.logger) options_.logger->warn(options_.hangup_message);
      hangup_seen = true;
      continue;
    }
    if (options_.on_stop) options_.on_stop(c, ++count);
  }
}

}  // namespace tradecapture::host
