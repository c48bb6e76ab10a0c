#pragma once
// The PartitionLock conformance suite's backends: every factory here is held to the same tests.

#include <tradecapture/memory.hpp>
#include <tradecapture/partition_lock.hpp>

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

/// Every lock backend built into the test binary.
inline std::vector<LockFactory> lock_factories() {
  std::vector<LockFactory> f;
  f.push_back({"local", [](std::chrono::milliseconds lease) {
                 return tradecapture::make_local_lock(lease);
               }});
  return f;
}

}  // namespace tctest
