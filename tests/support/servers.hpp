#pragma once
// Throwaway PostgreSQL and Redis servers for tests: a temporary data directory, the loopback
// address, a free port; stopped by PID. A server that cannot start throws with its log, so a
// test that needs it fails loudly instead of being skipped.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tctest {

/// A free TCP port on 127.0.0.1 (bound to port 0, read back, closed).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("free_port: cannot bind 127.0.0.1:0");
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// True when something accepts TCP connections on 127.0.0.1:port.
inline bool port_open(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Starts `argv` as a child (stdout/stderr to `log`); returns its PID.
inline pid_t spawn(const std::vector<std::string>& argv, const std::filesystem::path& log) {
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::setpgid(0, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

/// Runs `argv` to completion; throws with the log when it fails.
inline void run_checked(const std::vector<std::string>& argv, const std::filesystem::path& log) {
  pid_t pid = spawn(argv, log);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("command failed: " + argv[0] + "\n" + slurp(log));
}

/// Stops a child by PID: SIGTERM, then SIGKILL after `grace`; reaps it.
inline void stop_pid(pid_t pid, std::chrono::milliseconds grace = std::chrono::seconds(10)) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  const auto until = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < until) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

/// A fresh temporary directory, removed with everything in it when this goes.
class TempDir {
 public:
  explicit TempDir(const std::string& stem) {
    std::string tmpl = (std::filesystem::temp_directory_path() / (stem + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  std::string string() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

/// Waits until `ready()` (tried every 20 ms, `tries` times); throws with `log` when the child
/// `pid` exits first or the time is up.
template <class Ready>
void wait_started(pid_t pid, Ready ready, int tries, const std::string& what,
                  const std::filesystem::path& log) {
  for (int i = 0; i < tries; ++i) {
    if (ready()) return;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error(what + " did not start:\n" + slurp(log));
}

/// A server run as a child process on a free port of 127.0.0.1, with a temporary directory.
class ChildServer {
 public:
  virtual ~ChildServer() = default;
  virtual void start() = 0;
  virtual void stop() = 0;
  /// Stops and starts the server on the same port.
  void restart() {
    stop();
    start();
  }
  int port() const { return port_; }

 protected:
  explicit ChildServer(const std::string& stem) : dir_(stem) {}
  TempDir dir_;
  int port_ = free_port();
  pid_t pid_ = -1;
};

/// A redis-server on 127.0.0.1 with no persistence, in a temporary directory. It comes back
/// empty from a restart().
class RedisServer final : public ChildServer {
 public:
  explicit RedisServer(std::string password = {})
      : ChildServer("tc-redis"), password_(std::move(password)) {
    start();
  }
  ~RedisServer() override { stop(); }

  void start() override {
    std::vector<std::string> argv{"redis-server", "--port", std::to_string(port_), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                                  dir_.string(), "--daemonize", "no"};
    if (!password_.empty()) {
      argv.push_back("--requirepass");
      argv.push_back(password_);
    }
    pid_ = spawn(argv, dir_ / "redis.log");
    wait_started(
        pid_, [&] { return port_open(port_); }, 500, "redis-server", dir_ / "redis.log");
  }
  void stop() override {
    stop_pid(pid_);
    pid_ = -1;
  }
  std::string uri() const {
    return "redis://" + (password_.empty() ? "" : ":" + password_ + "@") + "127.0.0.1:" +
           std::to_string(port_);
  }

 private:
  std::string password_;
};

/// A PostgreSQL 15 cluster on 127.0.0.1, run as the `postgres` user (it refuses root), in a
/// temporary directory, with its default durability (fsync, synchronous_commit on).
class PostgresServer final : public ChildServer {
 public:
  /// `settings`: extra server settings, "name=value" each (passed as -c).
  explicit PostgresServer(std::vector<std::string> settings = {})
      : ChildServer("tc-pg"), settings_(std::move(settings)) {
    const std::string bin = "/usr/lib/postgresql/15/bin/";
    if (::geteuid() == 0) {
      run_checked({"chown", "-R", "postgres:postgres", dir_.string()}, dir_ / "setup.log");
    }
    run_checked(as_postgres_({bin + "initdb", "-D", (dir_ / "data").string(), "-A", "trust", "-U",
                              "postgres", "--no-sync", "-E", "UTF8", "--locale=C"}),
                dir_ / "initdb.log");
    start();
    run_checked({bin + "createdb", "-h", "127.0.0.1", "-p", std::to_string(port_), "-U",
                 "postgres", "tradecapture"},
                dir_ / "createdb.log");
  }
  ~PostgresServer() override { stop(); }

  void start() override {
    const std::string bin = "/usr/lib/postgresql/15/bin/";
    std::vector<std::string> argv{bin + "postgres", "-D", (dir_ / "data").string(), "-p",
                                  std::to_string(port_), "-k", dir_.string(), "-c",
                                  "listen_addresses=127.0.0.1", "-c", "max_connections=200"};
    for (const auto& s : settings_) {
      argv.push_back("-c");
      argv.push_back(s);
    }
    pid_ = spawn(as_postgres_(std::move(argv)), dir_ / "postgres.log");
    // Accepting TCP is not enough: wait until it accepts sessions ("starting up" is refused).
    const std::string isready =
        bin + "pg_isready -q -h 127.0.0.1 -U postgres -p " + std::to_string(port_);
    wait_started(
        pid_, [&] { return port_open(port_) && ::system(isready.c_str()) == 0; }, 1000, "postgres",
        dir_ / "postgres.log");
  }
  /// Fast shutdown by PID (SIGINT), reaped.
  void stop() override {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGINT);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  /// A libpq URI for the test database.
  std::string uri() const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/tradecapture";
  }

  /// The postmaster's process id (-1 when stopped).
  pid_t pid() const { return pid_; }

 private:
  std::vector<std::string> settings_;
  static std::vector<std::string> as_postgres_(std::vector<std::string> argv) {
    if (::geteuid() != 0) return argv;
    std::vector<std::string> out{"setpriv", "--reuid=postgres", "--regid=postgres",
                                 "--init-groups", "--"};
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }
};

/// The test process's throwaway Redis, started on first use, stopped at exit.
inline RedisServer& shared_redis() {
  static RedisServer server;
  return server;
}

}  // namespace tctest
