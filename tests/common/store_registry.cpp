// The registry of store backends of the conformance suite (common/store_conformance.hpp).

#include "common/store_conformance.hpp"

#include <algorithm>

namespace tctest {

std::vector<StoreFactory>& store_factories() {
  static std::vector<StoreFactory> factories{
      {"memory", [] { return StoreUnderTest{make_memory_store(), "", nullptr}; }, 0}};
  return factories;
}

RegisterStore::RegisterStore(std::string name, std::function<StoreUnderTest()> make, int rank) {
  auto& f = store_factories();
  f.push_back({std::move(name), std::move(make), rank});
  std::stable_sort(f.begin(), f.end(),
                   [](const StoreFactory& a, const StoreFactory& b) { return a.rank < b.rank; });
}

}  // namespace tctest
