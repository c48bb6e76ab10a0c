// Bounded noise of the backends (spec section 6, point 6): FaultLog, the limiter every backend's
// failure lines go through. The Redis lock's and the PostgreSQL store's own lines are checked in
// tests/redis/test_redis_errors.cpp and tests/postgresql/test_postgresql_errors.cpp.

#include <tradecapture/detail/log_limiter.hpp>

#include "support/log_capture.hpp"

#include <doctest/doctest.h>

#include <thread>

using namespace tradecapture;
using namespace std::chrono_literals;

namespace {
using tctest::CapturedLog;
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
