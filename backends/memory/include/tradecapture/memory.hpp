#pragma once
/// \file memory.hpp
/// In-memory backends: a TradeStore without durability and an in-process PartitionLock.

#include <tradecapture/partition_lock.hpp>
#include <tradecapture/trade_store.hpp>

#include <chrono>
#include <memory>

namespace tradecapture {

/// A TradeStore held in memory (one process, no durability); for tests and hosts that need none.
std::shared_ptr<TradeStore> make_memory_store();

/// A PartitionLock for one process: one holder per partition at a time within the process, with
/// leases and a `Grant::fence` counter that increases grant after grant within this lock object
/// (it starts again at 1 in a new one; no clock is involved), so hosts behave as with the Redis
/// lock. The write token comes from `TradeStore::claim_partitions`.
std::shared_ptr<PartitionLock> make_local_lock(
    std::chrono::milliseconds lease = std::chrono::milliseconds(30000));

}  // namespace tradecapture
