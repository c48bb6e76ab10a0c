// The Redis lock's own checks: AUTH, bad URIs, Redis down and back. The shared PartitionLock
// suite runs on Redis too (tests/common/test_lock_conformance.cpp, registered by redis_context.cpp).

#include <tradecapture/redis_lock.hpp>

#include "common/lock_conformance.hpp"
#include "support/servers.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace tradecapture;
using namespace std::chrono_literals;
using namespace tctest::lock_ops;

TEST_CASE("Redis lock: AUTH with a password, bad URIs, Redis down and back") {
  SUBCASE("password") {
    tctest::RedisServer secured("s3cret");
    auto ok = open_redis_lock(secured.uri());
    REQUIRE(ok);
    CHECK(ok.value()->ping());
    auto wrong = open_redis_lock("redis://:wrong@127.0.0.1:" + std::to_string(secured.port()));
    REQUIRE_FALSE(wrong);
    CHECK(wrong.error() == errc::lock_unavailable);
  }
  SUBCASE("bad URIs") {
    for (const char* uri : {"http://127.0.0.1:1", "redis://", "redis://127.0.0.1:notaport",
                            "redis://127.0.0.1:6379/x", "redis://user@127.0.0.1:6379"}) {
      INFO(uri);
      auto r = open_redis_lock(uri);
      REQUIRE_FALSE(r);
      CHECK(r.error() == errc::bad_uri);
    }
  }
  SUBCASE("down, then restarted empty: unavailable, then grants again") {
    tctest::RedisServer server;
    RedisLockOptions o;
    o.lease = 10s;
    auto lock = open_redis_lock(server.uri(), o).value();
    const auto k = key("restart");
    Grant before = acquire_one(*lock, k);
    server.stop();
    std::vector<PartitionKey> ks{k};
    auto down = lock->try_acquire(ks);
    REQUIRE_FALSE(down);
    CHECK(down.error() == errc::lock_unavailable);
    CHECK(classify(down.error()) == retry_class::retry_now);
    server.start();
    // Redis lost everything (no persistence): our lease is gone, and the fence counter starts
    // again (Grant::fence is informational; the store's claim is the write token, see
    // test_fencing.cpp). Grants keep increasing from there.
    std::vector<Grant> gs{before};
    auto renewed = lock->renew(gs);
    REQUIRE(renewed);
    CHECK_FALSE(renewed.value()[0]);
    Grant after = acquire_one(*lock, k);
    CHECK(after.fence >= 1);
    CHECK(after.token != before.token);
    lock->release(std::span<const Grant>(&after, 1));
    Grant next = acquire_one(*lock, k);
    CHECK(next.fence > after.fence);
  }
}
