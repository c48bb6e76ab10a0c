// The Redis lock's error text and bounded noise (spec section 6, point 6): reasons (refused, wrong
// password, NOAUTH, TLS, ACL users), host:port in every line, its reconnect backoff.

#include <tradecapture/detail/log_limiter.hpp>
#include <tradecapture/redis_lock.hpp>

#include "support/log_capture.hpp"
#include "support/servers.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>

using namespace tradecapture;
using namespace std::chrono_literals;

namespace {

using tctest::CapturedLog;

template <class R>
bool error_of_bad(const R& r) {
  return !r && r.error() == errc::bad_uri;
}

}  // namespace

TEST_CASE("Redis lock errors name host:port and the reason") {
  SUBCASE("refused") {
    CapturedLog log;
    RedisLockOptions o;
    o.logger = log.logger;
    const int port = tctest::free_port();
    auto r = open_redis_lock("redis://127.0.0.1:" + std::to_string(port), o);
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::lock_unavailable);
    const std::string text = log.text();
    INFO(text);
    CHECK(text.find("Redis 127.0.0.1:" + std::to_string(port)) != std::string::npos);
    CHECK(text.find("Connection refused") != std::string::npos);
  }
  SUBCASE("TLS and bad URIs say why") {
    CapturedLog log;
    RedisLockOptions o;
    o.logger = log.logger;
    auto r = open_redis_lock("rediss://:secret@127.0.0.1:6380", o);
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::bad_uri);
    CHECK(log.text().find("TLS is not supported in this build") != std::string::npos);
    CHECK(log.text().find("secret") == std::string::npos);
    for (const char* uri : {"redis://user@127.0.0.1:6379", "redis://a:%zz@127.0.0.1",
                            "redis://[::1", "redis://:@127.0.0.1"}) {
      INFO(uri);
      CHECK(error_of_bad(open_redis_lock(uri, o)));
    }
  }
  SUBCASE("password: wrong, missing, ACL user") {
    tctest::RedisServer secured("s3cret");
    const std::string hostport = "127.0.0.1:" + std::to_string(secured.port());
    CapturedLog log;
    RedisLockOptions o;
    o.logger = log.logger;
    auto wrong = open_redis_lock("redis://:wrong@" + hostport, o);
    REQUIRE_FALSE(wrong);
    CHECK(wrong.error() == errc::lock_unavailable);
    auto missing = open_redis_lock("redis://" + hostport, o);
    REQUIRE_FALSE(missing);
    const std::string text = log.text();
    INFO(text);
    CHECK(text.find("Redis " + hostport) != std::string::npos);
    CHECK(text.find("AUTH refused: WRONGPASS") != std::string::npos);
    CHECK(text.find("NOAUTH") != std::string::npos);
    CHECK(text.find("wrong") == std::string::npos);  // never the password

    const std::string cli = "redis-cli -h 127.0.0.1 -p " + std::to_string(secured.port()) +
                            " -a s3cret --no-auth-warning ";
    REQUIRE(std::system((cli + "ACL SETUSER alice on '>p@ss:w' '~*' '+@all' >/dev/null").c_str()) ==
            0);
    auto alice = open_redis_lock("redis://alice:p%40ss%3Aw@" + hostport + "/0", o);
    REQUIRE(alice);
    CHECK(alice.value()->ping());
    auto bad_user = open_redis_lock("redis://bob:p%40ss%3Aw@" + hostport, o);
    REQUIRE_FALSE(bad_user);
    CHECK(log.text().find("AUTH as user 'bob' refused") != std::string::npos);
  }
}

TEST_CASE("Redis lock: one connection, reconnect backoff, calls fail fast, bounded log") {
  auto server = std::make_unique<tctest::RedisServer>();
  const int port = server->port();
  CapturedLog log;
  RedisLockOptions o;
  o.logger = log.logger;
  o.reconnect_backoff_min = 100ms;
  o.reconnect_backoff_max = 400ms;
  o.io_timeout = 500ms;
  auto lock = open_redis_lock("redis://127.0.0.1:" + std::to_string(port), o).value();
  REQUIRE(lock->ping());
  server->stop();

  // A listener on Redis' port that accepts and closes: each connect attempt is counted.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd, 64) == 0);
  std::atomic<int> accepted{0};
  std::atomic<bool> done{false};
  std::thread acceptor([&] {
    timeval tv{0, 50000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (!done) {
      int c = ::accept(fd, nullptr, nullptr);
      if (c >= 0) {
        ++accepted;
        ::close(c);
      }
    }
  });
  int calls = 0;
  const auto until = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < until) {
    auto r = lock->ping();
    CHECK_FALSE(r);
    ++calls;
    std::this_thread::sleep_for(1ms);
  }
  done = true;
  acceptor.join();
  ::close(fd);
  INFO("calls " << calls << ", connect attempts " << accepted.load());
  CHECK(calls > 200);            // failing calls do not wait for anything
  CHECK(accepted.load() >= 2);   // it keeps trying...
  CHECK(accepted.load() <= 8);   // ...no more often than the backoff allows
  auto lines = log.lines();
  INFO(log.text());
  CHECK(lines.size() <= 3);
  for (const auto& l : lines)
    CHECK(l.find("Redis 127.0.0.1:" + std::to_string(port)) != std::string::npos);

  server->start();
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    back = static_cast<bool>(lock->ping());
    if (!back) std::this_thread::sleep_for(20ms);
  }
  CHECK(back);
  CHECK(log.text().find("is back (was unavailable since") != std::string::npos);
}
