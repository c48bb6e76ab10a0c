#pragma once
/// \file store_wrapper.hpp
/// Forwarding decorators for TradeStore and PartitionLock: override only what you change
/// (metrics, logging, fault injection in tests).

#include <tradecapture/partition_lock.hpp>
#include <tradecapture/trade_store.hpp>

#include <memory>
#include <utility>

namespace tradecapture {

/// A TradeStore that forwards every call to another one. `find_events_into` (which the pipeline
/// calls) is not forwarded: TradeStore's default calls this wrapper's `find_events`, so a
/// decorator that overrides `find_events` sees every lookup. A wrapper that leaves lookups alone
/// may override `find_events_into` with `target().find_events_into(keys, out)` to keep the
/// target's allocation-free lookup.
class TradeStoreWrapper : public TradeStore {
 public:
  /// Wraps `target` (not null).
  explicit TradeStoreWrapper(std::shared_ptr<TradeStore> target) : target_(std::move(target)) {}

  result<std::vector<PartitionState>> load_partitions(
      std::span<const PartitionKey> partitions) override {
    return target_->load_partitions(partitions);
  }
  result<std::vector<PartitionState>> claim_partitions(
      std::span<const PartitionKey> partitions) override {
    return target_->claim_partitions(partitions);
  }
  result<std::vector<std::optional<StoredEvent>>> find_events(
      std::span<const IdempotencyKey> keys) override {
    return target_->find_events(keys);
  }
  result<std::vector<PositionRow>> positions() override { return target_->positions(); }
  result<void> scan_events(const std::function<bool(const StoredEvent&)>& fn) override {
    return target_->scan_events(fn);
  }
  result<SourceOffset> claim_source(std::string_view consumer, std::string_view topic,
                                    std::int32_t partition) override {
    return target_->claim_source(consumer, topic, partition);
  }
  result<std::vector<SourceOffset>> source_offsets(std::string_view consumer) override {
    return target_->source_offsets(consumer);
  }
  result<void> ping() override { return target_->ping(); }
  StoreStats stats() const override { return target_->stats(); }
  std::string describe() const override { return target_->describe(); }

  /// The wrapped store.
  TradeStore& target() const { return *target_; }

 protected:
  result<void> do_commit_(const CommitBatch& batch) override { return target_->commit(batch); }

 private:
  std::shared_ptr<TradeStore> target_;
};

/// A PartitionLock that forwards every call to another one.
class PartitionLockWrapper : public PartitionLock {
 public:
  /// Wraps `target` (not null).
  explicit PartitionLockWrapper(std::shared_ptr<PartitionLock> target)
      : target_(std::move(target)) {}

  result<std::vector<result<Grant>>> try_acquire(
      std::span<const PartitionKey> partitions) override {
    return target_->try_acquire(partitions);
  }
  result<std::vector<result<void>>> renew(std::span<Grant> grants) override {
    return target_->renew(grants);
  }
  void release(std::span<const Grant> grants) override { target_->release(grants); }
  std::chrono::milliseconds lease() const override { return target_->lease(); }
  result<void> ping() override { return target_->ping(); }
  std::string describe() const override { return target_->describe(); }

  /// The wrapped lock.
  PartitionLock& target() const { return *target_; }

 private:
  std::shared_ptr<PartitionLock> target_;
};

}  // namespace tradecapture
