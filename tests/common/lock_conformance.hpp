#pragma once
// The PartitionLock conformance suite's registry of backends: every registered factory is held to
// the same tests (test_lock_conformance.cpp). The in-process lock is built in; a backend joins
// with a static `RegisterLock` in its own test folder (tests/redis/redis_context.cpp).

#include <tradecapture/memory.hpp>
#include <tradecapture/partition_lock.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace tctest {

/// A named way to make a fresh PartitionLock with a given lease.
struct LockFactory {
  std::string name;
  std::function<std::shared_ptr<tradecapture::PartitionLock>(std::chrono::milliseconds)> make;
};

/// Every lock backend built into the test binary ("local" first).
std::vector<LockFactory>& lock_factories();

/// Registers a lock backend with the suite from a static object in the backend's test folder.
struct RegisterLock {
  explicit RegisterLock(LockFactory factory);
};

/// Lock calls with doctest checks, shared by the suite and the backends' own tests.
namespace lock_ops {

using namespace tradecapture;

inline PartitionKey key(std::string a, std::string b = "B", std::string s = "S") {
  return PartitionKey{std::move(a), std::move(b), std::move(s)};
}

/// try_acquire of the one partition `k`: its result.
inline result<Grant> acquire(PartitionLock& lock, const PartitionKey& k) {
  std::vector<PartitionKey> ks{k};
  auto r = lock.try_acquire(ks);
  REQUIRE(r);
  REQUIRE(r.value().size() == 1);
  return r.value()[0];
}

inline Grant acquire_one(PartitionLock& lock, const PartitionKey& k) {
  auto g = acquire(lock, k);
  REQUIRE(g);
  return g.value();
}

inline boost::system::error_code acquire_error(PartitionLock& lock, const PartitionKey& k) {
  auto g = acquire(lock, k);
  REQUIRE_FALSE(g);
  return g.error();
}

}  // namespace lock_ops

}  // namespace tctest
