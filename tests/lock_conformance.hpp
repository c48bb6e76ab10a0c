#pragma once
// The PartitionLock conformance suite's backends: every factory here is held to the same tests.

#include <tradecapture/memory.hpp>
#include <tradecapture/partition_lock.hpp>
#ifdef TRADECAPTURE_HAVE_REDIS
#include <tradecapture/redis_lock.hpp>

#include "support/servers.hpp"
#endif

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

#ifdef TRADECAPTURE_HAVE_REDIS
/// The test process's throwaway Redis, started on first use, stopped at exit.
inline RedisServer& shared_redis() {
  static RedisServer server;
  return server;
}
#endif

/// Every lock backend built into the test binary.
inline std::vector<LockFactory> lock_factories() {
  std::vector<LockFactory> f;
  f.push_back({"local", [](std::chrono::milliseconds lease) {
                 return tradecapture::make_local_lock(lease);
               }});
#ifdef TRADECAPTURE_HAVE_REDIS
  f.push_back({"redis", [](std::chrono::milliseconds lease) {
                 tradecapture::RedisLockOptions o;
                 o.lease = lease;
                 o.instance_id = "conformance";
                 auto r = tradecapture::open_redis_lock(shared_redis().uri(), o);
                 if (!r) throw std::runtime_error("cannot open the test Redis: " + r.error().message());
                 return r.value();
               }});
#endif
  return f;
}

}  // namespace tctest
