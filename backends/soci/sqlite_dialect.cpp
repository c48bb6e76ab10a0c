// The SQLite dialect: one database file, WAL journal, one writer at a time.

#include "sql_dialect.hpp"

#include <dlfcn.h>
#include <soci/sqlite3/soci-sqlite3.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <type_traits>

namespace tradecapture::detail::sql {
namespace {

// Primary result codes of SQLite (sqlite3.h), named here so that this file needs SQLite only
// through SOCI's error object.
constexpr int sqlite_busy = 5;
constexpr int sqlite_locked = 6;
constexpr int sqlite_nomem = 7;
constexpr int sqlite_readonly = 8;
constexpr int sqlite_ioerr = 10;
constexpr int sqlite_corrupt = 11;
constexpr int sqlite_full = 13;
constexpr int sqlite_cantopen = 14;
constexpr int sqlite_protocol = 15;
constexpr int sqlite_constraint = 19;
constexpr int sqlite_notadb = 26;

std::string_view sqlite_code_name(int primary) {
  switch (primary) {
    case sqlite_busy:
      return "SQLITE_BUSY";
    case sqlite_locked:
      return "SQLITE_LOCKED";
    case sqlite_nomem:
      return "SQLITE_NOMEM";
    case sqlite_readonly:
      return "SQLITE_READONLY";
    case sqlite_ioerr:
      return "SQLITE_IOERR";
    case sqlite_corrupt:
      return "SQLITE_CORRUPT";
    case sqlite_full:
      return "SQLITE_FULL";
    case sqlite_cantopen:
      return "SQLITE_CANTOPEN";
    case sqlite_protocol:
      return "SQLITE_PROTOCOL";
    case sqlite_constraint:
      return "SQLITE_CONSTRAINT";
    case sqlite_notadb:
      return "SQLITE_NOTADB";
    default:
      return "SQLITE_ERROR";
  }
}

/// The few SQLite functions the dialect calls itself, looked up where SOCI's backend loaded SQLite:
/// SQLite is SOCI's dependency, not linked by this library directly (as libpq, see
/// postgresql_dialect.cpp). Null members when the process does not export them (a host that
/// dlopen()ed this library privately); the dialect then leaves the connection as SOCI opens it.
struct SqliteFunctions {
  int (*open_v2)(const char*, sqlite_api::sqlite3**, int, const char*) = nullptr;
  int (*close)(sqlite_api::sqlite3*) = nullptr;
  const char* (*errmsg)(sqlite_api::sqlite3*) = nullptr;

  static const SqliteFunctions& get() {
    static const SqliteFunctions f = [] {
      SqliteFunctions out;
      const auto find = [](auto& fn, const char* name) {
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(RTLD_DEFAULT, name));
      };
      find(out.open_v2, "sqlite3_open_v2");
      find(out.close, "sqlite3_close");
      find(out.errmsg, "sqlite3_errmsg");
      if (out.open_v2 == nullptr || out.close == nullptr || out.errmsg == nullptr) out = {};
      return out;
    }();
    return f;
  }
  explicit operator bool() const { return open_v2 != nullptr; }
};

constexpr ColumnTypes sqlite_types{
    .id = "INTEGER PRIMARY KEY",  // the rowid
    .integer = "INTEGER",
    .decimal = "TEXT",  // never NUMERIC or REAL: see sql_schema.cpp
    .text = "TEXT",
    .table_options = " STRICT",  // STRICT: a TEXT column keeps exactly the text it was given
    .keyed_table_options = " WITHOUT ROWID, STRICT",
    .updated_table_options = "",
    .partition_reference = " REFERENCES partitions (partition_id)",  // declared, not enforced
};

class SqliteDialect final : public Dialect {
 public:
  SqliteDialect(std::string path, std::string synchronous, long long busy_timeout_ms,
                std::shared_ptr<spdlog::logger> logger)
      : path_(std::move(path)),
        synchronous_(std::move(synchronous)),
        busy_timeout_ms_(busy_timeout_ms),
        log_(logger ? std::move(logger) : spdlog::default_logger()) {}

  std::string describe() const override { return "sqlite:" + path_; }

  void open(soci::session& session) const override {
    connect(session);
    // Pragmas take no bound parameters; both values are validated or formatted here.
    session << "PRAGMA busy_timeout = " + std::to_string(busy_timeout_ms_);
    // 8 KiB pages for a new database (before WAL mode, which fixes the page size; an existing
    // database keeps its own). A commit rewrites about two B-tree leaves per partition it
    // touches, whatever their size; larger leaves split less and take the WAL fewer frames, each
    // frame costing two writes and a checksum. Measured on the 1,000,000-line replay, five
    // alternated pairs with the WAL's checkpoint size in bytes unchanged: the same lines/s,
    // ~6% less CPU in all five; 1 KiB and 2 KiB pages were slower (BENCHMARKS.md,
    // session 14).
    session << "PRAGMA page_size = 8192";
    std::string mode;
    session << "PRAGMA journal_mode = WAL", soci::into(mode);
    if (mode != "wal") {
      log_->warn("tradecapture: {}: journal_mode is '{}', not 'wal'", describe(), mode);
    }
    session << "PRAGMA synchronous = " + synchronous_;
    // A commit dirties about two pages per partition (its events and its trades); the page cache
    // must hold them all, or SQLite spills them to the WAL before COMMIT.
    session << "PRAGMA cache_size = -32768";  // KiB: 32 MiB per connection, allocated as used
    // Checkpoints run inside COMMIT; a 64 MiB WAL (8,192 pages of 8 KiB; 32 MiB in a database
    // made with 4 KiB pages) makes them rarer and merges repeated writes of the same pages (the
    // default, 1000 pages, checkpoints after nearly every large batch).
    session << "PRAGMA wal_autocheckpoint = 8192";
    // The schema declares its foreign keys; enforcing them costs a lookup per inserted row and
    // protects nothing here: the store writes a partition_id only after reading or creating that
    // partition's row in the same transaction.
    session << "PRAGMA foreign_keys = OFF";
    // Statement journals in memory: a multi-row INSERT or upsert inside the commit transaction
    // keeps one (to undo just that statement), and past 64 KiB SQLite spills it to a temporary
    // file in /var/tmp, written page by page with a header each: ~16% of a 1,000,000-line replay's
    // writes went there. Nothing durable lives in temporary storage.
    session << "PRAGMA temp_store = MEMORY";
  }

  const ColumnTypes& types() const override { return sqlite_types; }

  std::string_view begin_write() const override { return "BEGIN IMMEDIATE"; }

  // A deferred transaction: its first SELECT takes the WAL snapshot that every later read sees.
  std::string_view begin_read() const override { return "BEGIN DEFERRED"; }

  void begin_migration(soci::session& session) const override {
    session << "BEGIN IMMEDIATE";  // waits (busy_timeout) for another process's migration
  }

  bool single_writer() const override { return true; }

  Classified classify(const soci::soci_error& e) const override {
    const auto* native = dynamic_cast<const soci::sqlite3_soci_error*>(&e);
    if (native == nullptr) return {Fault::other, "SOCI"};
    const int code = native->result();
    const int primary = code & 0xff;
    Classified c{Fault::other,
                 std::string(sqlite_code_name(primary)) + " (" + std::to_string(code) + ")"};
    switch (primary) {
      case sqlite_busy:
      case sqlite_locked:
      case sqlite_protocol:
        c.fault = Fault::busy;
        break;
      case sqlite_ioerr:
      case sqlite_cantopen:
      case sqlite_full:
        c.fault = Fault::unavailable;
        break;
      case sqlite_constraint: {
        // "UNIQUE constraint failed: events.trade_id, events.version" (also for primary keys);
        // foreign-key, CHECK and NOT NULL failures are other faults.
        const std::string message = e.get_error_message();
        if (message.find("UNIQUE constraint failed") != std::string::npos ||
            message.find("PRIMARY KEY") != std::string::npos) {
          c.fault = Fault::unique_violation;
        }
        break;
      }
      default:
        break;
    }
    return c;
  }

  std::unique_ptr<BatchStatements> prepare_statements(soci::session& session) const override {
    return make_row_statements(session);
  }

 private:
  /// Opens `session` on the database file without SQLite's per-connection mutexes.
  ///
  /// SOCI 4.0.3 opens a connection in SQLite's default threading mode, which Debian's build makes
  /// "serialized": every API call and statement step takes the connection's recursive mutex
  /// (about 7% of the instructions of a commit, see BENCHMARKS.md). The store never uses a
  /// connection from two threads at once (the pool lends it to one call at a time, and its
  /// prepared statements live and die with it), which is what SQLITE_OPEN_NOMUTEX ("multi-thread"
  /// mode) asks. SOCI has no connect option for it, so the dialect opens SOCI's session on a
  /// private in-memory database, opens the file itself with the flag and hands the handle to the
  /// session (which closes it as its own); SQLite's process-wide mutexes (allocator, page cache)
  /// stay, as another part of the host may use SQLite from several threads.
  void connect(soci::session& session) const {
    const SqliteFunctions& sqlite = SqliteFunctions::get();
    if (!sqlite) {
      // SOCI's connect string quotes the path (checked free of '"' by make_sqlite_dialect); the
      // busy timeout is set by open() in milliseconds rather than SOCI's whole seconds.
      session.open(soci::sqlite3, "db=\"" + path_ + "\"");
      return;
    }
    session.open(soci::sqlite3, "db=:memory:");
    auto* backend = static_cast<soci::sqlite3_session_backend*>(session.get_backend());
    sqlite_api::sqlite3* db = nullptr;
    const int rc =
        sqlite.open_v2(path_.c_str(), &db,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      // The same error SOCI raises for a connection it cannot open (classified by its code).
      std::string message = "Cannot establish connection to the database. ";
      message += db != nullptr ? sqlite.errmsg(db) : "out of memory";
      sqlite.close(db);  // a handle is returned even on failure (NULL only without memory)
      throw soci::sqlite3_soci_error(message, rc);
    }
    sqlite.close(backend->conn_);  // the in-memory database: nothing prepared on it yet
    backend->conn_ = db;
  }

  std::string path_;
  std::string synchronous_;
  long long busy_timeout_ms_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace

result<std::unique_ptr<Dialect>> make_sqlite_dialect(const std::string& path,
                                                     const SociStoreOptions& options) {
  spdlog::logger& log = options.logger ? *options.logger : *spdlog::default_logger();
  if (path.empty()) {
    log.error("tradecapture: sqlite: URI without a path (expected sqlite:PATH)");
    return errc::bad_uri;
  }
  if (path == ":memory:" || path.starts_with("file:")) {
    // Every pooled connection would open its own private database.
    log.error(
        "tradecapture: sqlite:{}: in-memory or URI databases are not supported; use "
        "a file path or the memory: store",
        path);
    return errc::bad_uri;
  }
  if (path.find('"') != std::string::npos || path.front() == ' ') {
    // SOCI's SQLite connect string cannot carry these.
    log.error("tradecapture: sqlite:{}: the path may not contain '\"' or start with a space",
                  path);
    return errc::bad_uri;
  }
  std::string synchronous = options.sqlite_synchronous;
  std::transform(synchronous.begin(), synchronous.end(), synchronous.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
  if (synchronous != "OFF" && synchronous != "NORMAL" && synchronous != "FULL" &&
      synchronous != "EXTRA") {
    log.error(
        "tradecapture: sqlite:{}: sqlite_synchronous '{}' is not OFF, NORMAL, FULL or "
        "EXTRA",
        path, options.sqlite_synchronous);
    return errc::bad_uri;
  }
  const long long timeout =
      std::clamp<long long>(options.busy_timeout.count(), 0, std::numeric_limits<int>::max());
  return std::unique_ptr<Dialect>(
      std::make_unique<SqliteDialect>(path, std::move(synchronous), timeout, options.logger));
}

}  // namespace tradecapture::detail::sql
