#pragma once
/// \file down_store.hpp
/// A store wrapper for fault tests: every call fails while the store is down.

#include <tradecapture/store_wrapper.hpp>

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace tctest {

using namespace tradecapture;

/// A store that is down while `down` is set: every call fails store_unavailable and nothing
/// lands, as in an outage or in a process that died at that instant. A derived do_commit_ that
/// does more checks `down` itself.
class DownStore : public TradeStoreWrapper {
 public:
  using TradeStoreWrapper::TradeStoreWrapper;
  std::atomic<bool> down{false};

  result<std::vector<PartitionState>> load_partitions(
      std::span<const PartitionKey> partitions) override {
    if (down) return errc::store_unavailable;
    return TradeStoreWrapper::load_partitions(partitions);
  }
  result<std::vector<std::optional<StoredEvent>>> find_events(
      std::span<const IdempotencyKey> keys) override {
    if (down) return errc::store_unavailable;
    return TradeStoreWrapper::find_events(keys);
  }
  result<std::vector<PartitionState>> claim_partitions(
      std::span<const PartitionKey> partitions) override {
    if (down) return errc::store_unavailable;
    return TradeStoreWrapper::claim_partitions(partitions);
  }
  result<SourceOffset> claim_source(std::string_view consumer, std::string_view topic,
                                    std::int32_t partition) override {
    if (down) return errc::store_unavailable;
    return TradeStoreWrapper::claim_source(consumer, topic, partition);
  }

 protected:
  result<void> do_commit_(const CommitBatch& b) override {
    if (down) return errc::store_unavailable;
    return TradeStoreWrapper::do_commit_(b);
  }
};

}  // namespace tctest
