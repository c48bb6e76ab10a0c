// Bounded noise and error text of the backends (spec section 6, point 6): FaultLog, the Redis
// lock's reasons (refused, wrong password, NOAUTH, TLS, ACL users), its reconnect backoff, and the
// PostgreSQL store's one-line, endpoint-naming, rate-limited failure lines.

#include <tradecapture/detail/log_limiter.hpp>

#include "support/log_capture.hpp"
#include "support/servers.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>

#ifdef TRADECAPTURE_HAVE_REDIS
#include <tradecapture/redis_lock.hpp>
#endif
#ifdef TRADECAPTURE_HAVE_POSTGRES_TESTS
#include <tradecapture/soci_store.hpp>
#endif

using namespace tradecapture;
using namespace std::chrono_literals;

namespace {

using tctest::CapturedLog;

template <class R>
bool error_of_bad(const R& r) {
  return !r && r.error() == errc::bad_uri;
}

}  // namespace

TEST_CASE("FaultLog: first line, summaries per interval, one line on recovery") {
  CHECK(detail::fold_message("a\n\tb  c\r\n") == "a b c");
  CHECK(detail::fold_message("  x  ") == "x");
  CapturedLog log;
  detail::FaultLog faults(log.logger, "Thing 127.0.0.1:1", 200ms);
  faults.success();  // nothing open: no line
  CHECK(log.lines().empty());
  for (int i = 0; i < 1000; ++i) faults.failure("unavailable", "refused\nline two");
  auto lines = log.lines();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] == "warning tradecapture: Thing 127.0.0.1:1 unavailable: refused line two");
  std::this_thread::sleep_for(250ms);
  faults.failure("unavailable", "still refused");
  lines = log.lines();
  REQUIRE(lines.size() == 2);
  CHECK(lines[1].find("unavailable since ") != std::string::npos);
  CHECK(lines[1].find(": 1001 failures (still refused)") != std::string::npos);
  faults.success();
  faults.success();
  lines = log.lines();
  REQUIRE(lines.size() == 3);
  CHECK(lines[2].find("info tradecapture: Thing 127.0.0.1:1 is back (was unavailable since") == 0);
  // A single low-level failure ends without a line.
  faults.failure("busy", "locked", spdlog::level::debug);
  faults.success();
  CHECK(log.lines().size() == 4);
}

#ifdef TRADECAPTURE_HAVE_REDIS
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
#endif

#ifdef TRADECAPTURE_HAVE_POSTGRES_TESTS
TEST_CASE("PostgreSQL store: failures on one line, naming the endpoint, bounded") {
  tctest::PostgresServer pg;
  CapturedLog log;
  SociStoreOptions o;
  o.logger = log.logger;
  auto store = open_soci_store(pg.uri(), o).value();
  REQUIRE(store->ping());
  pg.stop();
  for (int i = 0; i < 300; ++i) CHECK_FALSE(store->ping());
  const std::string endpoint =
      "PostgreSQL 127.0.0.1:" + std::to_string(pg.port()) + "/tradecapture";
  auto lines = log.lines();
  std::erase_if(lines, [](const std::string& l) {  // opening the store: one line per migration
    return l.find("applied schema migration") != std::string::npos;
  });
  INFO(log.text());
  CHECK(lines.size() <= 4);  // first failure, a reconnect attempt, no summary within 5 s
  bool refused = false;
  for (const auto& l : lines) {
    if (l.rfind("warning", 0) != 0 && l.rfind("error", 0) != 0) continue;
    CHECK(l.find(endpoint) != std::string::npos);
    if (l.find("Connection refused") != std::string::npos) refused = true;
  }
  pg.start();
  REQUIRE(store->ping());
  CHECK(log.text().find(endpoint + " is back (was unavailable since") != std::string::npos);
  CHECK((refused || log.text().find("server closed the connection") != std::string::npos));
}
#endif
