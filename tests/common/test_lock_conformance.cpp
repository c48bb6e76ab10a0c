// PartitionLock conformance: every backend from lock_factories() passes the same checks.

#include "common/lock_conformance.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <thread>

using namespace tradecapture;
using namespace std::chrono_literals;
using namespace tctest::lock_ops;


TEST_CASE("PartitionLock conformance") {
  for (const auto& factory : tctest::lock_factories()) {
    SUBCASE(factory.name.c_str()) {
      SUBCASE("grant, exclusion, release, higher fence on the next grant") {
        auto lock = factory.make(10s);
        REQUIRE(lock->ping());
        const auto k = key("acct-" + factory.name);
        Grant g1 = acquire_one(*lock, k);
        CHECK(g1.partition == k);
        CHECK_FALSE(g1.token.empty());
        CHECK(g1.expires > std::chrono::steady_clock::now());
        CHECK(acquire_error(*lock, k) == errc::lock_busy);
        lock->release(std::span<const Grant>(&g1, 1));
        Grant g2 = acquire_one(*lock, k);
        CHECK(g2.fence > g1.fence);
        CHECK(g2.token != g1.token);
      }
      SUBCASE("Grant::fence strictly increases grant after grant on one lock") {
        // A counter of the lock's own, for diagnostics; nothing here depends on a clock.
        auto lock = factory.make(10s);
        static std::atomic<int> round{0};
        const auto k = key("counter-" + factory.name + "-" + std::to_string(++round));
        std::uint64_t previous = 0;
        for (int i = 0; i < 5; ++i) {
          Grant g = acquire_one(*lock, k);
          CHECK(g.fence > previous);
          previous = g.fence;
          lock->release(std::span<const Grant>(&g, 1));
        }
      }
      SUBCASE("partitions are independent, '_' joins are not confused") {
        auto lock = factory.make(10s);
        std::vector<PartitionKey> ks{key("A_B", "C"), key("A", "B_C"), key("X")};
        auto r = lock->try_acquire(ks);
        REQUIRE(r);
        for (auto& g : r.value()) CHECK(g);
      }
      SUBCASE("renew extends; a stale token cannot renew or release") {
        auto lock = factory.make(10s);
        const auto k = key("renew-" + factory.name);
        Grant g = acquire_one(*lock, k);
        const auto before = g.expires;
        std::this_thread::sleep_for(5ms);
        std::vector<Grant> gs{g};
        auto r = lock->renew(gs);
        REQUIRE(r);
        CHECK(r.value()[0]);
        CHECK(gs[0].expires > before);
        Grant forged = g;
        forged.token = "not-mine";
        std::vector<Grant> fs{forged};
        auto rf = lock->renew(fs);
        REQUIRE(rf);
        REQUIRE_FALSE(rf.value()[0]);
        CHECK(rf.value()[0].error() == errc::lease_lost);
        lock->release(fs);  // must not free the real holder's lease
        CHECK(acquire_error(*lock, k) == errc::lock_busy);
      }
      SUBCASE("an expired lease can be taken over, with a higher fence; the old holder lost it") {
        auto lock = factory.make(60ms);
        const auto k = key("expire-" + factory.name);
        Grant old = acquire_one(*lock, k);
        std::this_thread::sleep_for(150ms);
        Grant fresh = acquire_one(*lock, k);
        CHECK(fresh.fence > old.fence);
        std::vector<Grant> gs{old};
        auto r = lock->renew(gs);
        REQUIRE(r);
        REQUIRE_FALSE(r.value()[0]);
        CHECK(r.value()[0].error() == errc::lease_lost);
        // The old holder's release must not free the new holder's lease.
        lock->release(gs);
        CHECK(acquire_error(*lock, k) == errc::lock_busy);
      }
      SUBCASE("many threads racing for one partition: one winner at a time, fences increase") {
        auto lock = factory.make(10s);
        const auto k = key("race-" + factory.name);
        std::atomic<int> holders{0};
        std::atomic<int> max_holders{0};
        std::mutex mu;
        std::vector<std::uint64_t> fences;
        std::vector<std::thread> ts;
        for (int t = 0; t < 4; ++t) {
          ts.emplace_back([&] {
            for (int i = 0; i < 50; ++i) {
              std::vector<PartitionKey> ks{k};
              auto r = lock->try_acquire(ks);
              if (!r || !r.value()[0]) {
                std::this_thread::yield();
                continue;
              }
              int h = ++holders;
              int m = max_holders.load();
              while (h > m && !max_holders.compare_exchange_weak(m, h)) {
              }
              {
                std::lock_guard lk(mu);
                fences.push_back(r.value()[0].value().fence);
              }
              --holders;
              Grant g = r.value()[0].value();
              lock->release(std::span<const Grant>(&g, 1));
            }
          });
        }
        for (auto& t : ts) t.join();
        CHECK(max_holders.load() == 1);
        REQUIRE_FALSE(fences.empty());
        std::set<std::uint64_t> unique(fences.begin(), fences.end());
        CHECK(unique.size() == fences.size());
      }
    }
  }
}
