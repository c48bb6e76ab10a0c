// The SQL TradeStore on SOCI. One store for every SQL database: what differs (types, transaction
// statements, session set-up, error codes) lives in a Dialect (sql_dialect.hpp).
//
// Concurrency: a pool of connections, one per concurrent call; each connection prepares the hot
// statements once and re-executes them with bound variables. With a single-writer database
// (SQLite) commits of this process queue on a mutex instead of the database's busy handler.
//
// Atomicity: a commit is one transaction. Per partition, in batch order: create the partition
// row when it is new, else update it on condition (WHERE seq = expected AND fence <= token); then
// insert its events (UNIQUE(trade_id, version) is the global idempotency key) and upsert its
// trades. Any refusal rolls the whole transaction back.

#include <tradecapture/soci_store.hpp>

#include "sql_dialect.hpp"

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
#include <utility>

namespace tradecapture {
namespace {

using detail::sql::Classified;
using detail::sql::Dialect;
using detail::sql::Fault;

// ---- errors ----------------------------------------------------------------------------------

/// The one conversion point from a database failure to an `errc`; call it inside a catch block.
/// SOCI exceptions are classified by the dialect; anything else (corrupt stored data, a SOCI
/// usage error, bad_alloc) is `errc::store_error`. `on_unique` is what a unique-key violation
/// means where it happened (`errc::key_conflict` while inserting events). The database's own
/// code and message go to spdlog's default logger; `fault` receives the classification.
errc convert_current_exception(const Dialect& dialect, std::string_view during, errc on_unique,
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
    switch (c.fault) {
      case Fault::busy:
        code = errc::store_busy;
        break;
      case Fault::unavailable:
        code = errc::store_unavailable;
        break;
      case Fault::unique_violation:
        code = on_unique;
        break;
      case Fault::other:
        code = errc::store_error;
        break;
    }
    // Conflicts and busy databases are part of normal operation (the caller retries).
    const auto level = code == errc::key_conflict || code == errc::store_busy ? spdlog::level::debug
                       : code == errc::store_unavailable                      ? spdlog::level::warn
                                                                              : spdlog::level::err;
    spdlog::log(level, "tradecapture: {}: {}: {} [{}]: {}", dialect.describe(), during,
                make_error_code(code).message(), c.native, message);
  } catch (...) {
    // Logging failed (out of memory): the code computed so far stands.
  }
  if (fault != nullptr) *fault = f;
  return code;
}

/// Thrown on a stored value this library could not have written; reported as `store_error`.
struct CorruptData : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- column values ---------------------------------------------------------------------------

constexpr std::string_view type_text(TradeType t) noexcept {
  switch (t) {
    case TradeType::New:
      return "NEW";
    case TradeType::Amend:
      return "AMEND";
    case TradeType::Cancel:
      return "CANCEL";
  }
  return "NEW";
}

TradeType parse_type(std::string_view text) {
  if (text == "NEW") return TradeType::New;
  if (text == "AMEND") return TradeType::Amend;
  if (text == "CANCEL") return TradeType::Cancel;
  throw CorruptData("stored event type '" + std::string(text) + "'");
}

constexpr std::string_view side_text(Side s) noexcept { return s == Side::Buy ? "BUY" : "SELL"; }

Side parse_side(std::string_view text) {
  if (text == "BUY") return Side::Buy;
  if (text == "SELL") return Side::Sell;
  throw CorruptData("stored side '" + std::string(text) + "'");
}

/// Reads a stored decimal: canonical text with an optional '-' (PostgreSQL's NUMERIC text, with
/// trailing zeros up to 14 fractional digits, is accepted as well).
Decimal parse_decimal(std::string_view text) {
  const bool negative = !text.empty() && text.front() == '-';
  auto value = Decimal::parse(negative ? text.substr(1) : text, Decimal::scale);
  if (value && negative) value = Decimal::from_units(-value.value().units());
  if (!value) throw CorruptData("stored decimal '" + std::string(text) + "'");
  return value.value();
}

constexpr std::uint64_t max_sql_integer = std::numeric_limits<long long>::max();

// ---- SQL ---------------------------------------------------------------------------------------
// Every value is a bound parameter. Parameter names are unique within a statement (PostgreSQL's
// SOCI backend numbers them by occurrence).

constexpr const char* find_event_sql =
    "SELECT p.account, p.book, p.security, e.seq, e.type, e.side, e.quantity, e.price "
    "FROM events e JOIN partitions p ON p.partition_id = e.partition_id "
    "WHERE e.trade_id = :trade_id AND e.version = :version";

constexpr const char* select_partition_sql =
    "SELECT partition_id, seq, fence, net_quantity, bought_quantity, sold_quantity, "
    "bought_notional, sold_notional, live_trades "
    "FROM partitions WHERE account = :account AND book = :book AND security = :security";

constexpr const char* select_trades_sql =
    "SELECT trade_id, version, side, quantity, price, cancelled "
    "FROM trades WHERE partition_id = :partition_id";

constexpr const char* select_head_sql =
    "SELECT partition_id, seq, fence "
    "FROM partitions WHERE account = :account AND book = :book AND security = :security";

constexpr const char* insert_partition_sql =
    "INSERT INTO partitions (account, book, security, seq, fence, net_quantity, "
    "bought_quantity, sold_quantity, bought_notional, sold_notional, live_trades) "
    "VALUES (:account, :book, :security, :seq, :fence, :net_quantity, :bought_quantity, "
    ":sold_quantity, :bought_notional, :sold_notional, :live_trades) "
    "ON CONFLICT (account, book, security) DO NOTHING";

constexpr const char* update_partition_sql =
    "UPDATE partitions SET seq = :seq, fence = :fence, net_quantity = :net_quantity, "
    "bought_quantity = :bought_quantity, sold_quantity = :sold_quantity, "
    "bought_notional = :bought_notional, sold_notional = :sold_notional, "
    "live_trades = :live_trades "
    "WHERE partition_id = :partition_id AND seq = :expected_seq AND fence <= :fence_limit";

constexpr const char* insert_events_sql =
    "INSERT INTO events (partition_id, seq, trade_id, version, type, side, quantity, price) "
    "VALUES (:partition_id, :seq, :trade_id, :version, :type, :side, :quantity, :price)";

constexpr const char* upsert_trades_sql =
    "INSERT INTO trades (partition_id, trade_id, version, side, quantity, price, cancelled) "
    "VALUES (:partition_id, :trade_id, :version, :side, :quantity, :price, :cancelled) "
    "ON CONFLICT (partition_id, trade_id) DO UPDATE SET version = excluded.version, "
    "side = excluded.side, quantity = excluded.quantity, price = excluded.price, "
    "cancelled = excluded.cancelled";

constexpr const char* positions_sql =
    "SELECT account, book, security, seq, net_quantity, bought_quantity, sold_quantity, "
    "bought_notional, sold_notional, live_trades FROM partitions WHERE seq > 0";

constexpr const char* scan_partitions_sql =
    "SELECT partition_id, account, book, security FROM partitions WHERE seq > 0";

constexpr const char* scan_events_sql =
    "SELECT seq, trade_id, version, type, side, quantity, price "
    "FROM events WHERE partition_id = :partition_id ORDER BY seq";

/// Executes a single-row query and runs it to completion, so the statement holds no read lock
/// while the connection waits in the pool. Returns whether the row was there.
bool fetch_one(soci::statement& st) {
  if (!st.execute(true)) return false;
  st.fetch();  // steps past the only row (the key is unique)
  return true;
}

/// The hot statements of one connection, prepared once, with the variables they are bound to.
/// Not movable: the statements hold the addresses of the members.
struct Statements {
  explicit Statements(soci::session& s)
      : find_event(s),
        select_partition(s),
        select_trades(s),
        select_head(s),
        insert_partition(s),
        update_partition(s),
        insert_events(s),
        upsert_trades(s) {
    using soci::into;
    using soci::use;
    find_event =
        (s.prepare << find_event_sql, use(trade_id, "trade_id"), use(version, "version"),
         into(account_out), into(book_out), into(security_out), into(seq_out), into(type_out),
         into(side_out, side_ind), into(quantity_out, quantity_ind), into(price_out, price_ind));
    select_partition =
        (s.prepare << select_partition_sql, use(account, "account"), use(book, "book"),
         use(security, "security"), into(partition_id_out), into(seq_out), into(fence_out),
         into(net_quantity), into(bought_quantity), into(sold_quantity), into(bought_notional),
         into(sold_notional), into(live_trades));
    select_trades = (s.prepare << select_trades_sql, use(partition_id, "partition_id"),
                     into(trade_id_out), into(version_out), into(side_out), into(quantity_out),
                     into(price_out), into(cancelled_out));
    select_head =
        (s.prepare << select_head_sql, use(account, "account"), use(book, "book"),
         use(security, "security"), into(partition_id_out), into(seq_out), into(fence_out));
    insert_partition =
        (s.prepare << insert_partition_sql, use(account, "account"), use(book, "book"),
         use(security, "security"), use(seq, "seq"), use(fence, "fence"),
         use(net_quantity, "net_quantity"), use(bought_quantity, "bought_quantity"),
         use(sold_quantity, "sold_quantity"), use(bought_notional, "bought_notional"),
         use(sold_notional, "sold_notional"), use(live_trades, "live_trades"));
    update_partition =
        (s.prepare << update_partition_sql, use(seq, "seq"), use(fence, "fence"),
         use(net_quantity, "net_quantity"), use(bought_quantity, "bought_quantity"),
         use(sold_quantity, "sold_quantity"), use(bought_notional, "bought_notional"),
         use(sold_notional, "sold_notional"), use(live_trades, "live_trades"),
         use(partition_id, "partition_id"), use(expected_seq, "expected_seq"),
         use(fence, "fence_limit"));
    insert_events =
        (s.prepare << insert_events_sql, use(ev_partition_id, "partition_id"), use(ev_seq, "seq"),
         use(ev_trade_id, "trade_id"), use(ev_version, "version"), use(ev_type, "type"),
         use(ev_side, ev_side_ind, "side"), use(ev_quantity, ev_value_ind, "quantity"),
         use(ev_price, ev_value_ind, "price"));
    upsert_trades =
        (s.prepare << upsert_trades_sql, use(tr_partition_id, "partition_id"),
         use(tr_trade_id, "trade_id"), use(tr_version, "version"), use(tr_side, "side"),
         use(tr_quantity, "quantity"), use(tr_price, "price"), use(tr_cancelled, "cancelled"));
  }
  Statements(const Statements&) = delete;
  Statements& operator=(const Statements&) = delete;

  // Inputs of the single-row statements.
  std::string account, book, security, trade_id;
  long long version = 0, partition_id = 0, seq = 0, fence = 0, expected_seq = 0, live_trades = 0;
  std::string net_quantity, bought_quantity, sold_quantity, bought_notional, sold_notional;
  // Outputs (net_quantity ... live_trades above double as outputs of select_partition).
  std::string account_out, book_out, security_out, type_out, side_out, quantity_out, price_out;
  std::string trade_id_out;
  long long partition_id_out = 0, seq_out = 0, fence_out = 0, version_out = 0;
  int cancelled_out = 0;
  soci::indicator side_ind = soci::i_ok, quantity_ind = soci::i_ok, price_ind = soci::i_ok;
  // Rows of the bulk statements (one element per row).
  std::vector<long long> ev_partition_id, ev_seq, ev_version;
  std::vector<std::string> ev_trade_id, ev_type, ev_side, ev_quantity, ev_price;
  std::vector<soci::indicator> ev_side_ind, ev_value_ind;  // i_null for a CANCEL
  std::vector<long long> tr_partition_id, tr_version;
  std::vector<std::string> tr_trade_id, tr_side, tr_quantity, tr_price;
  std::vector<int> tr_cancelled;

  soci::statement find_event;        // (trade_id, version) -> the event and its partition
  soci::statement select_partition;  // key -> id, seq, fence, position
  soci::statement select_trades;     // partition id -> its trade records
  soci::statement select_head;       // key -> id, seq, fence
  soci::statement insert_partition;  // a new partition with its state after the batch
  soci::statement update_partition;  // conditional on seq and fence
  soci::statement insert_events;     // bulk
  soci::statement upsert_trades;     // bulk
};

// ---- connections -----------------------------------------------------------------------------

/// One database session and its prepared statements.
class Connection {
 public:
  explicit Connection(const Dialect& dialect) { dialect.open(session); }

  /// The hot statements, prepared on first use.
  Statements& statements() {
    if (!statements_) statements_ = std::make_unique<Statements>(session);
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

 private:
  std::unique_ptr<Statements> statements_;  // destroyed before the session
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

  Pool(const Dialect& dialect, std::size_t size)
      : dialect_(dialect), size_(std::max<std::size_t>(size, 1)) {}

  /// Hands a connection opened elsewhere (the one that ran the migrations) to the pool.
  void adopt(std::unique_ptr<Connection> c) {
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
      const errc code = convert_current_exception(dialect_, "connect", errc::store_error);
      release_slot();
      return code;
    }
  }

 private:
  void give_back(std::unique_ptr<Connection> c) noexcept {
    if (c->broken) {
      c.reset();
      release_slot();
      return;
    }
    {
      std::lock_guard lock(mutex_);
      idle_.push_back(std::move(c));
    }
    available_.notify_one();
  }

  void release_slot() noexcept {
    {
      std::lock_guard lock(mutex_);
      --open_;
    }
    available_.notify_one();
  }

  const Dialect& dialect_;
  const std::size_t size_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t open_ = 0;  ///< idle plus leased plus being opened
};

/// A read-only transaction that rolls back unless committed.
class ReadTransaction {
 public:
  ReadTransaction(Connection& c, const Dialect& dialect) : c_(c) {
    c_.session << dialect.begin_read();
  }
  ReadTransaction(const ReadTransaction&) = delete;
  ReadTransaction& operator=(const ReadTransaction&) = delete;
  ~ReadTransaction() {
    if (!done_) c_.rollback_quietly();
  }
  void commit() {
    c_.session.commit();
    done_ = true;
  }

 private:
  Connection& c_;
  bool done_ = false;
};

/// Creates the schema or brings it up to date, in one transaction.
void migrate(Connection& c, const Dialect& dialect) {
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
      spdlog::info("tradecapture: {}: applied schema migration {} ({})", dialect.describe(),
                   m.version, m.description);
    }
    c.session.commit();
  } catch (...) {
    c.rollback_quietly();
    throw;
  }
}

// ---- the store ---------------------------------------------------------------------------------

class SqlStore final : public TradeStore {
 public:
  SqlStore(std::unique_ptr<Dialect> dialect, std::size_t pool_size)
      : dialect_(std::move(dialect)), pool_(*dialect_, pool_size) {}

  /// Opens the first connection and migrates the schema.
  result<void> open() {
    try {
      auto c = std::make_unique<Connection>(*dialect_);
      migrate(*c, *dialect_);
      pool_.adopt(std::move(c));
      return boost::outcome_v2::success();
    } catch (...) {
      return convert_current_exception(*dialect_, "open", errc::store_error);
    }
  }

  result<std::vector<PartitionState>> load_partitions(
      std::span<const PartitionKey> partitions) override {
    std::vector<PartitionState> out(partitions.size());
    if (partitions.empty()) return out;
    auto lease = pool_.acquire();
    if (!lease) return lease.error();
    Connection& c = *lease.value();
    try {
      Statements& st = c.statements();
      ReadTransaction tx(c, *dialect_);
      for (std::size_t i = 0; i < partitions.size(); ++i) {
        st.account = partitions[i].account;
        st.book = partitions[i].book;
        st.security = partitions[i].security;
        if (!fetch_one(st.select_partition)) continue;  // never written: the empty state
        PartitionState& s = out[i];
        s.seq = static_cast<std::uint64_t>(st.seq_out);
        s.fence = static_cast<std::uint64_t>(st.fence_out);
        s.position.net_quantity = parse_decimal(st.net_quantity);
        s.position.bought_quantity = parse_decimal(st.bought_quantity);
        s.position.sold_quantity = parse_decimal(st.sold_quantity);
        s.position.bought_notional = parse_decimal(st.bought_notional);
        s.position.sold_notional = parse_decimal(st.sold_notional);
        s.position.live_trades = st.live_trades;
        st.partition_id = st.partition_id_out;
        if (!st.select_trades.execute(true)) continue;
        do {
          TradeRecord r;
          r.version = st.version_out;
          r.side = parse_side(st.side_out);
          r.quantity = parse_decimal(st.quantity_out);
          r.price = parse_decimal(st.price_out);
          r.cancelled = st.cancelled_out != 0;
          s.trades.insert_or_assign(st.trade_id_out, r);
        } while (st.select_trades.fetch());
      }
      tx.commit();
      return out;
    } catch (...) {
      return fail(c, "load_partitions");
    }
  }

  result<std::vector<std::optional<StoredEvent>>> find_events(
      std::span<const IdempotencyKey> keys) override {
    std::vector<std::optional<StoredEvent>> out(keys.size());
    if (keys.empty()) return out;
    auto lease = pool_.acquire();
    if (!lease) return lease.error();
    Connection& c = *lease.value();
    try {
      Statements& st = c.statements();
      ReadTransaction tx(c, *dialect_);
      for (std::size_t i = 0; i < keys.size(); ++i) {
        st.trade_id = keys[i].trade_id;
        st.version = keys[i].version;
        if (!fetch_one(st.find_event)) continue;
        StoredEvent& e = out[i].emplace();
        e.seq = static_cast<std::uint64_t>(st.seq_out);
        e.event.trade_id = keys[i].trade_id;
        e.event.version = keys[i].version;
        e.event.partition = PartitionKey{st.account_out, st.book_out, st.security_out};
        fill_event(e.event, st.type_out, st.side_out, st.side_ind, st.quantity_out, st.quantity_ind,
                   st.price_out, st.price_ind);
      }
      tx.commit();
      return out;
    } catch (...) {
      return fail(c, "find_events");
    }
  }

  result<std::vector<PositionRow>> positions() override {
    auto lease = pool_.acquire();
    if (!lease) return lease.error();
    Connection& c = *lease.value();
    try {
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
          row.position.net_quantity = parse_decimal(net);
          row.position.bought_quantity = parse_decimal(bought_q);
          row.position.sold_quantity = parse_decimal(sold_q);
          row.position.bought_notional = parse_decimal(bought_n);
          row.position.sold_notional = parse_decimal(sold_n);
          row.position.live_trades = live;
        } while (st.fetch());
      }
      // Bytewise order, whatever the database's collation.
      std::sort(out.begin(), out.end(), [](const PositionRow& a, const PositionRow& b) {
        return a.partition < b.partition;
      });
      return out;
    } catch (...) {
      return fail(c, "positions");
    }
  }

  result<void> scan_events(const std::function<bool(const StoredEvent&)>& fn) override {
    auto lease = pool_.acquire();
    if (!lease) return lease.error();
    Connection& c = *lease.value();
    bool in_callback = false;
    try {
      ReadTransaction tx(c, *dialect_);  // one snapshot for the whole scan
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
            fill_event(e.event, type, side, side_ind, quantity, quantity_ind, price, price_ind);
            in_callback = true;
            more = fn(e);
            in_callback = false;
          } while (more && st.fetch());
        }
      }
      tx.commit();
      return boost::outcome_v2::success();
    } catch (...) {
      if (in_callback) throw;  // the caller's exception, not the store's
      return fail(c, "scan_events");
    }
  }

  result<void> ping() override {
    auto lease = pool_.acquire();
    if (!lease) return lease.error();
    Connection& c = *lease.value();
    try {
      int one = 0;
      c.session << "SELECT 1", soci::into(one);
      return boost::outcome_v2::success();
    } catch (...) {
      return fail(c, "ping");
    }
  }

  std::string describe() const override { return dialect_->describe(); }

 protected:
  result<void> do_commit_(const CommitBatch& batch) override {
    if (batch.partitions.empty()) return boost::outcome_v2::success();
    for (const auto& u : batch.partitions) {
      if (u.new_seq > max_sql_integer || u.fence > max_sql_integer) {
        spdlog::error("tradecapture: {}: sequence number or fencing token beyond 2^63-1",
                      describe());
        return errc::store_error;
      }
    }
    std::unique_lock<std::mutex> writer(write_mutex_, std::defer_lock);
    if (dialect_->single_writer()) writer.lock();
    auto lease = pool_.acquire();
    if (!lease) return lease.error();
    Connection& c = *lease.value();
    errc on_unique = errc::store_error;
    bool in_transaction = false;
    try {
      Statements& st = c.statements();
      c.session << dialect_->begin_write();
      in_transaction = true;
      for (const auto& u : batch.partitions) {
        if (auto refused = write_partition(st, u, on_unique)) {
          c.rollback_quietly();
          return *refused;
        }
      }
      c.session.commit();
      return boost::outcome_v2::success();
    } catch (...) {
      Fault fault = Fault::other;
      const errc code = convert_current_exception(*dialect_, "commit", on_unique, &fault);
      // After a failed COMMIT the transaction may still be open; after some errors SQLite has
      // already rolled it back, and then this rollback fails harmlessly.
      if (in_transaction) c.rollback_quietly();
      if (fault == Fault::unavailable || fault == Fault::other) c.broken = true;
      return code;
    }
  }

 private:
  /// Writes one partition of a batch inside the open transaction. Returns the refusal, if any.
  static std::optional<errc> write_partition(Statements& st, const PartitionUpdate& u,
                                             errc& on_unique) {
    st.account = u.partition.account;
    st.book = u.partition.book;
    st.security = u.partition.security;
    st.seq = static_cast<long long>(u.new_seq);
    st.fence = static_cast<long long>(u.fence);
    st.expected_seq = static_cast<long long>(u.expected_seq);
    st.net_quantity = u.position.net_quantity.to_string();
    st.bought_quantity = u.position.bought_quantity.to_string();
    st.sold_quantity = u.position.sold_quantity.to_string();
    st.bought_notional = u.position.bought_notional.to_string();
    st.sold_notional = u.position.sold_notional.to_string();
    st.live_trades = u.position.live_trades;

    bool created = false;
    if (u.expected_seq == 0) {
      // A new partition is inserted with its final state; if it exists after all, the
      // conditional update below decides.
      st.insert_partition.execute(true);
      created = st.insert_partition.get_affected_rows() == 1;
    }
    if (!fetch_one(st.select_head)) return errc::sequence_conflict;  // expected a written one
    const long long id = st.partition_id_out;
    if (!created) {
      st.partition_id = id;
      st.update_partition.execute(true);
      if (st.update_partition.get_affected_rows() != 1) {
        // Which condition failed? (Read again: under MVCC another writer may have moved it.)
        if (!fetch_one(st.select_head)) return errc::sequence_conflict;
        return st.fence_out > st.fence ? errc::fenced_off : errc::sequence_conflict;
      }
    }

    if (const std::size_t n = u.events.size(); n > 0) {
      st.ev_partition_id.assign(n, id);
      st.ev_seq.resize(n);
      st.ev_version.resize(n);
      st.ev_trade_id.resize(n);
      st.ev_type.resize(n);
      st.ev_side.resize(n);
      st.ev_quantity.resize(n);
      st.ev_price.resize(n);
      st.ev_side_ind.resize(n);
      st.ev_value_ind.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        const StoredEvent& e = u.events[i];
        st.ev_seq[i] = static_cast<long long>(e.seq);
        st.ev_version[i] = e.event.version;
        st.ev_trade_id[i] = e.event.trade_id;
        st.ev_type[i] = type_text(e.event.type);
        if (e.event.type == TradeType::Cancel) {
          st.ev_side_ind[i] = soci::i_null;  // a CANCEL has no side, quantity or price
          st.ev_value_ind[i] = soci::i_null;
        } else {
          st.ev_side_ind[i] = soci::i_ok;
          st.ev_value_ind[i] = soci::i_ok;
          st.ev_side[i] = side_text(e.event.side);
          st.ev_quantity[i] = e.event.quantity.to_string();
          st.ev_price[i] = e.event.price.to_string();
        }
      }
      on_unique = errc::key_conflict;  // UNIQUE(trade_id, version): the idempotency key
      st.insert_events.execute(true);
      on_unique = errc::store_error;
    }

    if (const std::size_t n = u.trades.size(); n > 0) {
      st.tr_partition_id.assign(n, id);
      st.tr_version.resize(n);
      st.tr_trade_id.resize(n);
      st.tr_side.resize(n);
      st.tr_quantity.resize(n);
      st.tr_price.resize(n);
      st.tr_cancelled.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        const auto& [trade_id, r] = u.trades[i];
        st.tr_trade_id[i] = trade_id;
        st.tr_version[i] = r.version;
        st.tr_side[i] = side_text(r.side);
        st.tr_quantity[i] = r.quantity.to_string();
        st.tr_price[i] = r.price.to_string();
        st.tr_cancelled[i] = r.cancelled ? 1 : 0;
      }
      st.upsert_trades.execute(true);
    }
    return std::nullopt;
  }

  /// Fills the type and, unless a CANCEL, the side, quantity and price of an event.
  static void fill_event(TradeEvent& e, const std::string& type, const std::string& side,
                         soci::indicator side_ind, const std::string& quantity,
                         soci::indicator quantity_ind, const std::string& price,
                         soci::indicator price_ind) {
    e.type = parse_type(type);
    if (e.type == TradeType::Cancel) return;
    if (side_ind != soci::i_ok || quantity_ind != soci::i_ok || price_ind != soci::i_ok) {
      throw CorruptData("stored " + std::string(type_text(e.type)) +
                        " without side, quantity "
                        "or price");
    }
    e.side = parse_side(side);
    e.quantity = parse_decimal(quantity);
    e.price = parse_decimal(price);
  }

  /// Converts the exception in flight for a read call; marks the connection for replacement
  /// unless the failure is transient.
  errc fail(Connection& c, std::string_view during) noexcept {
    Fault fault = Fault::other;
    const errc code = convert_current_exception(*dialect_, during, errc::store_error, &fault);
    if (fault != Fault::busy) c.broken = true;
    return code;
  }

  std::unique_ptr<Dialect> dialect_;
  Pool pool_;               // after dialect_: its connections use it
  std::mutex write_mutex_;  // in-process writers of a single-writer database
};

/// The dialect a store URI names.
result<std::unique_ptr<Dialect>> make_dialect(const std::string& uri,
                                              const SociStoreOptions& options) {
  if (uri.starts_with("sqlite:")) return detail::sql::make_sqlite_dialect(uri.substr(7), options);
  if (uri.starts_with("postgresql://") || uri.starts_with("postgres://")) {
    return detail::sql::make_postgresql_dialect(uri, options);
  }
  spdlog::error("tradecapture: store URI scheme '{}' is not sqlite: or postgresql:",
                uri.substr(0, uri.find(':')));
  return errc::bad_uri;
}

}  // namespace

result<std::shared_ptr<TradeStore>> open_soci_store(const std::string& uri,
                                                    const SociStoreOptions& options) {
  auto dialect = make_dialect(uri, options);
  if (!dialect) return dialect.error();
  auto store = std::make_shared<SqlStore>(std::move(dialect).value(), options.pool_size);
  if (auto opened = store->open(); !opened) return opened.error();
  return std::shared_ptr<TradeStore>(std::move(store));
}

}  // namespace tradecapture
