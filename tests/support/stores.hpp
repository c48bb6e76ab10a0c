#pragma once
/// \file stores.hpp
/// Fresh stores of every backend for tests: temporary SQLite files and databases on the test
/// process's throwaway PostgreSQL server (servers.hpp), each removed with its last owner.

#include <tradecapture/trade_store.hpp>
#ifdef TRADECAPTURE_HAVE_SOCI
#include <tradecapture/soci_store.hpp>
#endif
#ifdef TRADECAPTURE_HAVE_POSTGRES_TESTS
#include "support/servers.hpp"

#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include <atomic>
#endif

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>

#include <unistd.h>

namespace tctest {

using namespace tradecapture;

/// A fresh store and whatever keeps its storage alive.
struct StoreUnderTest {
  std::shared_ptr<TradeStore> store;
  std::string uri;                ///< how to open the same storage again ("" when impossible)
  std::shared_ptr<void> storage;  ///< removes temporary files when the last copy goes
  TradeStore* operator->() const { return store.get(); }
};

/// A temporary directory, removed with everything in it when the last owner goes.
inline std::shared_ptr<std::filesystem::path> make_scratch_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "tradecapture-test-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return std::shared_ptr<std::filesystem::path>(new std::filesystem::path(pattern),
                                                [](std::filesystem::path* p) {
                                                  std::error_code ec;
                                                  std::filesystem::remove_all(*p, ec);
                                                  delete p;
                                                });
}

#ifdef TRADECAPTURE_HAVE_SOCI
/// A SQLite store in a fresh temporary file.
inline StoreUnderTest make_sqlite_store(const SociStoreOptions& options = {}) {
  auto dir = make_scratch_dir();
  std::string uri = "sqlite:" + (*dir / "store.db").string();
  auto opened = open_soci_store(uri, options);
  if (!opened) throw std::runtime_error("cannot open " + uri + ": " + opened.error().message());
  return {opened.value(), uri, dir};
}
#endif

#ifdef TRADECAPTURE_HAVE_SOCI
/// Another store opened on the database of `s` (another host's, or `s` reopened).
inline StoreUnderTest open_again(const StoreUnderTest& s) {
  auto opened = open_soci_store(s.uri);
  if (!opened) throw std::runtime_error("cannot open " + s.uri + ": " + opened.error().message());
  return StoreUnderTest{opened.value(), s.uri, s.storage};
}
#endif

#ifdef TRADECAPTURE_HAVE_POSTGRES_TESTS
/// The PostgreSQL server of this test process, started on first use, stopped at exit.
inline PostgresServer& shared_postgres() {
  static PostgresServer server;
  return server;
}

/// A libpq URI for database `database` of the shared server.
inline std::string postgres_uri(const std::string& database) {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(shared_postgres().port()) + "/" +
         database;
}

/// A session on database `database` of the shared server, for set-up and plain-SQL checks.
inline std::unique_ptr<soci::session> postgres_session(const std::string& database) {
  return std::make_unique<soci::session>(
      soci::postgresql, "host=127.0.0.1 port=" + std::to_string(shared_postgres().port()) +
                            " user=postgres dbname=" + database);
}

/// Creates an empty database with a name of its own on the shared server, and returns a handle
/// that drops it (with whatever is still connected to it) when its last copy goes.
inline std::shared_ptr<std::string> make_postgres_database() {
  static std::atomic<int> counter{0};
  auto name = std::make_shared<std::string>("tc_" + std::to_string(::getpid()) + "_" +
                                            std::to_string(++counter));
  // A generated identifier, not a value: CREATE DATABASE takes no bound parameters.
  *postgres_session("postgres") << "CREATE DATABASE " + *name;
  return std::shared_ptr<std::string>(name.get(), [name](std::string*) {
    try {
      *postgres_session("postgres") << "DROP DATABASE IF EXISTS " + *name + " WITH (FORCE)";
    } catch (...) {
      // The server is gone already (process exit): its directory goes with it.
    }
  });
}

/// A PostgreSQL store on a fresh, empty database of the shared server. The database is dropped
/// once both the returned store (every copy of it) and `storage` are gone.
inline StoreUnderTest make_postgres_store(const SociStoreOptions& options = {}) {
  auto database = make_postgres_database();
  const std::string uri = postgres_uri(*database);
  auto opened = open_soci_store(uri, options);
  if (!opened) throw std::runtime_error("cannot open " + uri + ": " + opened.error().message());
  // The store's last owner closes it first, then lets go of the database.
  std::shared_ptr<TradeStore> inner = opened.value();
  std::shared_ptr<TradeStore> store(inner.get(), [inner, database](TradeStore*) mutable {
    inner.reset();
    database.reset();
  });
  return {store, uri, database};
}
#endif

}  // namespace tctest
