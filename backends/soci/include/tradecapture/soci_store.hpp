#pragma once
/// \file soci_store.hpp
/// The SQL TradeStore on SOCI: SQLite today, PostgreSQL as a dialect of the same store.

#include <tradecapture/error.hpp>
#include <tradecapture/trade_store.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace tradecapture {

/// Options of the SQL store.
struct SociStoreOptions {
  /// SQLite `synchronous` pragma: "FULL" (default), "NORMAL" or "OFF".
  std::string sqlite_synchronous = "FULL";
  /// How long a writer waits for a locked SQLite database.
  std::chrono::milliseconds busy_timeout{5000};
  /// Connections in the pool (one per concurrent caller).
  std::size_t pool_size = 4;
};

/// Opens (and creates or migrates) a SQL store. `uri` is `sqlite:PATH`.
result<std::shared_ptr<TradeStore>> open_soci_store(const std::string& uri,
                                                    const SociStoreOptions& options = {});

}  // namespace tradecapture
