// Set-based batch statements for PostgreSQL: a handful of statements per call whatever the size of
// the batch, each list of values bound as ONE text parameter holding a PostgreSQL array literal
// ('{"T1","T2"}') and turned back into rows by `unnest(:name::text[], ...)`. SOCI 4.0.3 binds no
// arrays for PostgreSQL, and its vector `use()` executes a statement per row (about 40 us a row
// here), so the arrays are spelled by hand (ArrayParam below, which escapes every element).
// Batches of up to 8 rows bind a parameter per value instead (see "Small batches" below).
//
// Measured on this machine (PostgreSQL 15 on the same 2 cores as the client and as other jobs,
// synchronous_commit=on; one batch of 5,000 events over 1,000 partitions):
// - the events as multi-row INSERT ... VALUES in chunks of 1,000 rows (8,000 bound parameters
//   each) took 200-270 ms; the same rows through unnest 50-70 ms, so unnest it is;
// - a whole commit takes 6 round trips (BEGIN, the 4 statements below, COMMIT), 80-140 ms end to
//   end, i.e. 35,000-60,000 events/s on one connection; server time per batch (amending 5,000
//   trades): events 35 ms, trades 24 ms, partitions 5 + 4 ms, COMMIT a few ms;
// - find_events for the 5,000 keys 12-25 ms, load_partitions for the 1,000 partitions 8-15 ms;
// - the schema's choices (sql_schema.cpp, postgresql_dialect.cpp): without foreign keys the
//   events insert takes 35 ms instead of 55; with fillfactor 70 the trades upsert 24 ms instead
//   of 41 and the partition update 4 ms instead of 10.
// The events of a batch of 64 or more (copy_min_rows) go in with `COPY events FROM STDIN` instead
// (libpq on the SOCI session's connection: SOCI has no COPY). COPY has no ON CONFLICT, and none
// is needed: a taken key fails the COPY with a unique violation, which the store reports as the
// same errc::key_conflict (see step 3 below). Measured with bench_pg_batch (BENCHMARKS.md,
// session 15): at 8,192 events ~3-5 us less server CPU an event (~20%), at 512 up to 5, at 64
// no clear difference; the trades keep their upsert (COPY cannot update a row).
//
// Small batches. The statements that take a batch's rows (the lookup find_events, and
// lock_partitions, update_partitions, insert_events and upsert_trades below) read them from a
// row source, `u`, with the rows in the order given, numbered from 1 in `u.ord`. Above 8 rows
// (small_rows) that is `unnest` of the arrays; up to 8 rows, a VALUES list with a parameter per
// value, one prepared statement per number of rows (RowsStatement). Nothing else differs: the
// same statements, the same rows in the same order, so the same row locks in the same order.
// Measured (BENCHMARKS.md, session 11, part 1): with the arrays, PostgreSQL planned
// find_events and update_partitions again at every execution for 1 to 7 rows (0.12-0.14 ms
// each): their generic plan assumes 10 array elements, so a custom plan for fewer rows looks
// cheaper. A batch of one event took 0.42 ms of statement time (0.26 planning, 0.17 execution)
// and 0.75-1.0 ms of server CPU in all; with VALUES 0.12-0.14 ms and 0.4-0.55 ms. At 16 rows
// VALUES saved no server CPU (the arrays have a generic plan from 8 rows) and cost the client
// more: SOCI handles each of the 30 parameters of a row, about 9 us of client CPU a row.
//
// A commit (`write`), inside the caller's READ COMMITTED transaction:
//   0. upsert_sources (only when the batch carries source offsets): every source offset in one
//      INSERT, in batch order, which is ascending (consumer, topic, partition), ON CONFLICT DO
//      UPDATE ... WHERE the stored epoch is not above the batch's. The epoch is checked inside the
//      write, on the locked row (a conflicting row is locked whether or not the WHERE lets the
//      update through), so a claim committed by a new owner while we waited is seen; fewer rows
//      written than sent means fenced_off and the caller rolls back;
//   0b. the check-only updates (no events, no trades: the partition must still be at
//      expected_seq with a fence not above the batch's) read their rows' seq and fence with
//      select_heads (one SELECT for all, no lock) and compare: a stale fence is fenced_off, a
//      moved seq sequence_conflict; then the batch's absent_keys are counted in events with one
//      SELECT (count_keys): any found is key_conflict. Nothing is written for either, and READ
//      COMMITTED reads the latest committed rows, so each check holds at the instant it ran,
//      inside the transaction; taking no lock keeps the rows' lock order that of step 1 alone;
//   1. lock_partitions, only when an update is its partition's first write (expected seq 0: the
//      row may be missing; a written partition keeps its row, so a steady-state batch skips this
//      statement): creates the missing partition rows (seq 0, empty position) and locks the
//      existing ones, one row after the other in batch order, which is ascending key order
//      (INSERT ... ON CONFLICT DO UPDATE ... WHERE false locks a conflicting row, FOR NO KEY
//      UPDATE, without writing it);
//   2. update_partitions: locks the existing rows one after the other in batch order (a
//      materialized SELECT whose LATERAL sub-select locks the partition row of each row of `u`
//      FOR NO KEY UPDATE, in the order of `u`; rows that step 1 locked are locked again without
//      waiting), then sets seq, fence and position WHERE seq = expected AND fence <= token. This is
//      where the fencing token is checked, inside the write itself: a holder whose lease ran out
//      while it was paused finds the row fenced, and a partition missing from RETURNING (a row
//      moved on, or missing although not a first write) means a conflict (one more SELECT tells
//      fenced_off from sequence_conflict, then the caller rolls back). The update reads the rows in
//      the statement's snapshot, which may predate a commit it waited for while locking; PostgreSQL
//      then re-checks the WHERE on the latest row version (READ COMMITTED), so the checks hold for
//      the row as locked;
//   3. insert_events: every event of the batch in one INSERT, ascending by (trade_id, version),
//      ON CONFLICT (trade_id, version) DO NOTHING. Fewer rows inserted than sent means an
//      idempotency key is taken (by a committed batch, by a concurrent one that committed while
//      we waited for it, or twice within this batch): the caller rolls back and reports
//      errc::key_conflict; the pipeline then looks the keys up with find_events and decides the
//      batch again, which gives every event of the batch its correct outcome. From 64 events,
//      COPY of the same rows in the same order instead: a taken key is then a unique violation
//      (23505) of the statement, which fails the transaction; the caller rolls back and reports
//      it as errc::key_conflict all the same (on_unique). Either way a row's key is checked when
//      the row goes in, in the rows' order, so the waits are those of the INSERT;
//   4. upsert_trades: the trade records, in (partition, trade_id) order; from 64 new trades in
//      the batch (PartitionUpdate::new_trades: trades the partitions did not hold), those go in
//      first with `COPY trades FROM STDIN`, and a stored one all the same (a unique violation)
//      is errc::sequence_conflict;
//   5. upsert_marks (only when the batch carries source marks): the source marks, in
//      (partition, source id) order.
//
// No deadlock by construction. A transaction waits only (o) in step 0, for a source row locked or
// being inserted by another transaction (a commit, or a claim_source, which is a transaction of one
// statement locking one source row and waiting for nothing else), (a) in the lock walk (step 1 when
// it runs, else the locking part of step 2), for a partition row locked or being inserted by
// another transaction, or (b) in step 3, for an events key inserted by another uncommitted
// transaction. After step 1, step 2 locks nothing new (step 1 holds every row it updates, in the
// same NO KEY EXCLUSIVE mode, so no lock is upgraded; the update itself takes that mode, so its own
// lock walk upgrades nothing either), and steps 4 and 5 write only trade and mark rows of
// partitions this transaction has locked, which no other writer can be touching. Rank a waiting
// transaction by (step, key it waits for): in (o) the holder locked that row earlier in its own
// ascending walk of step 0 (or is a claim, which waits for nothing), in (a) the holder locked that
// row earlier in its own ascending lock walk, so it is further along that walk or past it; in (b)
// the holder inserted that key in its own ascending walk of step 3, so it is further along step 3
// or past it; either way its rank is strictly higher (or it does not wait at all). Ranks strictly
// increase along every wait-for edge, so no cycle can form. (No foreign-key check takes further
// locks: the PostgreSQL schema declares none, see sql_schema.cpp.) A claim (claim_partitions: one
// upsert of every partition row in ascending key order, then reads) is a transaction that waits
// only as in (a) and for nothing after it: it ranks like a commit in its lock walk. The checks of
// step 0b take no locks and wait for nothing.

#include "sql_dialect.hpp"
#include "sql_values.hpp"

#include <libpq-fe.h>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace tradecapture::detail::sql {
namespace {

// Every lookup of rows by the batch's keys is a LATERAL sub-select per row of `u` (OFFSET 0
// keeps the planner from folding it into a join), so its plan is an index probe per key whatever
// the table statistics say. With a plain join, PostgreSQL's cached generic plan of a prepared
// statement, made while a table was small and never analysed (autovacuum looks once a minute),
// was a hash join over a sequential scan of the whole table: every batch's key lookup read every
// stored event (seen in auto_explain: 20,848 rows scanned to find 16 keys; BENCHMARKS.md, issue
// #12, session 8).
// Every value is a bound parameter; with the arrays, a whole list of values is one. Parameter
// names are unique within a statement (SOCI's PostgreSQL backend numbers them by occurrence);
// every parameter is cast in SQL, so the server knows its type. Decimals are NUMERIC and read
// back as text. `{rows}` stands for the row source `u` (RowsStatement).

constexpr const char* lock_partitions_sql =
    "INSERT INTO partitions AS p (account, book, security, seq, fence, net_quantity, "
    "bought_quantity, sold_quantity, bought_notional, sold_notional, live_trades) "
    "SELECT u.account, u.book, u.security, 0, 0, 0, 0, 0, 0, 0, 0 "
    "FROM {rows} ORDER BY u.ord "
    "ON CONFLICT (account, book, security) DO UPDATE SET fence = p.fence WHERE false";

// A claim: every partition in one statement, rows created (seq 0, fence 1) or their fence
// incremented, in the order given, which is ascending key order (the same row order as
// lock_partitions: no deadlock); the caller then reads the states with select_partitions.
constexpr const char* claim_partitions_sql =
    "WITH claimed AS ("
    "INSERT INTO partitions AS p (account, book, security, seq, fence, net_quantity, "
    "bought_quantity, sold_quantity, bought_notional, sold_notional, live_trades) "
    "SELECT u.account, u.book, u.security, 0, 1, 0, 0, 0, 0, 0, 0 "
    "FROM unnest(:account::text[], :book::text[], :security::text[]) WITH ORDINALITY "
    "AS u(account, book, security, ord) ORDER BY u.ord "
    "ON CONFLICT (account, book, security) DO UPDATE SET fence = p.fence + 1 "
    "RETURNING p.fence) "
    "SELECT count(*) FROM claimed";

// The batch's absent keys that are stored after all (any is a key conflict).
constexpr const char* count_keys_sql =
    "SELECT count(*) FROM unnest(:trade_id::text[], :version::bigint[]) AS u(trade_id, version) "
    "JOIN LATERAL (SELECT 1 FROM events e WHERE e.trade_id = u.trade_id "
    "AND e.version = u.version OFFSET 0) e ON true";

// Locks the existing rows one after the other in the order given, which is ascending key order
// (the locking sub-select runs once per row of `u`, in its order: the function scan of the
// arrays, or the VALUES scan, is the outer side of the nested loop, as a LATERAL reference
// requires), then updates those still at the expected seq with a fence not above the token.
// MATERIALIZED: the locking query runs as written, never folded into the update's join.
constexpr const char* update_partitions_sql =
    "WITH locked AS MATERIALIZED ("
    "SELECT p.partition_id, u.ord, u.expected_seq, u.seq, u.fence, u.net_quantity, "
    "u.bought_quantity, u.sold_quantity, u.bought_notional, u.sold_notional, u.live_trades "
    "FROM {rows} "
    "JOIN LATERAL (SELECT p.partition_id FROM partitions p WHERE p.account = u.account "
    "AND p.book = u.book AND p.security = u.security FOR NO KEY UPDATE) p ON true "
    "ORDER BY u.ord) "
    "UPDATE partitions AS p SET seq = l.seq, fence = l.fence, net_quantity = l.net_quantity, "
    "bought_quantity = l.bought_quantity, sold_quantity = l.sold_quantity, "
    "bought_notional = l.bought_notional, sold_notional = l.sold_notional, "
    "live_trades = l.live_trades "
    "FROM locked l WHERE p.partition_id = l.partition_id "
    "AND p.seq = l.expected_seq AND p.fence <= l.fence "
    "RETURNING l.ord, p.partition_id";

constexpr const char* select_heads_sql =
    "SELECT u.ord, p.seq, p.fence "
    "FROM unnest(:account::text[], :book::text[], :security::text[]) WITH ORDINALITY "
    "AS u(account, book, security, ord) "
    "JOIN LATERAL (SELECT p.seq, p.fence FROM partitions p WHERE p.account = u.account "
    "AND p.book = u.book AND p.security = u.security OFFSET 0) p ON true";

constexpr const char* insert_events_sql =
    "WITH inserted AS ("
    "INSERT INTO events (partition_id, seq, trade_id, version, type, side, quantity, price, "
    "fence) "
    "SELECT u.partition_id, u.seq, u.trade_id, u.version, u.type, u.side, u.quantity, u.price, "
    "u.fence "
    "FROM {rows} "
    "ORDER BY u.ord "
    "ON CONFLICT (trade_id, version) DO NOTHING RETURNING 1) "
    "SELECT count(*) FROM inserted";

/// The events of a big batch (copy_min_rows or more), in the same row order as the INSERT.
constexpr const char* copy_events_sql =
    "COPY events (partition_id, seq, trade_id, version, type, side, quantity, price, fence) "
    "FROM STDIN";
/// From this many events a batch's events go in with COPY instead of insert_events_sql, and from
/// this many new trades (PartitionUpdate::new_trades) those trades with copy_trades_sql.
constexpr std::size_t copy_min_rows = 64;

/// The new trades of a big batch (see step 4 below).
constexpr const char* copy_trades_sql =
    "COPY trades (partition_id, trade_id, version, side, quantity, price, cancelled) FROM STDIN";

constexpr const char* upsert_trades_sql =
    "INSERT INTO trades (partition_id, trade_id, version, side, quantity, price, cancelled) "
    "SELECT u.partition_id, u.trade_id, u.version, u.side, u.quantity, u.price, u.cancelled "
    "FROM {rows} "
    "ORDER BY u.ord "
    "ON CONFLICT (partition_id, trade_id) DO UPDATE SET version = excluded.version, "
    "side = excluded.side, quantity = excluded.quantity, price = excluded.price, "
    "cancelled = excluded.cancelled";

constexpr const char* upsert_marks_sql =
    "INSERT INTO source_marks (partition_id, source_id, source_position) "
    "SELECT u.partition_id, u.source_id, u.source_position "
    "FROM unnest(:partition_id::bigint[], :source_id::text[], :source_position::bigint[]) "
    "WITH ORDINALITY AS u(partition_id, source_id, source_position, ord) "
    "ORDER BY u.ord "
    "ON CONFLICT (partition_id, source_id) DO UPDATE SET "
    "source_position = excluded.source_position";

constexpr const char* upsert_sources_sql =
    "WITH written AS ("
    "INSERT INTO source_offsets AS s (consumer, topic, partition, next_offset, epoch) "
    "SELECT u.consumer, u.topic, u.partition, u.next_offset, u.epoch "
    "FROM unnest(:consumer::text[], :topic::text[], :partition::bigint[], "
    ":next_offset::bigint[], :epoch::bigint[]) WITH ORDINALITY "
    "AS u(consumer, topic, partition, next_offset, epoch, ord) "
    "ORDER BY u.ord "
    "ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, "
    "epoch = excluded.epoch WHERE s.epoch <= excluded.epoch RETURNING 1) "
    "SELECT count(*) FROM written";

constexpr const char* select_partitions_sql =
    "SELECT u.ord, p.partition_id, p.seq, p.fence, p.net_quantity::text, "
    "p.bought_quantity::text, p.sold_quantity::text, p.bought_notional::text, "
    "p.sold_notional::text, p.live_trades "
    "FROM unnest(:account::text[], :book::text[], :security::text[]) WITH ORDINALITY "
    "AS u(account, book, security, ord) "
    "JOIN LATERAL (SELECT * FROM partitions p WHERE p.account = u.account "
    "AND p.book = u.book AND p.security = u.security OFFSET 0) p ON true";

constexpr const char* select_trades_sql =
    "SELECT u.ord, t.trade_id, t.version, t.side, t.quantity::text, t.price::text, t.cancelled "
    "FROM unnest(:partition_id::bigint[], :ord::bigint[]) AS u(partition_id, ord) "
    "JOIN LATERAL (SELECT * FROM trades t WHERE t.partition_id = u.partition_id OFFSET 0) t "
    "ON true";

constexpr const char* select_marks_sql =
    "SELECT u.ord, m.source_id, m.source_position "
    "FROM unnest(:partition_id::bigint[], :ord::bigint[]) AS u(partition_id, ord) "
    "JOIN LATERAL (SELECT * FROM source_marks m WHERE m.partition_id = u.partition_id "
    "OFFSET 0) m ON true";

constexpr const char* find_events_sql =
    "SELECT u.ord, p.account, p.book, p.security, e.seq, e.type, e.side, e.quantity::text, "
    "e.price::text, coalesce(e.fence, 0) "
    "FROM {rows} "
    "JOIN LATERAL (SELECT * FROM events e WHERE e.trade_id = u.trade_id "
    "AND e.version = u.version OFFSET 0) e ON true "
    "JOIN LATERAL (SELECT * FROM partitions p WHERE p.partition_id = e.partition_id "
    "OFFSET 0) p ON true";

/// Rows copied out of a result per fetch (the result itself arrives whole).
constexpr std::size_t fetch_chunk = 1024;

/// Up to this many rows, a statement with a row source (RowsStatement) binds one parameter per
/// value instead of one array per column. See RowsStatement.
constexpr std::size_t small_rows = 8;

/// The values of one column, for the two forms of RowsStatement: as the text of a one-dimensional
/// PostgreSQL array, bound as one parameter, and, for the first `small_rows` values, one string
/// (and indicator) per value, each bound as a parameter of its own. Text elements of the array
/// are always double-quoted with '"' and '\' escaped, so no content (commas, braces, spaces, the
/// word NULL) can change the array's shape; numbers are written bare; NULL is the unquoted keyword.
class ArrayParam {
 public:
  /// Starts an empty array.
  void reset() {
    text_.assign(1, '{');
    size_ = 0;
  }
  void add_text(std::string_view value) {
    separate();
    text_ += '"';
    for (const char ch : value) {
      // libpq passes parameters as C strings: a NUL would silently cut the value short.
      if (ch == '\0') throw std::invalid_argument("a text value contains a NUL byte");
      if (ch == '"' || ch == '\\') text_ += '\\';
      text_ += ch;
    }
    text_ += '"';
    keep(value, soci::i_ok);
  }
  void add_integer(long long value) {
    separate();
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
    text_.append(digits, end);
    keep(std::string_view(digits, std::size_t(end - digits)), soci::i_ok);
  }
  /// Canonical decimal text: digits, an optional '-' and '.', nothing to quote.
  void add_decimal(const Decimal& value) {
    separate();
    const std::size_t begin = text_.size();
    text_ += value.to_string();
    keep(std::string_view(text_).substr(begin), soci::i_ok);
  }
  void add_null() {
    separate();
    text_ += "NULL";
    keep({}, soci::i_null);
  }
  /// Ends the array; the parameter is ready to execute with.
  void finish() { text_ += '}'; }
  /// The bound string (use() keeps its address).
  std::string& bound() { return text_; }
  /// The number of values added since reset().
  std::size_t size() const { return size_; }
  /// Value `r` (< small_rows) as a parameter of its own, and its indicator (use() keeps their
  /// addresses).
  std::string& value(std::size_t r) { return values_[r]; }
  soci::indicator& indicator(std::size_t r) { return indicators_[r]; }

 private:
  void separate() {
    if (text_.size() > 1) text_ += ',';
  }
  void keep(std::string_view value, soci::indicator ind) {
    if (size_ < small_rows) {
      values_[size_].assign(value);
      indicators_[size_] = ind;
    }
    ++size_;
  }
  std::string text_ = "{}";
  std::size_t size_ = 0;
  std::array<std::string, small_rows> values_;
  std::array<soci::indicator, small_rows> indicators_{};
};

/// A column of a RowsStatement's rows: its name (the parameter's and the column's), its SQL type
/// and its values.
struct Column {
  std::string_view name;
  std::string_view type;
  ArrayParam* values;
};

/// A statement over a batch's rows, given column by column. Its SQL names the rows `{rows}`,
/// which becomes one of two row sources, each yielding the rows in the order given, numbered
/// from 1 in `u.ord`:
/// - `unnest(:name::type[], ...) WITH ORDINALITY AS u(name, ..., ord)`: an array parameter per
///   column, one prepared statement for every number of rows;
/// - `(VALUES (:name_1::type, ..., 1::bigint), (:name_2::type, ..., 2::bigint), ...)
///   AS u(name, ..., ord)`: a
///   parameter per value, one prepared statement per number of rows up to `small_rows`, each
///   prepared on its first use (one round trip) and kept.
/// Both read the same rows in the same order, so the statement does the same work in the same
/// row order either way. The second is cheaper for a few rows: with the arrays, PostgreSQL plans
/// some statements again at every execution for fewer than about 8 rows (their generic plan
/// assumes 10 array elements, so the custom plans look cheaper), while a VALUES list of n rows
/// gets a generic plan for exactly n rows, made once (see "Small batches" at the top).
class RowsStatement {
 public:
  /// `outputs` binds the statement's into-elements (the same for every form).
  RowsStatement(soci::session& s, std::string_view sql, std::vector<Column> columns,
                std::function<void(soci::statement&)> outputs)
      : session_(s), sql_(sql), columns_(std::move(columns)), outputs_(std::move(outputs)) {
    std::string source = "unnest(";
    for (const Column& c : columns_) {
      source += (&c == &columns_.front() ? ":" : ", :");
      source.append(c.name).append("::").append(c.type).append("[]");
    }
    source += ") WITH ORDINALITY AS u(" + names() + ")";
    array_ = prepare(source, [&](soci::statement& st) {
      for (const Column& c : columns_) {
        st.exchange(soci::use(c.values->bound(), std::string(c.name)));
      }
    });
  }

  /// The statement for the rows the columns hold now (the arrays finished): executes as given.
  soci::statement& get() {
    const std::size_t rows = columns_.front().values->size();
    for (const Column& c : columns_) {
      if (c.values->size() != rows) throw std::logic_error("columns of different lengths");
    }
    if (rows == 0 || rows > small_rows) return *array_;
    std::unique_ptr<soci::statement>& st = small_[rows - 1];
    if (!st) {
      std::string source = "(VALUES ";
      for (std::size_t r = 1; r <= rows; ++r) {
        source += (r == 1 ? "(" : ", (");
        for (const Column& c : columns_) {
          source.append(":").append(c.name).append("_").append(std::to_string(r)).append("::");
          source.append(c.type).append(", ");
        }
        source += std::to_string(r) + "::bigint)";
      }
      source += ") AS u(" + names() + ")";
      st = prepare(source, [&](soci::statement& s) {
        for (std::size_t r = 0; r < rows; ++r) {
          for (const Column& c : columns_) {
            s.exchange(soci::use(c.values->value(r), c.values->indicator(r),
                                 std::string(c.name) + "_" + std::to_string(r + 1)));
          }
        }
      });
    }
    return *st;
  }

 private:
  /// "name, ..., ord": the columns of `u`.
  std::string names() const {
    std::string out;
    for (const Column& c : columns_) out.append(c.name).append(", ");
    return out + "ord";
  }

  template <class Inputs>
  std::unique_ptr<soci::statement> prepare(const std::string& source, Inputs&& inputs) {
    std::string sql = sql_;
    sql.replace(sql.find("{rows}"), 6, source);
    auto st = std::make_unique<soci::statement>(session_);
    inputs(*st);
    outputs_(*st);
    st->alloc();
    st->prepare(sql);
    st->define_and_bind();
    return st;
  }

  soci::session& session_;
  std::string sql_;
  std::vector<Column> columns_;
  std::function<void(soci::statement&)> outputs_;
  std::unique_ptr<soci::statement> array_;
  std::array<std::unique_ptr<soci::statement>, small_rows> small_;
};

/// Checks an ordinal returned by `WITH ORDINALITY` against the number of elements sent.
std::size_t index_of(long long ord, std::size_t size) {
  if (ord < 1 || static_cast<unsigned long long>(ord) > size) {
    throw CorruptData("row ordinal " + std::to_string(ord) + " outside 1.." + std::to_string(size));
  }
  return static_cast<std::size_t>(ord - 1);
}

/// Rows for `COPY ... FROM STDIN` in PostgreSQL's text format: fields separated by a tab, rows
/// ended by a newline, NULL as \N, and in text values a backslash, and the control characters
/// that the format gives a meaning (tab, newline, carriage return, backspace, form feed,
/// vertical tab), escaped with a backslash. Validated events hold no control character, but the
/// store does not rely on that. A NUL byte cannot be sent (as with ArrayParam).
class CopyRows {
 public:
  void reset() { text_.clear(); }
  void add_text(std::string_view value) {
    // The characters to escape, and the letter each one is escaped with.
    constexpr std::string_view special("\\\t\n\r\b\f\v", 7), letter("\\tnrbfv", 7);
    for (const char ch : value) {
      if (ch == '\0') throw std::invalid_argument("a text value contains a NUL byte");
      if (const std::size_t at = special.find(ch); at != std::string_view::npos) {
        text_ += '\\';
        text_ += letter[at];
      } else {
        text_ += ch;
      }
    }
    text_ += '\t';
  }
  void add_integer(long long value) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
    text_.append(digits, end);
    text_ += '\t';
  }
  void add_decimal(const Decimal& value) {
    text_ += value.to_string();  // digits, '-' and '.': nothing to escape
    text_ += '\t';
  }
  void add_null() { text_ += "\\N\t"; }
  /// Ends the row (its last field's separator becomes the row's end).
  void end_row() { text_.back() = '\n'; }
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

/// Reads what is left of the current command's results on `conn`; a COPY still taking data is
/// abandoned first. Bounded: a connection in another state (broken, say) is left as it is, and
/// the store discards a connection whose statement failed that way.
void finish_command(PGconn* conn) {
  for (int i = 0; i < 8; ++i) {
    PGresult* r = PQgetResult(conn);
    if (r == nullptr) return;
    const ExecStatusType status = PQresultStatus(r);
    PQclear(r);
    if (status == PGRES_COPY_IN) {
      if (PQputCopyEnd(conn, "tradecapture: COPY abandoned") != 1) return;
    } else if (status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
      return;
    }
  }
}

/// Runs `copy_sql` (a `COPY ... FROM STDIN`) on the session's connection with `rows` as its data
/// and returns the number of rows the server reports copied. A failure throws what SOCI throws
/// for a failed statement (soci::postgresql_soci_error with the SQLSTATE, blank when libpq gave
/// none, e.g. for a lost connection), so the store classifies it as any other statement's.
std::size_t copy_in(soci::session& session, const char* copy_sql, const CopyRows& rows) {
  auto* backend = static_cast<soci::postgresql_session_backend*>(session.get_backend());
  if (backend == nullptr || backend->conn_ == nullptr) {
    throw soci::postgresql_soci_error("COPY: no open connection", "08003");
  }
  PGconn* conn = backend->conn_;
  const auto fail = [conn](PGresult* r, std::string_view what) {
    std::string message(what);
    message += ": ";
    message += r != nullptr && *PQresultErrorMessage(r) != '\0' ? PQresultErrorMessage(r)
                                                                : PQerrorMessage(conn);
    const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    char sqlstate[6] = "     ";  // blank, as SOCI gives when libpq has none
    if (state != nullptr && std::strlen(state) == 5) std::memcpy(sqlstate, state, 5);
    if (r != nullptr) PQclear(r);
    finish_command(conn);
    throw soci::postgresql_soci_error(message, sqlstate);
  };
  PGresult* r = PQexec(conn, copy_sql);
  if (r == nullptr || PQresultStatus(r) != PGRES_COPY_IN) fail(r, "COPY");
  PQclear(r);
  const std::string& data = rows.text();
  constexpr std::size_t chunk = std::size_t{1} << 20;  // PQputCopyData takes an int length
  for (std::size_t at = 0; at < data.size(); at += chunk) {
    const std::size_t n = std::min(chunk, data.size() - at);
    if (PQputCopyData(conn, data.data() + at, static_cast<int>(n)) != 1) fail(nullptr, "COPY data");
  }
  if (PQputCopyEnd(conn, nullptr) != 1) fail(nullptr, "COPY end");
  r = PQgetResult(conn);
  if (r == nullptr || PQresultStatus(r) != PGRES_COMMAND_OK) fail(r, "COPY");
  const std::size_t copied = std::strtoull(PQcmdTuples(r), nullptr, 10);
  PQclear(r);
  finish_command(conn);
  return copied;
}

class PostgresqlStatements final : public BatchStatements {
 public:
  explicit PostgresqlStatements(soci::session& s)
      : session_(s),
        lock_partitions_(s, lock_partitions_sql,
                         {{"account", "text", &account_},
                          {"book", "text", &book_},
                          {"security", "text", &security_}},
                         [](soci::statement&) {}),
        update_partitions_(s, update_partitions_sql,
                           {{"account", "text", &account_},
                            {"book", "text", &book_},
                            {"security", "text", &security_},
                            {"expected_seq", "bigint", &expected_seq_},
                            {"seq", "bigint", &seq_},
                            {"fence", "bigint", &fence_},
                            {"net_quantity", "numeric", &net_quantity_},
                            {"bought_quantity", "numeric", &bought_quantity_},
                            {"sold_quantity", "numeric", &sold_quantity_},
                            {"bought_notional", "numeric", &bought_notional_},
                            {"sold_notional", "numeric", &sold_notional_},
                            {"live_trades", "bigint", &live_trades_}},
                           [this](soci::statement& st) {
                             st.exchange(soci::into(ord_out_));
                             st.exchange(soci::into(id_out_));
                           }),
        select_heads_(s),
        claim_partitions_(s),
        count_keys_(s),
        insert_events_(s, insert_events_sql,
                       {{"partition_id", "bigint", &partition_id_},
                        {"seq", "bigint", &seq_},
                        {"trade_id", "text", &trade_id_},
                        {"version", "bigint", &version_},
                        {"type", "text", &type_},
                        {"side", "text", &side_},
                        {"quantity", "numeric", &quantity_},
                        {"price", "numeric", &price_},
                        {"fence", "bigint", &fence_}},
                       [this](soci::statement& st) { st.exchange(soci::into(inserted_)); }),
        upsert_trades_(s, upsert_trades_sql,
                       {{"partition_id", "bigint", &partition_id_},
                        {"trade_id", "text", &trade_id_},
                        {"version", "bigint", &version_},
                        {"side", "text", &side_},
                        {"quantity", "numeric", &quantity_},
                        {"price", "numeric", &price_},
                        {"cancelled", "bigint", &cancelled_}},
                       [](soci::statement&) {}),
        upsert_marks_(s),
        upsert_sources_(s),
        select_partitions_(s),
        select_trades_(s),
        select_marks_(s),
        find_events_(s, find_events_sql,
                     {{"trade_id", "text", &trade_id_}, {"version", "bigint", &version_}},
                     [this](soci::statement& st) {
                       st.exchange(soci::into(ord_out_));
                       st.exchange(soci::into(account_out_));
                       st.exchange(soci::into(book_out_));
                       st.exchange(soci::into(security_out_));
                       st.exchange(soci::into(seq_out_));
                       st.exchange(soci::into(type_out_));
                       st.exchange(soci::into(side_out_, side_ind_));
                       st.exchange(soci::into(quantity_out_, quantity_ind_));
                       st.exchange(soci::into(price_out_, price_ind_));
                       st.exchange(soci::into(fence_out_));
                     }) {
    using soci::into;
    using soci::use;
    select_heads_ = (s.prepare << select_heads_sql, use(account_.bound(), "account"),
                     use(book_.bound(), "book"), use(security_.bound(), "security"), into(ord_out_),
                     into(seq_out_), into(fence_out_));
    claim_partitions_ =
        (s.prepare << claim_partitions_sql, use(account_.bound(), "account"),
         use(book_.bound(), "book"), use(security_.bound(), "security"), into(claimed_));
    count_keys_ = (s.prepare << count_keys_sql, use(trade_id_.bound(), "trade_id"),
                   use(version_.bound(), "version"), into(found_));
    upsert_marks_ = (s.prepare << upsert_marks_sql, use(partition_id_.bound(), "partition_id"),
                     use(trade_id_.bound(), "source_id"), use(version_.bound(), "source_position"));
    upsert_sources_ =
        (s.prepare << upsert_sources_sql, use(consumer_.bound(), "consumer"),
         use(topic_.bound(), "topic"), use(source_partition_.bound(), "partition"),
         use(next_offset_.bound(), "next_offset"), use(epoch_.bound(), "epoch"), into(written_));
    select_partitions_ =
        (s.prepare << select_partitions_sql, use(account_.bound(), "account"),
         use(book_.bound(), "book"), use(security_.bound(), "security"), into(ord_out_),
         into(id_out_), into(seq_out_), into(fence_out_), into(net_quantity_out_),
         into(bought_quantity_out_), into(sold_quantity_out_), into(bought_notional_out_),
         into(sold_notional_out_), into(live_trades_out_));
    select_trades_ =
        (s.prepare << select_trades_sql, use(partition_id_.bound(), "partition_id"),
         use(ords_.bound(), "ord"), into(ord_out_), into(trade_id_out_), into(version_out_),
         into(side_out_), into(quantity_out_), into(price_out_), into(cancelled_out_));
    select_marks_ = (s.prepare << select_marks_sql, use(partition_id_.bound(), "partition_id"),
                     use(ords_.bound(), "ord"), into(ord_out_), into(trade_id_out_),
                     into(version_out_));
  }

  void load_partitions(std::span<const PartitionKey> keys,
                       std::vector<PartitionState>& out) override {
    set_keys(keys.begin(), keys.end(),
             [](const PartitionKey& k) -> const PartitionKey& { return k; });
    // Ids of the partitions found, and which element of `out` each one fills.
    partition_id_.reset();
    ords_.reset();
    bool any = false;
    for_each_row(select_partitions_, [&](std::size_t r) {
      const std::size_t i = index_of(ord_out_[r], keys.size());
      PartitionState& s = out[i];
      s.seq = static_cast<std::uint64_t>(seq_out_[r]);
      s.fence = static_cast<std::uint64_t>(fence_out_[r]);
      s.position.net_quantity = parse_decimal(net_quantity_out_[r]);
      s.position.bought_quantity = parse_decimal(bought_quantity_out_[r]);
      s.position.sold_quantity = parse_decimal(sold_quantity_out_[r]);
      s.position.bought_notional = parse_decimal(bought_notional_out_[r]);
      s.position.sold_notional = parse_decimal(sold_notional_out_[r]);
      s.position.live_trades = live_trades_out_[r];
      partition_id_.add_integer(id_out_[r]);
      ords_.add_integer(ord_out_[r]);
      any = true;
    });
    if (!any) return;  // none written yet: every state stays empty
    partition_id_.finish();
    ords_.finish();
    for_each_row(select_trades_, [&](std::size_t r) {
      TradeRecord t;
      t.version = version_out_[r];
      t.side = parse_side(side_out_[r]);
      t.quantity = parse_decimal(quantity_out_[r]);
      t.price = parse_decimal(price_out_[r]);
      t.cancelled = cancelled_out_[r] != 0;
      out[index_of(ord_out_[r], keys.size())].trades.insert_or_assign(trade_id_out_[r], t);
    });
    for_each_row(select_marks_, [&](std::size_t r) {
      out[index_of(ord_out_[r], keys.size())].source_marks.insert_or_assign(trade_id_out_[r],
                                                                            version_out_[r]);
    });
  }

  void claim_partitions(std::span<const PartitionKey> keys,
                        std::vector<PartitionState>& out) override {
    set_keys(keys.begin(), keys.end(),
             [](const PartitionKey& k) -> const PartitionKey& { return k; });
    claimed_ = 0;
    claim_partitions_.execute(true);
    if (static_cast<std::size_t>(claimed_) != keys.size()) {
      throw CorruptData("claimed " + std::to_string(claimed_) + " partition rows of " +
                        std::to_string(keys.size()));
    }
    load_partitions(keys, out);  // same transaction: sees the new fences
  }

  void find_events(std::span<const IdempotencyKey> keys,
                   std::vector<std::optional<StoredEvent>>& out) override {
    trade_id_.reset();
    version_.reset();
    for (const auto& k : keys) {
      trade_id_.add_text(k.trade_id);
      version_.add_integer(k.version);
    }
    trade_id_.finish();
    version_.finish();
    for_each_row(find_events_.get(), [&](std::size_t r) {
      const std::size_t i = index_of(ord_out_[r], keys.size());
      StoredEvent& e = out[i].emplace();
      e.seq = static_cast<std::uint64_t>(seq_out_[r]);
      e.fence = static_cast<std::uint64_t>(fence_out_[r]);
      e.event.trade_id = keys[i].trade_id;
      e.event.version = keys[i].version;
      e.event.partition = PartitionKey{account_out_[r], book_out_[r], security_out_[r]};
      fill_event(e.event, type_out_[r], side_out_[r], side_ind_[r], quantity_out_[r],
                 quantity_ind_[r], price_out_[r], price_ind_[r]);
    });
  }

  bool find_events_in_one_statement() const override { return true; }

  std::optional<errc> write(const CommitBatch& batch, errc& on_unique) override {
    // 0. The source offsets, each conditional on its stored epoch, in batch order.
    if (!batch.sources.empty()) {
      for (ArrayParam* a : {&consumer_, &topic_, &source_partition_, &next_offset_, &epoch_}) {
        a->reset();
      }
      for (const SourceOffset& src : batch.sources) {
        consumer_.add_text(src.consumer);
        topic_.add_text(src.topic);
        source_partition_.add_integer(src.partition);
        next_offset_.add_integer(src.next_offset);
        epoch_.add_integer(static_cast<long long>(src.epoch));
      }
      for (ArrayParam* a : {&consumer_, &topic_, &source_partition_, &next_offset_, &epoch_}) {
        a->finish();
      }
      written_ = 0;
      upsert_sources_.execute(true);
      if (static_cast<std::size_t>(written_) != batch.sources.size()) return errc::fenced_off;
    }

    // The check-only updates, then the absent keys: one SELECT each, reading the latest
    // committed rows (no lock taken, so the ascending row order of the writes below stays the
    // only order in which this transaction waits).
    writes_.clear();
    checks_.clear();
    for (const auto& u : batch.partitions) (check_only(u) ? checks_ : writes_).push_back(&u);
    if (!checks_.empty()) {
      if (auto refused = check(checks_)) return refused;
    }
    if (!batch.absent_keys.empty()) {
      trade_id_.reset();
      version_.reset();
      for (const auto& k : batch.absent_keys) {
        trade_id_.add_text(k.trade_id);
        version_.add_integer(k.version);
      }
      trade_id_.finish();
      version_.finish();
      found_ = 0;
      count_keys_.execute(true);
      if (found_ != 0) return errc::key_conflict;
    }

    const auto& updates = writes_;
    const std::size_t n = updates.size();
    if (n == 0) return std::nullopt;  // offsets and checks only

    // 1. Create the missing partition rows and lock every row, in batch order (ascending keys).
    // Only a first write (expected seq 0) can meet a missing row: a written partition keeps its
    // row. Without one, step 2 locks the rows itself, in the same order.
    set_keys(updates.begin(), updates.end(),
             [](const PartitionUpdate* u) -> const PartitionKey& { return u->partition; });
    if (std::any_of(updates.begin(), updates.end(),
                    [](const PartitionUpdate* u) { return u->expected_seq == 0; })) {
      lock_partitions_.get().execute(true);
    }

    // 2. The conditional update: seq and fencing token checked in the write itself.
    for (ArrayParam* a : {&expected_seq_, &seq_, &fence_, &net_quantity_, &bought_quantity_,
                          &sold_quantity_, &bought_notional_, &sold_notional_, &live_trades_}) {
      a->reset();
    }
    for (const PartitionUpdate* u : updates) {
      expected_seq_.add_integer(static_cast<long long>(u->expected_seq));
      seq_.add_integer(static_cast<long long>(u->new_seq));
      fence_.add_integer(static_cast<long long>(u->fence));
      net_quantity_.add_decimal(u->position.net_quantity);
      bought_quantity_.add_decimal(u->position.bought_quantity);
      sold_quantity_.add_decimal(u->position.sold_quantity);
      bought_notional_.add_decimal(u->position.bought_notional);
      sold_notional_.add_decimal(u->position.sold_notional);
      live_trades_.add_integer(u->position.live_trades);
    }
    for (ArrayParam* a : {&expected_seq_, &seq_, &fence_, &net_quantity_, &bought_quantity_,
                          &sold_quantity_, &bought_notional_, &sold_notional_, &live_trades_}) {
      a->finish();
    }
    ids_.assign(n, 0);
    std::size_t updated = 0;
    for_each_row(update_partitions_.get(), [&](std::size_t r) {
      ids_[index_of(ord_out_[r], n)] = id_out_[r];
      ++updated;
    });
    if (updated != n) return refusal(updates);

    // 3. Every event of the batch in one statement, ascending by (trade_id, version).
    events_.clear();
    for (std::size_t p = 0; p < n; ++p) {
      for (const StoredEvent& e : updates[p]->events) {
        events_.push_back({&e, ids_[p], updates[p]->fence});
      }
    }
    if (!events_.empty()) {
      std::sort(events_.begin(), events_.end(), [](const EventRow& a, const EventRow& b) {
        return std::tie(a.event->event.trade_id, a.event->event.version) <
               std::tie(b.event->event.trade_id, b.event->event.version);
      });
      if (events_.size() >= copy_min_rows) {
        // On a unique violation the statement fails (COPY has no ON CONFLICT); the caller rolls
        // back and reports it as with the INSERT below (on_unique).
        copy_rows_.reset();
        for (const EventRow& row : events_) {
          event_columns(row, copy_rows_, copy_rows_, copy_rows_, copy_rows_, copy_rows_,
                        copy_rows_, copy_rows_, copy_rows_, copy_rows_);
          copy_rows_.end_row();
        }
        on_unique = errc::key_conflict;
        const std::size_t copied = copy_in(session_, copy_events_sql, copy_rows_);
        on_unique = errc::store_error;
        if (copied != events_.size()) {
          throw CorruptData("COPY events: " + std::to_string(copied) + " rows copied of " +
                            std::to_string(events_.size()));
        }
      } else {
        for (ArrayParam* a : {&partition_id_, &seq_, &trade_id_, &version_, &type_, &side_,
                              &quantity_, &price_, &fence_}) {
          a->reset();
        }
        for (const EventRow& row : events_) {
          event_columns(row, partition_id_, seq_, trade_id_, version_, type_, side_, quantity_,
                        price_, fence_);
        }
        for (ArrayParam* a : {&partition_id_, &seq_, &trade_id_, &version_, &type_, &side_,
                              &quantity_, &price_, &fence_}) {
          a->finish();
        }
        // ON CONFLICT DO NOTHING skips taken keys; a unique violation can still come from the
        // primary key (partition_id, seq), which the conditional update rules out.
        on_unique = errc::key_conflict;
        inserted_ = 0;
        insert_events_.get().execute(true);
        on_unique = errc::store_error;
        if (static_cast<std::size_t>(inserted_) != events_.size()) return errc::key_conflict;
      }
    }

    // 4. The trade records. From copy_min_rows new trades in the batch (the front of each
    // update's trades, PartitionUpdate::new_trades), those go in with COPY: the partition did
    // not hold them when the batch was decided on its state, and step 2 checked that the
    // partition has not moved since. A stored one all the same is a unique violation of the
    // primary key, reported as errc::sequence_conflict (on_unique): the writer's view is stale.
    // No wait: only the holder of a partition row's lock writes that partition's trades.
    std::size_t listed_new = 0;
    for (std::size_t p = 0; p < n; ++p)
      listed_new += std::min(updates[p]->new_trades, updates[p]->trades.size());
    const bool copy_new = listed_new >= copy_min_rows;
    if (copy_new) {
      copy_rows_.reset();
      for (std::size_t p = 0; p < n; ++p) {
        const auto& trades = updates[p]->trades;
        for (std::size_t i = 0; i < std::min(updates[p]->new_trades, trades.size()); ++i) {
          const auto& [trade_id, r] = trades[i];
          trade_columns(ids_[p], trade_id, r, copy_rows_, copy_rows_, copy_rows_, copy_rows_,
                        copy_rows_, copy_rows_, copy_rows_);
          copy_rows_.end_row();
        }
      }
      on_unique = errc::sequence_conflict;
      const std::size_t copied = copy_in(session_, copy_trades_sql, copy_rows_);
      on_unique = errc::store_error;
      if (copied != listed_new) {
        throw CorruptData("COPY trades: " + std::to_string(copied) + " rows copied of " +
                          std::to_string(listed_new));
      }
    }
    // The other trade records (all of them below copy_min_rows new ones) with one upsert, by
    // partition then trade_id; a trade listed twice keeps its last record (as the
    // row-at-a-time statements do, which upsert one row after the other).
    for (ArrayParam* a :
         {&partition_id_, &trade_id_, &version_, &side_, &quantity_, &price_, &cancelled_}) {
      a->reset();
    }
    bool any_trade = false;
    for (std::size_t p = 0; p < n; ++p) {
      trades_.clear();
      const auto& trades = updates[p]->trades;
      const std::size_t skip = copy_new ? std::min(updates[p]->new_trades, trades.size()) : 0;
      for (std::size_t i = skip; i < trades.size(); ++i) trades_.push_back(&trades[i]);
      std::stable_sort(trades_.begin(), trades_.end(),
                       [](const auto* a, const auto* b) { return a->first < b->first; });
      for (std::size_t i = 0; i < trades_.size(); ++i) {
        if (i + 1 < trades_.size() && trades_[i + 1]->first == trades_[i]->first) continue;
        const auto& [trade_id, r] = *trades_[i];
        trade_columns(ids_[p], trade_id, r, partition_id_, trade_id_, version_, side_, quantity_,
                      price_, cancelled_);
        any_trade = true;
      }
    }
    if (any_trade) {
      for (ArrayParam* a :
           {&partition_id_, &trade_id_, &version_, &side_, &quantity_, &price_, &cancelled_}) {
        a->finish();
      }
      upsert_trades_.get().execute(true);
    }

    // 5. The source marks, by partition then source id (ascending within each update).
    bool any_mark = false;
    for (ArrayParam* a : {&partition_id_, &trade_id_, &version_}) a->reset();
    for (std::size_t p = 0; p < n; ++p) {
      for (const SourceMark& m : updates[p]->marks) {
        partition_id_.add_integer(ids_[p]);
        trade_id_.add_text(m.source);
        version_.add_integer(m.position);
        any_mark = true;
      }
    }
    if (any_mark) {
      for (ArrayParam* a : {&partition_id_, &trade_id_, &version_}) a->finish();
      upsert_marks_.execute(true);
    }
    return std::nullopt;
  }

 private:
  struct EventRow {
    const StoredEvent* event;
    long long partition_id;
    std::uint64_t fence;  // the update's fence: StoredEvent::fence as stored
  };

  /// Adds the columns of an event row, in the table's column order, each to its own sink: an
  /// ArrayParam per column (the INSERT), or the one CopyRows for all (COPY).
  template <class Sink>
  static void event_columns(const EventRow& row, Sink& partition_id, Sink& seq, Sink& trade_id,
                            Sink& version, Sink& type, Sink& side, Sink& quantity, Sink& price,
                            Sink& fence) {
    const TradeEvent& e = row.event->event;
    partition_id.add_integer(row.partition_id);
    seq.add_integer(static_cast<long long>(row.event->seq));
    trade_id.add_text(e.trade_id);
    version.add_integer(e.version);
    type.add_text(to_string(e.type));
    if (e.type == TradeType::Cancel) {  // a CANCEL has no side, quantity or price
      side.add_null();
      quantity.add_null();
      price.add_null();
    } else {
      side.add_text(to_string(e.side));
      quantity.add_decimal(e.quantity);
      price.add_decimal(e.price);
    }
    fence.add_integer(static_cast<long long>(row.fence));
  }

  /// Adds the columns of a trade row, in the table's column order, each to its own sink (as
  /// event_columns).
  template <class Sink>
  static void trade_columns(long long partition_id, const std::string& trade_id,
                            const TradeRecord& r, Sink& partition_id_sink, Sink& trade_id_sink,
                            Sink& version, Sink& side, Sink& quantity, Sink& price,
                            Sink& cancelled) {
    partition_id_sink.add_integer(partition_id);
    trade_id_sink.add_text(trade_id);
    version.add_integer(r.version);
    side.add_text(to_string(r.side));
    quantity.add_decimal(r.quantity);
    price.add_decimal(r.price);
    cancelled.add_integer(r.cancelled ? 1 : 0);
  }

  /// Fills the key arrays (account_, book_, security_) from `[first, last)`.
  template <class It, class Key>
  void set_keys(It first, It last, Key key) {
    account_.reset();
    book_.reset();
    security_.reset();
    for (It it = first; it != last; ++it) {
      const PartitionKey& k = key(*it);
      account_.add_text(k.account);
      book_.add_text(k.book);
      security_.add_text(k.security);
    }
    account_.finish();
    book_.finish();
    security_.finish();
  }

  /// Executes `st` (its into-elements are the vectors below) and calls `row(r)` for every row,
  /// `r` indexing the vectors, chunk by chunk.
  template <class Row>
  void for_each_row(soci::statement& st, Row&& row) {
    resize_outputs(fetch_chunk);
    st.execute(false);
    while (st.fetch()) {
      for (std::size_t r = 0; r < ord_out_.size(); ++r) row(r);
      resize_outputs(fetch_chunk);
    }
  }

  /// Sizes every into-vector (SOCI fetches as many rows as the vectors hold).
  void resize_outputs(std::size_t size) {
    ord_out_.resize(size);
    id_out_.resize(size);
    seq_out_.resize(size);
    fence_out_.resize(size);
    version_out_.resize(size);
    live_trades_out_.resize(size);
    cancelled_out_.resize(size);
    for (auto* v :
         {&net_quantity_out_, &bought_quantity_out_, &sold_quantity_out_, &bought_notional_out_,
          &sold_notional_out_, &account_out_, &book_out_, &security_out_, &trade_id_out_,
          &type_out_, &side_out_, &quantity_out_, &price_out_}) {
      v->resize(size);
    }
    side_ind_.resize(size);
    quantity_ind_.resize(size);
    price_ind_.resize(size);
  }

  /// After the conditional update missed partitions: which condition failed? The rows are
  /// locked by this transaction, so what it reads now is what the update saw. A stale token
  /// wins over a wrong sequence number: the writer has lost the partition.
  errc refusal(const std::vector<const PartitionUpdate*>& updates) {
    bool fenced = false;
    for_each_row(select_heads_, [&](std::size_t r) {
      const std::size_t i = index_of(ord_out_[r], updates.size());
      if (ids_[i] == 0 && static_cast<unsigned long long>(fence_out_[r]) > updates[i]->fence) {
        fenced = true;
      }
    });
    return fenced ? errc::fenced_off : errc::sequence_conflict;
  }

  /// Checks the check-only updates against the stored seq and fence (a partition without a
  /// row has seq 0 and fence 0). A stale token wins over a wrong sequence number.
  std::optional<errc> check(const std::vector<const PartitionUpdate*>& checks) {
    set_keys(checks.begin(), checks.end(),
             [](const PartitionUpdate* u) -> const PartitionKey& { return u->partition; });
    stored_.assign(checks.size(), {0, 0});
    for_each_row(select_heads_, [&](std::size_t r) {
      stored_[index_of(ord_out_[r], checks.size())] = {static_cast<std::uint64_t>(seq_out_[r]),
                                                       static_cast<std::uint64_t>(fence_out_[r])};
    });
    bool fenced = false, moved = false;
    for (std::size_t i = 0; i < checks.size(); ++i) {
      fenced = fenced || stored_[i].second > checks[i]->fence;
      moved = moved || stored_[i].first != checks[i]->expected_seq;
    }
    if (fenced) return errc::fenced_off;
    if (moved) return errc::sequence_conflict;
    return std::nullopt;
  }

  // Bound inputs: one array literal each (several statements share them).
  ArrayParam account_, book_, security_;
  ArrayParam expected_seq_, seq_, fence_, net_quantity_, bought_quantity_, sold_quantity_,
      bought_notional_, sold_notional_, live_trades_;
  ArrayParam partition_id_, ords_, trade_id_, version_, type_, side_, quantity_, price_, cancelled_;
  ArrayParam consumer_, topic_, source_partition_, next_offset_, epoch_;
  // Outputs, one element per fetched row (each statement binds the ones it selects).
  std::vector<long long> ord_out_, id_out_, seq_out_, fence_out_, version_out_, live_trades_out_,
      cancelled_out_;
  std::vector<std::string> net_quantity_out_, bought_quantity_out_, sold_quantity_out_,
      bought_notional_out_, sold_notional_out_;
  std::vector<std::string> account_out_, book_out_, security_out_, trade_id_out_, type_out_,
      side_out_, quantity_out_, price_out_;
  std::vector<soci::indicator> side_ind_, quantity_ind_, price_ind_;
  long long inserted_ = 0;
  long long claimed_ = 0;  // partition rows claimed by claim_partitions_
  long long found_ = 0;    // absent keys found stored by count_keys_
  long long written_ = 0;  // source rows written by upsert_sources_
  // Scratch space of `write`, kept to reuse its capacity.
  std::vector<const PartitionUpdate*> writes_;  // the batch's updates that write, in batch order
  std::vector<const PartitionUpdate*> checks_;  // its check-only updates, in batch order
  std::vector<std::pair<std::uint64_t, std::uint64_t>> stored_;  // seq, fence of each check
  std::vector<long long> ids_;  // partition_id by index in writes_ (0: not updated)
  std::vector<EventRow> events_;
  std::vector<const std::pair<std::string, TradeRecord>*> trades_;

  soci::session& session_;  // for COPY, on its libpq connection
  CopyRows copy_rows_;      // the rows of a COPY
  // After every variable they are bound to, so they are destroyed first.
  RowsStatement lock_partitions_;      // create missing partition rows, lock all, in key order
  RowsStatement update_partitions_;    // conditional on seq and fence; RETURNING the ids
  soci::statement select_heads_;       // seq and fence of partitions (refusals, checks)
  soci::statement claim_partitions_;   // create rows or increment fences, in key order
  soci::statement count_keys_;         // how many of the absent keys are stored
  RowsStatement insert_events_;        // every event of a batch; counts the inserted rows
  RowsStatement upsert_trades_;        // every trade record of a batch
  soci::statement upsert_marks_;       // every source mark of a batch
  soci::statement upsert_sources_;     // every source offset of a batch; counts the rows written
  soci::statement select_partitions_;  // keys -> id, seq, fence, position
  soci::statement select_trades_;      // partition ids -> their trade records
  soci::statement select_marks_;       // partition ids -> their source marks
  RowsStatement find_events_;          // idempotency keys -> events and their partitions
};

}  // namespace

std::unique_ptr<BatchStatements> make_postgresql_statements(soci::session& session) {
  return std::make_unique<PostgresqlStatements>(session);
}

}  // namespace tradecapture::detail::sql
