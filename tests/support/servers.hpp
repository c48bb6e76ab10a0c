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

inline std::filesystem::path make_temp_dir(const std::string& stem) {
  std::string tmpl = (std::filesystem::temp_directory_path() / (stem + "-XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

/// A redis-server on 127.0.0.1 with no persistence, in a temporary directory.
class RedisServer {
 public:
  explicit RedisServer(std::string password = {}) : password_(std::move(password)) {
    dir_ = make_temp_dir("tc-redis");
    port_ = free_port();
    start();
  }
  ~RedisServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  void start() {
    std::vector<std::string> argv{"redis-server", "--port", std::to_string(port_), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                                  dir_.string(), "--daemonize", "no"};
    if (!password_.empty()) {
      argv.push_back("--requirepass");
      argv.push_back(password_);
    }
    pid_ = spawn(argv, dir_ / "redis.log");
    wait_up_("redis-server");
  }
  void stop() {
    stop_pid(pid_);
    pid_ = -1;
  }
  /// Stops and starts the server on the same port (it comes back empty).
  void restart() {
    stop();
    start();
  }
  int port() const { return port_; }
  std::string uri() const {
    return "redis://" + (password_.empty() ? "" : ":" + password_ + "@") + "127.0.0.1:" +
           std::to_string(port_);
  }

 private:
  void wait_up_(const char* what) {
    for (int i = 0; i < 500; ++i) {
      if (port_open(port_)) return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error(std::string(what) + " did not start:\n" + slurp(dir_ / "redis.log"));
  }
  std::string password_;
  std::filesystem::path dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

/// A PostgreSQL 15 cluster on 127.0.0.1, run as the `postgres` user (it refuses root), in a
/// temporary directory, with its default durability (fsync, synchronous_commit on).
class PostgresServer {
 public:
  PostgresServer() {
    dir_ = make_temp_dir("tc-pg");
    port_ = free_port();
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
  ~PostgresServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  void start() {
    const std::string bin = "/usr/lib/postgresql/15/bin/";
    pid_ = spawn(as_postgres_({bin + "postgres", "-D", (dir_ / "data").string(), "-p",
                               std::to_string(port_), "-k", dir_.string(), "-c",
                               "listen_addresses=127.0.0.1", "-c", "max_connections=200"}),
                 dir_ / "postgres.log");
    for (int i = 0; i < 1000; ++i) {
      // Accepting TCP is not enough: wait until it accepts sessions ("starting up" is refused).
      if (port_open(port_) &&
          ::system(("/usr/lib/postgresql/15/bin/pg_isready -q -h 127.0.0.1 -U postgres -p " +
                    std::to_string(port_))
                       .c_str()) == 0) {
        return;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("postgres did not start:\n" + slurp(dir_ / "postgres.log"));
  }
  /// Fast shutdown by PID (SIGINT), reaped.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGINT);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void restart() {
    stop();
    start();
  }
  int port() const { return port_; }
  /// A libpq URI for the test database.
  std::string uri() const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/tradecapture";
  }

 private:
  static std::vector<std::string> as_postgres_(std::vector<std::string> argv) {
    if (::geteuid() != 0) return argv;
    std::vector<std::string> out{"setpriv", "--reuid=postgres", "--regid=postgres",
                                 "--init-groups", "--"};
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }
  std::filesystem::path dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace tctest
