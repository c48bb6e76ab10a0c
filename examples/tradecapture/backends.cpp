// Store and lock URIs of the example host: the one place that maps a scheme to a factory.

#include "host.hpp"

#include <tradecapture/memory.hpp>
#ifdef TRADECAPTURE_HAVE_SOCI
#include <tradecapture/soci_store.hpp>
#endif
#ifdef TRADECAPTURE_HAVE_REDIS
#include <tradecapture/redis_lock.hpp>
#endif

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>
#include <thread>

namespace tradecapture::host {
namespace {

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// The exit code of a failed open: a URI that cannot be understood is a usage error, anything
// else an unreachable (or failing) service.
int open_failure_code(const boost::system::error_code& ec) {
  return ec == make_error_code(errc::bad_uri) ? exit_usage : exit_unavailable;
}

/// The store or lock of an open call, or HostError "cannot open <what>: <reason>" (the reason
/// only: the URI may hold a password).
template <typename T>
T opened_or_throw(result<T> opened, const std::string& what) {
  if (!opened)
    throw HostError("cannot open " + what + ": " + opened.error().message(),
                    open_failure_code(opened.error()));
  return std::move(opened).value();
}

/// "unknown <what> URI scheme '<scheme>' (expected <expected>)", exit 64: the scheme only, never
/// the rest of the URI, which may hold a password.
[[noreturn]] void unknown_scheme(const std::string& what, const std::string& uri,
                                 const std::string& expected) {
  const auto colon = uri.find(':');
  const std::string scheme = colon == std::string::npos ? uri : uri.substr(0, colon + 1);
  throw HostError("unknown " + what + " URI scheme '" + scheme + "' (expected " + expected + ")",
                  exit_usage);
}

/// "<what> are not supported by this build (built without <library>)", exit 64.
[[noreturn, maybe_unused]] void unsupported(const std::string& what, const std::string& library) {
  throw HostError(what + " are not supported by this build (built without " + library + ")",
                  exit_usage);
}

#ifdef TRADECAPTURE_HAVE_SOCI
/// How long opening a SQL store retries while the database is busy (another process holds its
/// write lock past the connection's busy timeout, or is recovering a SQLite WAL after a crash).
constexpr std::chrono::milliseconds open_busy_budget{15000};

/// An SQL store (SQLite or PostgreSQL) with a connection pool for `settings.concurrency`.
result<std::shared_ptr<TradeStore>> open_sql_store(const std::string& uri,
                                                   const StoreSettings& settings) {
  SociStoreOptions options;
  options.pool_size = std::max<std::size_t>(settings.concurrency, 2);
  // Opening runs the schema migrations in a write transaction: a busy database is retried,
  // with backoff, within a bounded budget, like any other transient store failure; anything
  // else is reported at once.
  const auto give_up = std::chrono::steady_clock::now() + open_busy_budget;
  auto wait = std::chrono::milliseconds(50);
  for (int attempt = 1;; ++attempt) {
    auto store = open_soci_store(uri, options);
    if (store || store.error() != make_error_code(errc::store_busy) ||
        std::chrono::steady_clock::now() + wait > give_up)
      return store;
    if (attempt == 1)
      spdlog::warn("opening the store: {}; retrying for up to {} s", store.error().message(),
                   open_busy_budget.count() / 1000);
    std::this_thread::sleep_for(wait);
    wait = std::min(wait * 2, std::chrono::milliseconds(1000));
  }
}
#endif

}  // namespace

std::shared_ptr<TradeStore> open_store(const std::string& uri, const StoreSettings& settings) {
  if (starts_with(uri, "sqlite:")) {
#ifdef TRADECAPTURE_HAVE_SOCI
    const std::string path = uri.substr(7);
    if (path.empty())
      throw HostError("store URI '" + uri + "' has no path (sqlite:PATH)", exit_usage);
    bool existed = true;
    if (path != ":memory:") {
      std::error_code ec;
      existed = std::filesystem::exists(path, ec);
      // A reading command never creates a store: a mistyped path is an error, not an empty
      // database left behind.
      if (!existed && settings.must_exist)
        throw HostError("store " + uri + ": no such file '" + path +
                            "' (positions and events never create a store)",
                        exit_noinput);
    }
    auto store = open_sql_store(uri, settings);
    if (!store)
      throw HostError("cannot open store " + uri + ": " + store.error().message(),
                      store.error() == make_error_code(errc::bad_uri) ? exit_usage
                      : existed                                       ? exit_unavailable
                                                                      : exit_cantcreat);
    return std::move(store).value();
#else
    unsupported("sqlite stores", "SOCI");
#endif
  }
  if (uri == "memory:") {
    if (settings.must_exist)
      spdlog::warn("a memory: store lives in one process only; this one is empty");
    return make_memory_store();
  }
  if (starts_with(uri, "postgresql://") || starts_with(uri, "postgres://")) {
#ifdef TRADECAPTURE_HAVE_SOCI
    return opened_or_throw(open_sql_store(uri, settings), "the postgresql store");
#else
    unsupported("postgresql stores", "SOCI");
#endif
  }
  unknown_scheme("store", uri, "sqlite:PATH, memory: or postgresql://user@host:port/db");
}

std::shared_ptr<PartitionLock> open_lock(const std::string& uri, std::chrono::milliseconds lease,
                                         const std::string& instance_id) {
  if (uri == "local:") return make_local_lock(lease);
  if (starts_with(uri, "redis://")) {
#ifdef TRADECAPTURE_HAVE_REDIS
    RedisLockOptions options;
    options.lease = lease;
    options.instance_id = instance_id;
    return opened_or_throw(open_redis_lock(uri, options), "the redis lock");
#else
    unsupported("redis locks", "hiredis");
#endif
  }
  unknown_scheme("lock", uri, "local: or redis://[:password@]host:port[/db]");
}

}  // namespace tradecapture::host
