// The SQLite dialect: one database file, WAL journal, one writer at a time.

#include "sql_dialect.hpp"

#include <dlfcn.h>
#include <soci/sqlite3/soci-sqlite3.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <thread>
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
  using WalHook = int (*)(void*, sqlite_api::sqlite3*, const char*, int);
  int (*open_v2)(const char*, sqlite_api::sqlite3**, int, const char*) = nullptr;
  int (*close)(sqlite_api::sqlite3*) = nullptr;
  const char* (*errmsg)(sqlite_api::sqlite3*) = nullptr;
  int (*exec)(sqlite_api::sqlite3*, const char*, int (*)(void*, int, char**, char**), void*,
              char**) = nullptr;
  void* (*wal_hook)(sqlite_api::sqlite3*, WalHook, void*) = nullptr;
  int (*wal_checkpoint_v2)(sqlite_api::sqlite3*, const char*, int, int*, int*) = nullptr;

  static const SqliteFunctions& get() {
    static const SqliteFunctions f = [] {
      SqliteFunctions out;
      const auto find = [](auto& fn, const char* name) {
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(RTLD_DEFAULT, name));
      };
      find(out.open_v2, "sqlite3_open_v2");
      find(out.close, "sqlite3_close");
      find(out.errmsg, "sqlite3_errmsg");
      find(out.exec, "sqlite3_exec");
      find(out.wal_hook, "sqlite3_wal_hook");
      find(out.wal_checkpoint_v2, "sqlite3_wal_checkpoint_v2");
      if (out.open_v2 == nullptr || out.close == nullptr || out.errmsg == nullptr ||
          out.exec == nullptr || out.wal_hook == nullptr || out.wal_checkpoint_v2 == nullptr) {
        out = {};
      }
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

/// WAL frames after which a commit wakes the background checkpointer (16 MiB of 4 KiB pages).
constexpr int background_checkpoint_frames = 4096;
/// Frames left after a background pass that the committing connection copies itself in any case.
constexpr int finishing_frames = 256;
/// WAL frames after which the committing connection checkpoints itself whatever is left, as
/// SQLite's own autocheckpoint does: the background thread has fallen behind. 128 MiB.
constexpr int inline_checkpoint_frames = 32768;

/// Copies the WAL back into the database file on a thread of its own.
///
/// SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, on the
/// committing thread and under the store's single-writer mutex: every other shard waits for it
/// (about a sixth of a 1,000,000-line replay's wall time, see BENCHMARKS.md). Here each writer
/// connection's WAL hook only wakes this thread, which runs a PASSIVE checkpoint on a connection
/// of its own: it copies the frames no reader still needs while the writers go on, and never
/// waits for a lock. Durability is SQLite's: a checkpoint syncs the WAL before it copies and the
/// database file after, as the connection's `synchronous` setting asks (set to the store's).
///
/// A WAL starts over from its beginning only at a commit that finds every frame copied back, and
/// under a steady stream of commits a checkpoint running beside them never catches the last
/// one: the file would keep growing. So once a background pass has copied every frame but about
/// those of the last commit, the committing connection copies that rest itself (a commit's
/// pages, under the writer's mutex); and past `inline_checkpoint_frames` it
/// checkpoints whatever is left, as SQLite's autocheckpoint would. Failures are logged (a busy
/// checkpoint lock, another checkpointer at work, silently) and the next wake-up tries again on a
/// fresh connection.
class WalCheckpointer {
 public:
  WalCheckpointer(std::string path, std::string synchronous, std::shared_ptr<spdlog::logger> log)
      : path_(std::move(path)), synchronous_(std::move(synchronous)), log_(std::move(log)) {}
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  /// Stops the thread (a checkpoint under way finishes first) and closes its connection.
  ~WalCheckpointer() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  /// WAL frames copied back by the last background pass (0: none since the WAL started over).
  std::atomic<int> copied{0};
  /// The WAL's frames after the commit before the last one (the WAL hook's own).
  std::atomic<int> previous_frames{0};

  /// Asks for a checkpoint; starts the thread on first use. Thread-safe; never blocks on one.
  void request() {
    {
      std::lock_guard lk(mu_);
      if (stop_) return;
      pending_ = true;
      if (!thread_.joinable()) thread_ = std::thread([this] { run_(); });
    }
    cv_.notify_one();
  }

 private:
  void run_() {
    const SqliteFunctions& sqlite = SqliteFunctions::get();
    sqlite_api::sqlite3* db = nullptr;
    std::unique_lock lk(mu_);
    for (;;) {
      cv_.wait(lk, [this] { return stop_ || pending_; });
      if (stop_) break;
      pending_ = false;
      lk.unlock();
      if (!checkpoint_(sqlite, db)) {
        sqlite.close(db);
        db = nullptr;
      }
      lk.lock();
    }
    lk.unlock();
    sqlite.close(db);  // a no-op on null
  }

  /// One PASSIVE checkpoint on `db`, opened first when null. False when `db` should be closed.
  bool checkpoint_(const SqliteFunctions& sqlite, sqlite_api::sqlite3*& db) {
    int rc = SQLITE_OK;
    std::string what = "open";
    if (db == nullptr) {
      // No SQLITE_OPEN_CREATE: a commit asked, so the file exists; NOMUTEX: this thread alone.
      rc = sqlite.open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                          nullptr);
      if (rc == SQLITE_OK) {
        what = "PRAGMA synchronous";
        rc = sqlite.exec(db, ("PRAGMA synchronous = " + synchronous_).c_str(), nullptr, nullptr,
                         nullptr);
      }
    }
    if (rc == SQLITE_OK) {
      what = "checkpoint";
      int log = 0, done = 0;
      rc = sqlite.wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
      if ((rc & 0xff) == SQLITE_BUSY) return true;  // another checkpointer holds the lock
      if (rc == SQLITE_OK) copied.store(done, std::memory_order_relaxed);
    }
    if (rc == SQLITE_OK) {
      failing_ = false;
      return true;
    }
    if (!failing_) {
      // Once per run of failures: the writers go on, and checkpoint themselves past the limit.
      log_->warn("tradecapture: sqlite:{}: background WAL checkpoint: {} failed: {} ({})", path_,
                 what, db != nullptr ? sqlite.errmsg(db) : "out of memory", rc);
      failing_ = true;
    }
    return false;
  }

  const std::string path_;
  const std::string synchronous_;
  const std::shared_ptr<spdlog::logger> log_;
  bool failing_ = false;  // the checkpointer thread's own
  std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false;  // guarded by mu_
  bool stop_ = false;     // guarded by mu_
  std::thread thread_;    // guarded by mu_ until the destructor joins it
};

/// The WAL hook of every writer connection (`arg` is the dialect's WalCheckpointer): after each
/// commit, with the WAL's size in frames.
int on_wal_commit(void* arg, sqlite_api::sqlite3* db, const char* name, int frames) {
  auto& checkpointer = *static_cast<WalCheckpointer*>(arg);
  int copied = checkpointer.copied.load(std::memory_order_relaxed);
  if (copied > frames) {  // counted in a WAL that has started over since
    checkpointer.copied.compare_exchange_strong(copied, 0, std::memory_order_relaxed);
    copied = 0;
  }
  // What is left after the last background pass: copied here when it is about one commit's
  // frames (two, as the pass may have begun just before the last commit), or 1 MiB.
  const int previous = checkpointer.previous_frames.exchange(frames, std::memory_order_relaxed);
  const bool finishing =
      copied > 0 && frames - copied <= std::max(2 * (frames - previous), finishing_frames);
  if (finishing || frames >= inline_checkpoint_frames) {
    // Its outcome is not the commit's, which has succeeded; a failure leaves the WAL longer.
    SqliteFunctions::get().wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                             nullptr);
    checkpointer.copied.store(0, std::memory_order_relaxed);
  } else if (frames >= background_checkpoint_frames) {
    checkpointer.request();
  }
  return SQLITE_OK;
}

class SqliteDialect final : public Dialect {
 public:
  SqliteDialect(std::string path, std::string synchronous, long long busy_timeout_ms,
                std::shared_ptr<spdlog::logger> logger)
      : path_(std::move(path)),
        synchronous_(std::move(synchronous)),
        busy_timeout_ms_(busy_timeout_ms),
        log_(logger ? std::move(logger) : spdlog::default_logger()),
        checkpointer_(std::make_unique<WalCheckpointer>(path_, synchronous_, log_)) {}

  std::string describe() const override { return "sqlite:" + path_; }

  void open(soci::session& session) const override {
    const bool hooked = connect(session);
    // Pragmas take no bound parameters; both values are validated or formatted here.
    session << "PRAGMA busy_timeout = " + std::to_string(busy_timeout_ms_);
    std::string mode;
    session << "PRAGMA journal_mode = WAL", soci::into(mode);
    if (mode != "wal") {
      log_->warn("tradecapture: {}: journal_mode is '{}', not 'wal'", describe(), mode);
    }
    session << "PRAGMA synchronous = " + synchronous_;
    // A commit dirties about two pages per partition (its events and its trades); the page cache
    // must hold them all, or SQLite spills them to the WAL before COMMIT.
    session << "PRAGMA cache_size = -32768";  // KiB: 32 MiB per connection, allocated as used
    if (!hooked) {
      // Without SQLite's functions at hand, checkpoints run inside COMMIT (see WalCheckpointer);
      // a 64 MiB WAL makes them rarer and merges repeated writes of the same pages (the
      // default, 1000 pages, checkpoints after nearly every large batch).
      session << "PRAGMA wal_autocheckpoint = 16384";
    }
    // The schema declares its foreign keys; enforcing them costs a lookup per inserted row and
    // protects nothing here: the store writes a partition_id only after reading or creating that
    // partition's row in the same transaction.
    session << "PRAGMA foreign_keys = OFF";
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
  /// Also installs the WAL hook (`on_wal_commit`, which replaces SQLite's autocheckpoint); false
  /// when SQLite's functions are not at hand and SOCI opened the file itself.
  ///
  /// The hook points at `checkpointer_`: the store closes every connection before it destroys
  /// its dialect (`Connection` holds the dialect by reference).
  bool connect(soci::session& session) const {
    const SqliteFunctions& sqlite = SqliteFunctions::get();
    if (!sqlite) {
      // SOCI's connect string quotes the path (checked free of '"' by make_sqlite_dialect); the
      // busy timeout is set by open() in milliseconds rather than SOCI's whole seconds.
      session.open(soci::sqlite3, "db=\"" + path_ + "\"");
      return false;
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
    sqlite.wal_hook(db, &on_wal_commit, checkpointer_.get());
    return true;
  }

  std::string path_;
  std::string synchronous_;
  long long busy_timeout_ms_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<WalCheckpointer> checkpointer_;  // last: its thread stops first
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
