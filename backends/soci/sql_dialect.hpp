#pragma once
// Private to the SOCI backend: what differs between the SQL databases the store runs on. The store
// itself (soci_store.cpp) is written once against this interface; a database is added by adding
// a dialect (SQL types and table options, transaction statements, session set-up, error
// classification, the batch statements of the hot paths), never a second store.

#include <tradecapture/error.hpp>
#include <tradecapture/soci_store.hpp>
#include <tradecapture/trade_store.hpp>

#include "sql_faults.hpp"

#include <soci/soci.h>

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tradecapture::detail::sql {

/// True for a check-only update: no events, trades or marks, `new_seq == expected_seq`. It writes
/// nothing; the commit fails unless the stored seq is still `expected_seq` (`sequence_conflict`)
/// and the stored fence is not above its fence (`fenced_off`, which wins).
inline bool check_only(const PartitionUpdate& u) {
  return u.events.empty() && u.trades.empty() && u.marks.empty() && u.new_seq == u.expected_seq;
}

/// How a dialect spells the column types and table options of the schema.
struct ColumnTypes {
  std::string_view id;                   ///< an auto-assigned 64-bit primary key
  std::string_view integer;              ///< a signed 64-bit integer
  std::string_view decimal;              ///< an exact decimal (see sql_schema.cpp)
  std::string_view text;                 ///< UTF-8 text compared bytewise
  std::string_view table_options;        ///< appended after ")" of a CREATE TABLE with a rowid/id
  std::string_view keyed_table_options;  ///< the same for tables keyed by their primary key
  /// Appended after those to the tables whose rows are updated in place (partitions, trades,
  /// source marks).
  std::string_view updated_table_options;
  /// Appended to the `partition_id` columns of events and trades: a foreign-key clause, or
  /// nothing where the database would check it on every row (see sql_schema.cpp).
  std::string_view partition_reference;
};

/// The statements of the hot paths (load partitions, find idempotency keys, write a batch) on one
/// connection, prepared once and re-executed with bound values. There are two kinds: row at a
/// time (sql_row_statements.cpp: a statement per partition or key, cheap where a statement is a
/// function call, as in SQLite) and set-based (postgresql_statements.cpp: a few statements per
/// batch whatever its size, each value list bound as one array parameter, for a database where
/// every statement is a network round trip). The caller owns the transaction; every method throws
/// `soci::soci_error` (or `CorruptData`, `std::exception`) on failure.
class BatchStatements {
 public:
  virtual ~BatchStatements() = default;
  /// Inside a read transaction: the state of each partition that has a row (`out[i]` for
  /// `keys[i]`; `out` comes sized and empty).
  virtual void load_partitions(std::span<const PartitionKey> keys,
                               std::vector<PartitionState>& out) = 0;
  /// Inside a read transaction (see `find_events_in_one_statement`): the stored event of each key
  /// that has one (`out[i]` for `keys[i]`; `out` comes sized and empty).
  virtual void find_events(std::span<const IdempotencyKey> keys,
                           std::vector<std::optional<StoredEvent>>& out) = 0;
  /// True when `find_events` runs one statement whatever the number of keys: one statement sees
  /// one snapshot by itself, so the store runs it without BEGIN and COMMIT (two round trips of a
  /// networked database saved per lookup).
  virtual bool find_events_in_one_statement() const { return false; }
  /// Inside the open write transaction: claims each partition (`keys` strictly ascending): its
  /// stored fence is incremented, its row created with seq 0 and fence 1 when missing, rows
  /// locked in key order; then fills `out[i]` with the state of `keys[i]` as it is now, the new
  /// fence included (`out` comes sized and empty).
  virtual void claim_partitions(std::span<const PartitionKey> keys,
                                std::vector<PartitionState>& out) = 0;
  /// Inside the open write transaction: writes `batch` (its invariants checked), its source
  /// offsets first, or returns why the store refuses it (`fenced_off` for a stale partition
  /// fencing token or a stale source epoch, `sequence_conflict`, `key_conflict` for a taken key
  /// of an event or of `absent_keys`); the caller then rolls back. A check-only update (no
  /// events, no trades, new_seq == expected_seq) is checked against the stored seq and fence
  /// and writes nothing. `on_unique` is kept set to what a unique-key violation would mean at the
  /// statement being executed (`key_conflict` while inserting events, else `store_error`).
  virtual std::optional<errc> write(const CommitBatch& batch, errc& on_unique) = 0;
};

/// Row-at-a-time statements in SQL that SQLite and PostgreSQL both accept.
std::unique_ptr<BatchStatements> make_row_statements(soci::session& session);

/// Set-based statements with array parameters (`unnest`): PostgreSQL only.
std::unique_ptr<BatchStatements> make_postgresql_statements(soci::session& session);

/// The database-specific part of the SQL store. Methods that talk to the database throw
/// `soci::soci_error`; the store turns that into an `errc` in one place.
class Dialect {
 public:
  virtual ~Dialect() = default;

  /// "sqlite:PATH", for logs and `TradeStore::describe`; never shows a password.
  virtual std::string describe() const = 0;
  /// Connects `session` and applies per-connection settings (pragmas, session parameters).
  virtual void open(soci::session& session) const = 0;
  /// The schema's column types.
  virtual const ColumnTypes& types() const = 0;
  /// Starts the transaction of a commit; takes the write lock up front where the database has
  /// one (SQLite: BEGIN IMMEDIATE), so a commit never upgrades a read lock midway.
  virtual std::string_view begin_write() const = 0;
  /// Starts a read-only transaction that sees one consistent snapshot.
  virtual std::string_view begin_read() const = 0;
  /// Starts the transaction that creates or migrates the schema, serialising concurrent openers.
  virtual void begin_migration(soci::session& session) const = 0;
  /// True when the database admits one writer at a time (SQLite): in-process writers then queue
  /// on a mutex rather than on the database's busy handler, which sleeps.
  virtual bool single_writer() const = 0;
  /// Classifies a failure raised by this dialect's SOCI backend.
  virtual Classified classify(const soci::soci_error& e) const = 0;
  /// Prepares the hot statements on a connected `session` (which outlives them).
  virtual std::unique_ptr<BatchStatements> prepare_statements(soci::session& session) const = 0;
};

/// The SQLite dialect for the database file `path` (`sqlite:PATH`).
result<std::unique_ptr<Dialect>> make_sqlite_dialect(const std::string& path,
                                                     const SociStoreOptions& options);

/// The PostgreSQL dialect for a libpq URI (`postgresql://...` or `postgres://...`); `errc::bad_uri`
/// when SOCI cannot carry the URI to libpq unchanged (see postgresql_dialect.cpp).
result<std::unique_ptr<Dialect>> make_postgresql_dialect(const std::string& uri,
                                                         const SociStoreOptions& options);

/// One step of the schema's history: applied once, in order, inside the migration transaction.
struct Migration {
  int version = 0;
  std::string description;
  std::vector<std::string> statements;  ///< one SQL statement each
};

/// The statement that creates the `schema_version` table when it is missing.
std::string schema_version_table(const ColumnTypes& types);

/// Every migration of the schema, ascending by version, spelled for `types`.
std::vector<Migration> schema_migrations(const ColumnTypes& types);

}  // namespace tradecapture::detail::sql
