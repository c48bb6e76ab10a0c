#pragma once
/// \file soci_store.hpp
/// The SQL TradeStore on SOCI: SQLite and PostgreSQL, two dialects of the same store.

#include <tradecapture/error.hpp>
#include <tradecapture/trade_store.hpp>

#include <spdlog/fwd.h>

#include <chrono>
#include <memory>
#include <string>

namespace tradecapture {

/// Options of the SQL store.
struct SociStoreOptions {
  /// SQLite `synchronous` pragma: "FULL" (default), "NORMAL" or "OFF".
  std::string sqlite_synchronous = "FULL";
  /// How long a writer waits for a locked SQLite database, or for a locked PostgreSQL row
  /// (`lock_timeout`; past it the call fails with `errc::store_busy`). 0: no limit.
  std::chrono::milliseconds busy_timeout{5000};
  /// Connections in the pool (one per concurrent caller; more callers wait for a free one).
  std::size_t pool_size = 4;
  /// Where the store logs; null means spdlog's default logger. Failures are logged bounded: per
  /// kind (unavailable, busy, error), the first of an episode, then at most one summary line
  /// every 5 s ("PostgreSQL 127.0.0.1:5432/db unavailable since 12:00:01: 84 failures
  /// (reason)"), and one line when the database answers again. Each line names the database
  /// (host:port/db or the SQLite path, never a password) and the driver's reason on one line.
  std::shared_ptr<spdlog::logger> logger;
};

/// Opens (and creates or migrates) a SQL store. `uri` is `sqlite:PATH`, or a libpq URI
/// `postgresql://[user[:password]@][host][:port][/dbname][?param=value&...]` (also
/// `postgres://`), passed to libpq as written; characters that URIs do not allow raw (blanks,
/// '"') must be percent-encoded. `describe()` shows the URI without its password.
result<std::shared_ptr<TradeStore>> open_soci_store(const std::string& uri,
                                                    const SociStoreOptions& options = {});

}  // namespace tradecapture
