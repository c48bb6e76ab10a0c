// Holds the Redis lock (on the test process's throwaway Redis) to the shared PartitionLock suite.

#include <tradecapture/redis_lock.hpp>

#include "common/lock_conformance.hpp"
#include "support/servers.hpp"

#include <stdexcept>

namespace {
const tctest::RegisterLock redis_lock{{"redis", [](std::chrono::milliseconds lease) {
  tradecapture::RedisLockOptions o;
  o.lease = lease;
  o.instance_id = "conformance";
  auto r = tradecapture::open_redis_lock(tctest::shared_redis().uri(), o);
  if (!r) throw std::runtime_error("cannot open the test Redis: " + r.error().message());
  return r.value();
}}};
}  // namespace
