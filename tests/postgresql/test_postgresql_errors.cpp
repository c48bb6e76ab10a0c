// The PostgreSQL store's failure lines (spec section 6, point 6): one line each, naming the
// endpoint, rate-limited.

#include <tradecapture/soci_store.hpp>

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
}  // namespace

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
