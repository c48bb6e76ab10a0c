#pragma once
/// \file health.hpp
/// GET /health/live and /health/ready: the one health handler of the hosts with an HTTP endpoint
/// (`serve`, `consume --metrics-listen`).

#include "http_server.hpp"

#include <tradecapture/partition_lock.hpp>
#include <tradecapture/trade_store.hpp>

namespace tradecapture::host {

/// GET /health/live: 200 {"status": "live"} while the process runs.
HttpResponse health_live_response();

/// GET /health/ready: 503 {"status": "draining"} while `draining`; else a ping of the store and
/// of the lock (none when `lock` is null): 200 {"status": "ready"} when they answer, 503 with
/// Retry-After and {"status": "unavailable", "store": "ok" or the error, "lock": ...} when not.
/// Blocks for the pings: call it off the I/O threads.
HttpResponse health_ready_response(TradeStore& store, PartitionLock* lock, bool draining);

}  // namespace tradecapture::host
