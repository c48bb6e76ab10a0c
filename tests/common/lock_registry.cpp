// The registry of lock backends of the conformance suite (common/lock_conformance.hpp).

#include "common/lock_conformance.hpp"

namespace tctest {

std::vector<LockFactory>& lock_factories() {
  static std::vector<LockFactory> factories{
      {"local", [](std::chrono::milliseconds lease) { return tradecapture::make_local_lock(lease); }}};
  return factories;
}

RegisterLock::RegisterLock(LockFactory factory) { lock_factories().push_back(std::move(factory)); }

}  // namespace tctest
