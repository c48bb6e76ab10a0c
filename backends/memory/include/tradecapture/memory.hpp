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
/// leases and fencing tokens that increase per grant (seeded from the wall clock so they keep
/// increasing across restarts), so hosts behave as with the Redis lock.
std::shared_ptr<PartitionLock> make_local_lock(
    std::chrono::milliseconds lease = std::chrono::milliseconds(30000));

}  // namespace tradecapture
