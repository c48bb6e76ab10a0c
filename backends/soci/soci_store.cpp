// The SQL TradeStore on SOCI. One store for every SQL database: what differs (types, transaction
// statements, session set-up, error codes, the batch statements of the hot paths) lives in a
// Dialect (sql_dialect.hpp).
//
// Concurrency: a pool of connections, one per concurrent call; each connection prepares the hot
// statements once and re-executes them with bound variables. With a single-writer database
// (SQLite) commits of this process queue on a mutex instead of the database's busy handler.
//
// Transactions: a commit is one transaction, opened with the dialect's explicit BEGIN statement
// (never SOCI's session::begin, and never nested: PostgreSQL ignores a second BEGIN with a warning,
// so an inner COMMIT would commit the outer transaction) and always ended by COMMIT or ROLLBACK
// before its connection goes back to the pool. Any refusal rolls the whole batch back.
//
// Lost connections: a connection that fails with Fault::unavailable is closed, and so is every
// idle one (they talked to the same server, which most likely went away too), so later calls open
// fresh sessions and prepare their statements again. A call that failed so on a connection that
// had been waiting in the pool, before anything could have been committed, runs once more on a
// fresh connection (the stale session is the likely cause, and the call is safe to repeat);
// otherwise the caller gets errc::store_unavailable and retries with backoff (the pipeline's
// with_retry). A COMMIT whose answer was lost is never repeated here: only the caller can find
// out whether it landed (the pipeline looks its events up).

#include <tradecapture/soci_store.hpp>
#include <tradecapture/detail/log_limiter.hpp>

#include "sql_dialect.hpp"
#include "sql_values.hpp"

#include <soci/soci.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <utility>

namespace tradecapture {
namespace {

using detail::sql::BatchStatements;
using detail::sql::Classified;
using detail::sql::Dialect;
using detail::sql::Fault;

// ---- errors ----------------------------------------------------------------------------------

/// The longest database message logged; SOCI appends the statement and its bound values, and a
/// set-based statement binds whole arrays.
constexpr std::size_t max_logged_message = 1000;

/// The one conversion point from a database failure to an `errc`; call it inside a catch block.
/// SOCI exceptions are classified by the dialect; anything else (corrupt stored data, a SOCI
/// usage error, bad_alloc) is `errc::store_error`. `on_unique` is what a unique-key violation
/// means where it happened (`errc::key_conflict` while inserting events). The database's own
/// code and message (folded to one line) go to `faults`, bounded per kind (see SociStoreOptions::
/// logger); `fault` receives the classification.
errc convert_current_exception(const Dialect& dialect, detail::FaultLog& faults,
                               std::string_view during, errc on_unique,
                               Fault* fault = nullptr) noexcept {
  Fault f = Fault::other;
  errc code = errc::store_error;
  try {
    Classified c{Fault::other, "C++"};
    std::string message;
    try {
      throw;
    } catch (const soci::soci_error& e) {
      c = dialect.classify(e);
      message = e.what();
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
      message = "unknown exception";
    }
    f = c.fault;
    code = detail::sql::fault_errc(c.fault, on_unique);
    message = detail::fold_message(message);
    if (code == errc::store_unavailable) {
      // The statement SOCI appends says nothing about a lost server; the reason is before it.
      if (const auto at = message.find(" while executing \""); at != std::string::npos)
        message.resize(at);
    }
    if (message.size() > max_logged_message) {
      message.resize(max_logged_message);
      message += "...";
    }
    const auto reason = [&] {
      return fmt::format("{}: {} [{}]: {}", during, make_error_code(code).message(), c.native,
                         message);
    };
    if (code == errc::key_conflict) {
      // Part of normal operation (a duplicate key the caller resolves): not a fault.
      if (faults.logger()->should_log(spdlog::level::debug))
        faults.logger()->debug("tradecapture: {}: {}", faults.subject(), reason());
    } else if (code == errc::store_unavailable) {
      faults.failure("unavailable", reason(), spdlog::level::warn);
    } else if (classify(code) == retry_class::retry_now) {
      // Busy databases, deadlocks, serialization failures: the caller retries.
      faults.failure("busy", reason(), spdlog::level::debug);
    } else {
      faults.failure("failing", reason(), spdlog::level::err);
    }
  } catch (...) {
    // Logging failed (out of memory): the code computed so far stands.
  }
  if (fault != nullptr) *fault = f;
  return code;
}

/// What the store's fault lines name: "PostgreSQL host:port/db" (every host of a multi-host URI;
/// libpq's defaults where the URI leaves them out) or "SQLite PATH". Never a password.
std::string fault_subject(const std::string& uri) {
  if (uri.starts_with("sqlite:")) return "SQLite " + uri.substr(7);
  const std::size_t scheme_end = uri.find("://");
  if (scheme_end == std::string::npos) return uri.substr(0, uri.find(':'));
  const std::size_t begin = scheme_end + 3;
  const std::size_t end = std::min(uri.find_first_of("/?", begin), uri.size());
  std::string hosts = uri.substr(begin, end - begin);
  if (const std::size_t at = hosts.rfind('@'); at != std::string::npos) hosts.erase(0, at + 1);
  std::string db;
  if (end < uri.size() && uri[end] == '/') {
    db = uri.substr(end + 1, std::min(uri.find('?', end), uri.size()) - end - 1);
  }
  // Query parameters override the authority (host=/port=/dbname=).
  std::string qhost, qport;
  if (const std::size_t q = uri.find('?'); q != std::string::npos) {
    for (std::size_t b = q + 1; b <= uri.size();) {
      const std::size_t e = std::min(uri.find('&', b), uri.size());
      const std::string_view param(uri.data() + b, e - b);
      if (param.starts_with("host=")) qhost = std::string(param.substr(5));
      if (param.starts_with("hostaddr=") && qhost.empty()) qhost = std::string(param.substr(9));
      if (param.starts_with("port=")) qport = std::string(param.substr(5));
      if (param.starts_with("dbname=")) db = std::string(param.substr(7));
      b = e + 1;
    }
  }
  std::string out;
  if (!qhost.empty()) {
    out = qhost + ":" + (qport.empty() ? "5432" : qport);
  } else {
    // "h1:5432,h2:5433" or "" (libpq's default: the local socket).
    std::size_t b = 0;
    do {
      const std::size_t e = std::min(hosts.find(',', b), hosts.size());
      std::string h = hosts.substr(b, e - b);
      if (h.empty()) h = "localhost";
      const bool has_port = h.back() != ']' && h.find(':', h.rfind(']') == std::string::npos
                                                               ? 0
                                                               : h.rfind(']')) != std::string::npos;
      if (!has_port) h += ":" + (qport.empty() ? std::string("5432") : qport);
      if (!out.empty()) out += ",";
      out += h;
      b = e + 1;
    } while (b <= hosts.size());
  }
  return "PostgreSQL " + out + "/" + (db.empty() ? "(default database)" : db);
}

/// An exception thrown by a caller's callback (scan_events), carried through the store's error
/// handling untouched and rethrown to the caller.
struct CallbackFailure {
  std::exception_ptr error;
};

// ---- connections -----------------------------------------------------------------------------

/// One database session and its prepared statements.
class Connection {
 public:
  explicit Connection(const Dialect& dialect) : dialect_(dialect) { dialect.open(session); }

  /// The hot statements, prepared on first use.
  BatchStatements& statements() {
    if (!statements_) statements_ = dialect_.prepare_statements(session);
    return *statements_;
  }

  /// Rolls back the open transaction; a failure marks the connection for replacement.
  void rollback_quietly() noexcept {
    try {
      session.rollback();
    } catch (...) {
      broken = true;
    }
  }

  soci::session session;
  bool broken = false;  ///< closed instead of returned to the pool
  bool reused = false;  ///< has waited in the pool since it was opened (its session may be stale)

 private:
  const Dialect& dialect_;
  std::unique_ptr<BatchStatements> statements_;  // destroyed before the session
};

/// A fixed-size pool of connections, opened on demand. `acquire` waits for a free one.
class Pool {
 public:
  /// A connection borrowed for the duration of one call.
  class Lease {
   public:
    Lease(Pool* pool, std::unique_ptr<Connection> c) : pool_(pool), connection_(std::move(c)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (connection_) pool_->give_back(std::move(connection_));
    }
    Connection& operator*() const { return *connection_; }
    Connection* operator->() const { return connection_.get(); }

   private:
    Pool* pool_;
    std::unique_ptr<Connection> connection_;
  };

  Pool(const Dialect& dialect, detail::FaultLog& faults, std::size_t size)
      : dialect_(dialect), faults_(faults), size_(std::max<std::size_t>(size, 1)) {}

  /// Hands a connection opened elsewhere (the one that ran the migrations) to the pool.
  void adopt(std::unique_ptr<Connection> c) {
    c->reused = true;
    std::lock_guard lock(mutex_);
    ++open_;
    idle_.push_back(std::move(c));
  }

  result<Lease> acquire() {
    {
      std::unique_lock lock(mutex_);
      available_.wait(lock, [&] { return !idle_.empty() || open_ < size_; });
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(c));
      }
      ++open_;  // reserve a slot, then connect without holding the lock
    }
    try {
      return Lease(this, std::make_unique<Connection>(dialect_));
    } catch (...) {
      const errc code = convert_current_exception(dialect_, faults_, "connect", errc::store_error);
      release_slots(1);
      return code;
    }
  }

  /// Pool use now (open counts connections being opened too).
  StoreStats stats() const {
    std::lock_guard lock(mutex_);
    return StoreStats{size_, open_, open_ - idle_.size()};
  }

  /// Closes every idle connection: after one lost its session, the others most likely did too.
  void discard_idle() noexcept {
    std::vector<std::unique_ptr<Connection>> stale;
    {
      std::lock_guard lock(mutex_);
      stale.swap(idle_);
    }
    const std::size_t n = stale.size();
    stale.clear();  // closes them outside the lock
    if (n > 0) release_slots(n);
  }

 private:
  void give_back(std::unique_ptr<Connection> c) noexcept {
    if (c->broken) {
      c.reset();
      release_slots(1);
      return;
    }
    c->reused = true;
    {
      std::lock_guard lock(mutex_);
      idle_.push_back(std::move(c));
    }
    available_.notify_one();
  }

  void release_slots(std::size_t n) noexcept {
    {
      std::lock_guard lock(mutex_);
      open_ -= n;
    }
    available_.notify_all();
  }

  const Dialect& dialect_;
  detail::FaultLog& faults_;
  const std::size_t size_;
  mutable std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t open_ = 0;  ///< idle plus leased plus being opened
};

/// A transaction opened by an explicit statement, rolled back unless committed (also when an
/// exception unwinds it), so a connection never goes back to the pool inside a transaction.
class Transaction {
 public:
  Transaction(Connection& c, std::string_view begin) : c_(c) { c_.session << begin; }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() {
    if (open_) c_.rollback_quietly();
  }
  /// COMMIT. When it fails the transaction may still be open (the destructor rolls it back); in
  /// PostgreSQL a failed COMMIT has ended it, and the ROLLBACK only warns.
  void commit() {
    c_.session.commit();
    open_ = false;
  }

 private:
  Connection& c_;
  bool open_ = true;
};

/// What one attempt of a call did, for the error handling of `SqlStore::run`.
struct Attempt {
  /// Nothing has been committed or handed to the caller yet: the call may run again from the
  /// start after a lost connection.
  bool repeatable = true;
  /// What a unique-key violation means at the statement being executed.
  errc on_unique = errc::store_error;
};

/// Creates the schema or brings it up to date, in one transaction.
void migrate(Connection& c, const Dialect& dialect, spdlog::logger& log) {
  dialect.begin_migration(c.session);
  try {
    c.session << detail::sql::schema_version_table(dialect.types());
    long long current = 0;
    soci::indicator ind = soci::i_ok;
    c.session << "SELECT MAX(version) FROM schema_version", soci::into(current, ind);
    if (ind != soci::i_ok) current = 0;
    const auto migrations = detail::sql::schema_migrations(dialect.types());
    const int latest = migrations.empty() ? 0 : migrations.back().version;
    if (current > latest) {
      throw std::runtime_error("the database's schema version " + std::to_string(current) +
                               " is newer than this library's (" + std::to_string(latest) + ")");
    }
    for (const auto& m : migrations) {
      if (m.version <= current) continue;
      for (const auto& statement : m.statements) c.session << statement;
      long long version = m.version;
      std::string description = m.description;
      c.session << "INSERT INTO schema_version (version, description) VALUES (:version, "
                   ":description)",
          soci::use(version, "version"), soci::use(description, "description");
      log.info("tradecapture: {}: applied schema migration {} ({})", dialect.describe(),
                   m.version, m.description);
    }
    c.session.commit();
  } catch (...) {
    c.rollback_quietly();
    throw;
  }
}

// ---- the store ---------------------------------------------------------------------------------

constexpr const char* positions_sql =
    "SELECT account, book, security, seq, net_quantity, bought_quantity, sold_quantity, "
    "bought_notional, sold_notional, live_trades FROM partitions WHERE seq > 0";

constexpr const char* scan_partitions_sql =
    "SELECT partition_id, account, book, security FROM partitions WHERE seq > 0";

constexpr const char* scan_events_sql =
    "SELECT seq, trade_id, version, type, side, quantity, price "
    "FROM events WHERE partition_id = :partition_id ORDER BY seq";

// A claim in one statement, the same in both dialects (SQLite has UPSERT and RETURNING since
// 3.35): the row is created with epoch 1 or its epoch incremented, atomically, and read back.
constexpr const char* claim_source_sql =
    "INSERT INTO source_offsets (consumer, topic, partition, next_offset, epoch) "
    "VALUES (:consumer, :topic, :partition, 0, 1) "
    "ON CONFLICT (consumer, topic, partition) DO UPDATE SET epoch = source_offsets.epoch + 1 "
    "RETURNING next_offset, epoch";

constexpr const char* source_offsets_sql =
    "SELECT topic, partition, next_offset, epoch FROM source_offsets WHERE consumer = :consumer";

/// False (and logged) when a source name holds a NUL byte: PostgreSQL text cannot, and libpq
/// would cut the bound value short; refused in both dialects so they behave alike.
bool storable_source_name(std::string_view name, std::string_view store, spdlog::logger& log) {
  if (name.find('\0') == std::string_view::npos) return true;
  log.error("tradecapture: {}: a source consumer or topic name contains a NUL byte", store);
  return false;
}

class SqlStore final : public TradeStore {
 public:
  SqlStore(std::unique_ptr<Dialect> dialect, std::size_t pool_size,
           std::shared_ptr<spdlog::logger> logger, std::string subject)
      : dialect_(std::move(dialect)),
        faults_(std::move(logger), std::move(subject)),
        pool_(*dialect_, faults_, pool_size) {}

  /// Opens the first connection and migrates the schema.
  result<void> open() {
    try {
      auto c = std::make_unique<Connection>(*dialect_);
      migrate(*c, *dialect_, *faults_.logger());
      pool_.adopt(std::move(c));
      return boost::outcome_v2::success();
    } catch (...) {
      return convert_current_exception(*dialect_, faults_, "open", errc::store_error);
    }
  }

  result<std::vector<PartitionState>> load_partitions(
      std::span<const PartitionKey> partitions) override {
    if (partitions.empty()) return std::vector<PartitionState>{};
    return run("load_partitions",
               [&](Connection& c, Attempt&) -> result<std::vector<PartitionState>> {
                 std::vector<PartitionState> out(partitions.size());
                 BatchStatements& st = c.statements();
                 Transaction tx(c, dialect_->begin_read());  // one snapshot for both tables
                 st.load_partitions(partitions, out);
                 tx.commit();
                 return out;
               });
  }

  result<std::vector<PartitionState>> claim_partitions(
      std::span<const PartitionKey> partitions) override {
    if (partitions.empty()) return std::vector<PartitionState>{};
    for (std::size_t i = 1; i < partitions.size(); ++i) {
      // One global row order for every writer: no deadlocks by construction.
      if (!(partitions[i - 1] < partitions[i])) return errc::internal;
    }
    std::unique_lock<std::mutex> writer(write_mutex_, std::defer_lock);
    if (dialect_->single_writer()) writer.lock();
    // Repeating a claim whose COMMIT answer was lost (see `run`) is safe: the caller then holds
    // the next fence, and nobody holds the one skipped.
    return run("claim_partitions",
               [&](Connection& c, Attempt&) -> result<std::vector<PartitionState>> {
                 std::vector<PartitionState> out(partitions.size());
                 BatchStatements& st = c.statements();
                 Transaction tx(c, dialect_->begin_write());
                 st.claim_partitions(partitions, out);
                 tx.commit();
                 return out;
               });
  }

  result<std::vector<std::optional<StoredEvent>>> find_events(
      std::span<const IdempotencyKey> keys) override {
    using Found = std::vector<std::optional<StoredEvent>>;
    if (keys.empty()) return Found{};
    return run("find_events", [&](Connection& c, Attempt&) -> result<Found> {
      Found out(keys.size());
      BatchStatements& st = c.statements();
      if (st.find_events_in_one_statement()) {
        st.find_events(keys, out);
        return out;
      }
      Transaction tx(c, dialect_->begin_read());
      st.find_events(keys, out);
      tx.commit();
      return out;
    });
  }

  result<std::vector<PositionRow>> positions() override {
    return run("positions", [&](Connection& c, Attempt&) -> result<std::vector<PositionRow>> {
      std::vector<PositionRow> out;
      std::string account, book, security, net, bought_q, sold_q, bought_n, sold_n;
      long long seq = 0, live = 0;
      soci::statement st =
          (c.session.prepare << positions_sql, soci::into(account), soci::into(book),
           soci::into(security), soci::into(seq), soci::into(net), soci::into(bought_q),
           soci::into(sold_q), soci::into(bought_n), soci::into(sold_n), soci::into(live));
      if (st.execute(true)) {
        do {
          PositionRow& row = out.emplace_back();
          row.partition = PartitionKey{account, book, security};
          row.seq = static_cast<std::uint64_t>(seq);
          row.position.net_quantity = detail::sql::parse_decimal(net);
          row.position.bought_quantity = detail::sql::parse_decimal(bought_q);
          row.position.sold_quantity = detail::sql::parse_decimal(sold_q);
          row.position.bought_notional = detail::sql::parse_decimal(bought_n);
          row.position.sold_notional = detail::sql::parse_decimal(sold_n);
          row.position.live_trades = live;
        } while (st.fetch());
      }
      // Bytewise order, whatever the database's collation.
      std::sort(out.begin(), out.end(), [](const PositionRow& a, const PositionRow& b) {
        return a.partition < b.partition;
      });
      return out;
    });
  }

  result<void> scan_events(const std::function<bool(const StoredEvent&)>& fn) override {
    return run("scan_events", [&](Connection& c, Attempt& attempt) -> result<void> {
      Transaction tx(c, dialect_->begin_read());  // one snapshot for the whole scan
      std::vector<std::pair<PartitionKey, long long>> partitions;
      {
        long long id = 0;
        std::string account, book, security;
        soci::statement st = (c.session.prepare << scan_partitions_sql, soci::into(id),
                              soci::into(account), soci::into(book), soci::into(security));
        if (st.execute(true)) {
          do {
            partitions.emplace_back(PartitionKey{account, book, security}, id);
          } while (st.fetch());
        }
      }
      std::sort(partitions.begin(), partitions.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      {
        // Streamed partition by partition, row by row. The statement is local so that an early
        // stop finalizes it (and releases its read lock) before the transaction ends.
        long long id = 0, seq = 0, version = 0;
        std::string trade_id, type, side, quantity, price;
        soci::indicator side_ind = soci::i_ok, quantity_ind = soci::i_ok, price_ind = soci::i_ok;
        soci::statement st = (c.session.prepare << scan_events_sql, soci::use(id, "partition_id"),
                              soci::into(seq), soci::into(trade_id), soci::into(version),
                              soci::into(type), soci::into(side, side_ind),
                              soci::into(quantity, quantity_ind), soci::into(price, price_ind));
        bool more = true;
        for (std::size_t i = 0; more && i < partitions.size(); ++i) {
          id = partitions[i].second;
          if (!st.execute(true)) continue;
          do {
            StoredEvent e;
            e.seq = static_cast<std::uint64_t>(seq);
            e.event.trade_id = trade_id;
            e.event.version = version;
            e.event.partition = partitions[i].first;
            detail::sql::fill_event(e.event, type, side, side_ind, quantity, quantity_ind, price,
                                    price_ind);
            attempt.repeatable = false;  // the caller has seen events: never start over
            try {
              more = fn(e);
            } catch (...) {
              throw CallbackFailure{std::current_exception()};
            }
          } while (more && st.fetch());
        }
      }
      tx.commit();
      return boost::outcome_v2::success();
    });
  }

  result<void> ping() override {
    return run("ping", [&](Connection& c, Attempt&) -> result<void> {
      int one = 0;
      c.session << "SELECT 1", soci::into(one);
      return boost::outcome_v2::success();
    });
  }

  result<SourceOffset> claim_source(std::string_view consumer, std::string_view topic,
                                    std::int32_t partition) override {
    if (!storable_source_name(consumer, describe(), *faults_.logger()) ||
        !storable_source_name(topic, describe(), *faults_.logger())) {
      return errc::store_error;
    }
    std::unique_lock<std::mutex> writer(write_mutex_, std::defer_lock);
    if (dialect_->single_writer()) writer.lock();
    // Repeating a claim whose COMMIT answer was lost (see `run`) is safe: the caller then holds
    // the next epoch, and nobody holds the one skipped.
    return run("claim_source", [&](Connection& c, Attempt&) -> result<SourceOffset> {
      SourceOffset out{std::string(consumer), std::string(topic), partition, 0, 0};
      long long source_partition = partition, next_offset = 0, epoch = 0;
      Transaction tx(c, dialect_->begin_write());
      c.session << claim_source_sql, soci::use(out.consumer, "consumer"),
          soci::use(out.topic, "topic"), soci::use(source_partition, "partition"),
          soci::into(next_offset), soci::into(epoch);
      tx.commit();
      if (next_offset < 0 || epoch < 1) {
        throw detail::sql::CorruptData("stored source offset " + std::to_string(next_offset) +
                                       " epoch " + std::to_string(epoch));
      }
      out.next_offset = next_offset;
      out.epoch = static_cast<std::uint64_t>(epoch);
      return out;
    });
  }

  result<std::vector<SourceOffset>> source_offsets(std::string_view consumer) override {
    if (!storable_source_name(consumer, describe(), *faults_.logger())) return errc::store_error;
    return run("source_offsets", [&](Connection& c, Attempt&) -> result<std::vector<SourceOffset>> {
      std::vector<SourceOffset> out;
      std::string name(consumer), topic;
      long long partition = 0, next_offset = 0, epoch = 0;
      soci::statement st =
          (c.session.prepare << source_offsets_sql, soci::use(name, "consumer"), soci::into(topic),
           soci::into(partition), soci::into(next_offset), soci::into(epoch));
      if (st.execute(true)) {
        do {
          if (partition < std::numeric_limits<std::int32_t>::min() ||
              partition > std::numeric_limits<std::int32_t>::max() || next_offset < 0 ||
              epoch < 0) {
            throw detail::sql::CorruptData("stored source offset row of topic '" + topic + "'");
          }
          out.push_back(SourceOffset{name, topic, static_cast<std::int32_t>(partition), next_offset,
                                     static_cast<std::uint64_t>(epoch)});
        } while (st.fetch());
      }
      // Bytewise order, whatever the database's collation.
      std::sort(out.begin(), out.end(), [](const SourceOffset& a, const SourceOffset& b) {
        return std::tie(a.topic, a.partition) < std::tie(b.topic, b.partition);
      });
      return out;
    });
  }

  StoreStats stats() const override { return pool_.stats(); }

  std::string describe() const override { return dialect_->describe(); }

 protected:
  result<void> do_commit_(const CommitBatch& batch) override {
    if (batch.partitions.empty() && batch.sources.empty() && batch.absent_keys.empty()) {
      return boost::outcome_v2::success();
    }
    for (const auto& u : batch.partitions) {
      if (u.new_seq > detail::sql::max_sql_integer || u.fence > detail::sql::max_sql_integer) {
        faults_.logger()->error("tradecapture: {}: sequence number or fencing token beyond 2^63-1",
                                describe());
        return errc::store_error;
      }
    }
    for (const auto& src : batch.sources) {
      if (src.epoch > detail::sql::max_sql_integer) {
        faults_.logger()->error("tradecapture: {}: source epoch beyond 2^63-1", describe());
        return errc::store_error;
      }
      if (!storable_source_name(src.consumer, describe(), *faults_.logger()) ||
          !storable_source_name(src.topic, describe(), *faults_.logger())) {
        return errc::store_error;
      }
    }
    std::unique_lock<std::mutex> writer(write_mutex_, std::defer_lock);
    if (dialect_->single_writer()) writer.lock();
    return run("commit", [&](Connection& c, Attempt& attempt) -> result<void> {
      BatchStatements& st = c.statements();
      Transaction tx(c, dialect_->begin_write());
      // A refusal returns here and the transaction rolls back as it goes out of scope.
      if (auto refused = st.write(batch, attempt.on_unique)) return *refused;
      attempt.repeatable = false;  // from here on the batch may land without our hearing so
      tx.commit();
      return boost::outcome_v2::success();
    });
  }

 private:
  /// Runs `body(Connection&, Attempt&)` on a pooled connection and converts what it throws. The
  /// body returns its result or a refusal, and throws on database failures; its transaction is
  /// its own (a `Transaction` on its stack), so the connection comes back rolled back whatever
  /// happens. See the file comment for lost connections.
  template <class Body>
  auto run(std::string_view during, Body&& body)
      -> decltype(body(std::declval<Connection&>(), std::declval<Attempt&>())) {
    for (int round = 1;; ++round) {
      auto lease = pool_.acquire();
      if (!lease) return lease.error();
      Connection& c = *lease.value();
      Attempt attempt;
      try {
        auto out = body(c, attempt);
        faults_.success();  // the database answered (a refusal is an answer too)
        return out;
      } catch (const CallbackFailure& failure) {
        std::rethrow_exception(failure.error);  // the caller's exception, not the store's
      } catch (...) {
        Fault fault = Fault::other;
        const errc code =
            convert_current_exception(*dialect_, faults_, during, attempt.on_unique, &fault);
        if (fault == Fault::unavailable || fault == Fault::other) c.broken = true;
        if (fault != Fault::unavailable) return code;
        pool_.discard_idle();
        if (!(c.reused && attempt.repeatable && round == 1)) return code;
        faults_.failure("reconnecting",
                        std::string(during) +
                            ": the pooled session was lost; once more on a fresh connection",
                        spdlog::level::info);
      }
    }
  }

  std::unique_ptr<Dialect> dialect_;
  detail::FaultLog faults_;  // bounded fault lines (before pool_, which reports to it)
  Pool pool_;                // after dialect_: its connections use it
  std::mutex write_mutex_;  // in-process writers of a single-writer database
};

/// The dialect a store URI names.
result<std::unique_ptr<Dialect>> make_dialect(const std::string& uri,
                                              const SociStoreOptions& options) {
  if (uri.starts_with("sqlite:")) return detail::sql::make_sqlite_dialect(uri.substr(7), options);
  if (uri.starts_with("postgresql://") || uri.starts_with("postgres://")) {
    return detail::sql::make_postgresql_dialect(uri, options);
  }
  (options.logger ? options.logger : spdlog::default_logger())
      ->error("tradecapture: store URI scheme '{}' is not sqlite: or postgresql:",
              uri.substr(0, uri.find(':')));
  return errc::bad_uri;
}

}  // namespace

result<std::shared_ptr<TradeStore>> open_soci_store(const std::string& uri,
                                                    const SociStoreOptions& options) {
  auto dialect = make_dialect(uri, options);
  if (!dialect) return dialect.error();
  auto store = std::make_shared<SqlStore>(std::move(dialect).value(), options.pool_size,
                                         options.logger, fault_subject(uri));
  if (auto opened = store->open(); !opened) return opened.error();
  return std::shared_ptr<TradeStore>(std::move(store));
}

}  // namespace tradecapture
