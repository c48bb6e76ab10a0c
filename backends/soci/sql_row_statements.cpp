// Row-at-a-time batch statements (the SQLite dialect's): prepared statements executed per
// partition, per key or per chunk of rows. In SQLite a statement execution is a function call, not
// a round trip (for that, see postgresql_statements.cpp), but each still costs a reset, its
// cursors opened again, a statement savepoint and SOCI's exchange. So what is done for many keys
// or rows at once goes in chunks of 64 or 8 per execution (the rest one at a time), with
// positional parameters: find_events (find_events_sql: ~7,200 -> ~4,500 instructions an event),
// the events and trades of a commit (insert_rows_sql), claims and loads (claim_statement,
// select_partitions_sql, select_of_partitions_sql). BENCHMARKS.md ("Session 10") has the
// instruction counts.
//
// A commit: first each source offset in batch order, upserted on condition (the stored epoch not
// above the batch's, checked in the statement itself: a row it leaves alone is fenced off); then,
// per partition in batch order, read its row (select_head): none, insert it with its final state
// (a written one was expected: sequence conflict); one, compare its fence (above the token: fenced
// off) and seq (not the expected one: sequence conflict), then update it, the statement still
// conditional on both. Its events and trades are collected with its id and written 64 rows per
// statement over all partitions (UNIQUE(trade_id, version) is the global idempotency key: a
// taken key fails the multi-row INSERT and so the commit); its source marks are upserted per
// partition. A check-only update reads the partition's seq and fence and compares, writing
// nothing. Last, each of the batch's absent keys is looked up (find_event): one found is a key
// conflict. SQLite has one writer at a time (the write transaction is BEGIN IMMEDIATE), so what a
// check reads stays true until COMMIT, and the order of the rows touched cannot deadlock.
//
// A claim (claim_partitions): in the (ascending) order given, an upsert that creates each row with
// seq 0 and fence 1 or increments its fence (64 or 8 rows per statement, its VALUES in key
// order), then the states are read back as load_partitions reads them.

#include "sql_dialect.hpp"
#include "sql_values.hpp"

#include <soci/soci.h>

#include <array>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace tradecapture::detail::sql {
namespace {

// Every value is a bound parameter. Parameter names are unique within a statement (PostgreSQL's
// SOCI backend numbers them by occurrence). The statements of many keys or rows have positional
// parameters ('?', bound in the order of their exchange): SQLite finds a named parameter by a
// linear scan of the statement's names, so binding 576 of them by name cost a scan each.

constexpr const char* find_event_sql =
    "SELECT p.account, p.book, p.security, e.seq, e.type, e.side, e.quantity, e.price, "
    "coalesce(e.fence, 0) "
    "FROM events e JOIN partitions p ON p.partition_id = e.partition_id "
    "WHERE e.trade_id = :trade_id AND e.version = :version";

/// Keys per execution of the multi-key lookup (find_events_sql), largest first; the rest of a
/// batch, fewer than the smallest, is looked up one key at a time (find_event_sql). A batch of N
/// keys takes at most N / 64 + 7 + 7 executions instead of N.
constexpr std::array<std::size_t, 2> key_chunks{64, 8};

/// The lookup of `n` keys in one statement: a constant table of the keys and their ordinals
/// (literals 0..n-1), joined to events through UNIQUE(trade_id, version). SQLite plans it as a
/// scan of the keys with one index search per key, as the single-key statement does, but without
/// a statement execution (reset, cursor openings, SOCI's exchange) per key.
std::string find_events_sql(std::size_t n) {
  std::string sql = "WITH k(ord, trade_id, version) AS (VALUES ";
  for (std::size_t i = 0; i < n; ++i) {
    const std::string at = std::to_string(i);
    sql += (i == 0 ? "(" : ", (") + at + ", ?, ?)";
  }
  sql +=
      ") SELECT k.ord, p.account, p.book, p.security, e.seq, e.type, e.side, e.quantity, "
      "e.price, coalesce(e.fence, 0) "
      "FROM k JOIN events e ON e.trade_id = k.trade_id AND e.version = k.version "
      "JOIN partitions p ON p.partition_id = e.partition_id";
  return sql;
}

/// The partition rows of `n` keys in one statement (ordinals as in find_events_sql), through
/// UNIQUE(account, book, security); a claim of many partitions then reads them this way.
std::string select_partitions_sql(std::size_t n) {
  std::string sql = "WITH k(ord, account, book, security) AS (VALUES ";
  for (std::size_t i = 0; i < n; ++i) {
    sql += (i == 0 ? "(" : ", (") + std::to_string(i) + ", ?, ?, ?)";
  }
  sql +=
      ") SELECT k.ord, p.partition_id, p.seq, p.fence, p.net_quantity, p.bought_quantity, "
      "p.sold_quantity, p.bought_notional, p.sold_notional, p.live_trades "
      "FROM k JOIN partitions p "
      "ON p.account = k.account AND p.book = k.book AND p.security = k.security";
  return sql;
}

/// `select` of the rows of `table` whose partition_id is one of `n` (ordinals as above; a key
/// without a partition row is bound to id -1, which no row has).
std::string select_of_partitions_sql(std::size_t n, std::string_view select,
                                     std::string_view table) {
  std::string sql = "WITH k(ord, partition_id) AS (VALUES ";
  for (std::size_t i = 0; i < n; ++i) sql += (i == 0 ? "(" : ", (") + std::to_string(i) + ", ?)";
  sql += ") SELECT k.ord, ";
  sql += select;
  sql += " FROM k JOIN ";
  sql += table;
  sql += " t ON t.partition_id = k.partition_id";
  return sql;
}

constexpr const char* select_partition_sql =
    "SELECT partition_id, seq, fence, net_quantity, bought_quantity, sold_quantity, "
    "bought_notional, sold_notional, live_trades "
    "FROM partitions WHERE account = :account AND book = :book AND security = :security";

constexpr const char* select_trades_sql =
    "SELECT trade_id, version, side, quantity, price, cancelled "
    "FROM trades WHERE partition_id = :partition_id";

constexpr const char* select_marks_sql =
    "SELECT source_id, source_position FROM source_marks WHERE partition_id = :partition_id";

constexpr const char* select_head_sql =
    "SELECT partition_id, seq, fence "
    "FROM partitions WHERE account = :account AND book = :book AND security = :security";

/// The claim of `n` partitions in one statement: each row created (seq 0, fence 1) or its fence
/// incremented, in the order of its VALUES; positional parameters account, book, security per
/// row. (OR FAIL: a multi-row statement that may abort midway would keep a statement journal.)
std::string claim_partitions_sql(std::size_t n) {
  std::string sql =
      "INSERT OR FAIL INTO partitions (account, book, security, seq, fence, net_quantity, "
      "bought_quantity, sold_quantity, bought_notional, sold_notional, live_trades) VALUES ";
  for (std::size_t j = 0; j < n; ++j) {
    sql += j == 0 ? "" : ", ";
    sql += "(?, ?, ?, 0, 1, '0', '0', '0', '0', '0', 0)";
  }
  sql += " ON CONFLICT (account, book, security) DO UPDATE SET fence = partitions.fence + 1";
  return sql;
}

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

/// Rows per execution of the multi-row INSERTs of events and trades, largest first (the last is
/// 1: every row count is a sum of them). A commit collects the rows of all its partitions and
/// writes them 64 at a time: an execution of a statement costs SQLite a reset, its cursors opened
/// again, a statement savepoint and its release, and SOCI an exchange (BENCHMARKS.md, "Session
/// 10").
constexpr std::array<std::size_t, 3> row_chunks{64, 8, 1};

/// "INSERT INTO table (columns) VALUES (?, ...), (...)" of `n` rows, then `tail`: the parameters
/// row by row, each row's in the order of `columns`.
std::string insert_rows_sql(std::string_view table, std::span<const std::string_view> columns,
                            std::size_t n, std::string_view tail) {
  std::string sql = "INSERT OR FAIL INTO ";
  sql += table;
  sql += " (";
  for (std::size_t c = 0; c < columns.size(); ++c) {
    sql += c == 0 ? "" : ", ";
    sql += columns[c];
  }
  sql += ") VALUES ";
  for (std::size_t i = 0; i < n; ++i) {
    sql += i == 0 ? "(" : ", (";
    for (std::size_t c = 0; c < columns.size(); ++c) sql += c == 0 ? "?" : ", ?";
    sql += ")";
  }
  sql += tail;
  return sql;
}

constexpr std::array<std::string_view, 9> event_columns{
    "partition_id", "seq", "trade_id", "version", "type", "side", "quantity", "price", "fence"};

constexpr std::array<std::string_view, 7> trade_columns{
    "partition_id", "trade_id", "version", "side", "quantity", "price", "cancelled"};

constexpr std::string_view upsert_trades_tail =
    " ON CONFLICT (partition_id, trade_id) DO UPDATE SET version = excluded.version, "
    "side = excluded.side, quantity = excluded.quantity, price = excluded.price, "
    "cancelled = excluded.cancelled";

constexpr const char* upsert_marks_sql =
    "INSERT INTO source_marks (partition_id, source_id, source_position) "
    "VALUES (:partition_id, :source_id, :source_position) "
    "ON CONFLICT (partition_id, source_id) DO UPDATE SET "
    "source_position = excluded.source_position";

// A row whose stored epoch is above the batch's is left alone (no row changed): fenced off.
constexpr const char* upsert_source_sql =
    "INSERT INTO source_offsets (consumer, topic, partition, next_offset, epoch) "
    "VALUES (:consumer, :topic, :partition, :next_offset, :epoch) "
    "ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, "
    "epoch = excluded.epoch WHERE source_offsets.epoch <= excluded.epoch";

/// Executes a single-row query and runs it to completion, so the statement holds no read lock
/// while the connection waits in the pool. Returns whether the row was there.
bool fetch_one(soci::statement& st) {
  if (!st.execute(true)) return false;
  st.fetch();  // steps past the only row (the key is unique)
  return true;
}

/// The hot statements of one connection with the variables they are bound to.
/// Not movable: the statements hold the addresses of the members.
class RowStatements final : public BatchStatements {
 public:
  explicit RowStatements(soci::session& s)
      : session_(s),
        find_event(s),
        select_partition(s),
        select_trades(s),
        select_marks(s),
        select_head(s),
        claim_partition(s),
        insert_partition(s),
        update_partition(s),
        upsert_marks(s),
        upsert_source(s) {
    using soci::into;
    using soci::use;
    find_event =
        (s.prepare << find_event_sql, use(trade_id, "trade_id"), use(version, "version"),
         into(account_out), into(book_out), into(security_out), into(seq_out), into(type_out),
         into(side_out, side_ind), into(quantity_out, quantity_ind), into(price_out, price_ind),
         into(event_fence_out));
    select_partition =
        (s.prepare << select_partition_sql, use(account, "account"), use(book, "book"),
         use(security, "security"), into(partition_id_out), into(seq_out), into(fence_out),
         into(net_quantity), into(bought_quantity), into(sold_quantity), into(bought_notional),
         into(sold_notional), into(live_trades));
    select_trades = (s.prepare << select_trades_sql, use(partition_id, "partition_id"),
                     into(trade_id_out), into(version_out), into(side_out), into(quantity_out),
                     into(price_out), into(cancelled_out));
    select_marks = (s.prepare << select_marks_sql, use(partition_id, "partition_id"),
                    into(trade_id_out), into(version_out));
    select_head =
        (s.prepare << select_head_sql, use(account, "account"), use(book, "book"),
         use(security, "security"), into(partition_id_out), into(seq_out), into(fence_out));
    claim_partition =
        (s.prepare << claim_partitions_sql(1), use(account), use(book), use(security));
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
    upsert_marks = (s.prepare << upsert_marks_sql, use(mk_partition_id, "partition_id"),
                    use(mk_source, "source_id"), use(mk_position, "source_position"));
    upsert_source = (s.prepare << upsert_source_sql, use(src_consumer, "consumer"),
                     use(src_topic, "topic"), use(src_partition, "partition"),
                     use(src_next_offset, "next_offset"), use(src_epoch, "epoch"));
  }

  void load_partitions(std::span<const PartitionKey> keys,
                       std::vector<PartitionState>& out) override {
    // key_chunks[c] keys at a time: three statements (rows, trades, marks) per chunk instead of
    // three per key; the rest one key at a time.
    std::size_t i = 0;
    for (std::size_t c = 0; c < key_chunks.size(); ++c) {
      for (; keys.size() - i >= key_chunks[c]; i += key_chunks[c]) load_chunk(c, keys, i, out);
    }
    for (; i < keys.size(); ++i) {
      account = keys[i].account;
      book = keys[i].book;
      security = keys[i].security;
      if (!fetch_one(select_partition)) continue;  // never written: the empty state
      load_state(out[i]);
    }
  }

  void claim_partitions(std::span<const PartitionKey> keys,
                        std::vector<PartitionState>& out) override {
    // key_chunks[c] keys per statement (a multi-row upsert, its rows in the order given), then
    // one at a time.
    std::size_t i = 0;
    for (std::size_t c = 0; c < key_chunks.size(); ++c) {
      const std::size_t n = key_chunks[c];
      for (; keys.size() - i >= n; i += n) {
        for (std::size_t j = 0; j < n; ++j) {
          load_account[j] = keys[i + j].account;
          load_book[j] = keys[i + j].book;
          load_security[j] = keys[i + j].security;
        }
        soci::statement& st = claim_statement(c);
        st.execute(true);
        if (st.get_affected_rows() != static_cast<long long>(n)) {
          throw CorruptData("claiming partitions " + keys[i].encode() + " .. " +
                            keys[i + n - 1].encode() + " changed " +
                            std::to_string(st.get_affected_rows()) + " rows, not " +
                            std::to_string(n));
        }
      }
    }
    for (; i < keys.size(); ++i) {
      account = keys[i].account;
      book = keys[i].book;
      security = keys[i].security;
      claim_partition.execute(true);
      if (claim_partition.get_affected_rows() != 1) {
        throw CorruptData("claiming partition " + keys[i].encode() + " changed no row");
      }
    }
    load_partitions(keys, out);  // the same transaction: sees the new fences
  }

  void find_events(std::span<const IdempotencyKey> keys,
                   std::vector<std::optional<StoredEvent>>& out) override {
    std::size_t i = 0;
    for (std::size_t c = 0; c < key_chunks.size(); ++c) {
      const std::size_t n = key_chunks[c];
      for (; keys.size() - i >= n; i += n) {
        soci::statement& st = find_events_statement(c);
        for (std::size_t j = 0; j < n; ++j) {
          lookup_trade_id[j] = keys[i + j].trade_id;
          lookup_version[j] = keys[i + j].version;
        }
        if (!st.execute(true)) continue;
        do {  // to the end: the statement then holds no read lock
          if (lookup_ord_out < 0 || static_cast<unsigned long long>(lookup_ord_out) >= n) {
            throw CorruptData("key ordinal " + std::to_string(lookup_ord_out) + " outside 0.." +
                              std::to_string(n - 1));
          }
          const std::size_t at = i + static_cast<std::size_t>(lookup_ord_out);
          found_event(keys[at], out[at]);
        } while (st.fetch());
      }
    }
    for (; i < keys.size(); ++i) {
      trade_id = keys[i].trade_id;
      version = keys[i].version;
      if (fetch_one(find_event)) found_event(keys[i], out[i]);
    }
  }

  std::optional<errc> write(const CommitBatch& batch, errc& on_unique) override {
    for (const auto& source : batch.sources) {
      src_consumer = source.consumer;
      src_topic = source.topic;
      src_partition = source.partition;
      src_next_offset = source.next_offset;
      src_epoch = static_cast<long long>(source.epoch);
      upsert_source.execute(true);
      if (upsert_source.get_affected_rows() != 1) return errc::fenced_off;
    }
    ev_rows_used = 0;  // rows left over by a refused or failed commit are not written
    tr_rows_used = 0;
    for (const auto& u : batch.partitions) {
      if (auto refused = check_only(u) ? check_partition(u) : write_partition(u, on_unique)) {
        return refused;
      }
    }
    flush_events(on_unique);
    flush_trades();
    for (const auto& k : batch.absent_keys) {
      trade_id = k.trade_id;
      version = k.version;
      if (fetch_one(find_event)) return errc::key_conflict;
    }
    return std::nullopt;
  }

 private:
  /// The multi-key lookup of key_chunks[c] keys, prepared on first use. Its inputs are
  /// lookup_trade_id[j] and lookup_version[j]; its outputs those of find_event and lookup_ord_out.
  soci::statement& find_events_statement(std::size_t c) {
    if (!find_events_chunk[c]) {
      const std::size_t n = key_chunks[c];
      auto st = std::make_unique<soci::statement>(session_);
      for (std::size_t j = 0; j < n; ++j) {
        st->exchange(soci::use(lookup_trade_id[j]));
        st->exchange(soci::use(lookup_version[j]));
      }
      st->exchange(soci::into(lookup_ord_out));
      st->exchange(soci::into(account_out));
      st->exchange(soci::into(book_out));
      st->exchange(soci::into(security_out));
      st->exchange(soci::into(seq_out));
      st->exchange(soci::into(type_out));
      st->exchange(soci::into(side_out, side_ind));
      st->exchange(soci::into(quantity_out, quantity_ind));
      st->exchange(soci::into(price_out, price_ind));
      st->exchange(soci::into(event_fence_out));
      st->alloc();
      st->prepare(find_events_sql(n));
      st->define_and_bind();
      find_events_chunk[c] = std::move(st);
    }
    return *find_events_chunk[c];
  }

  /// Fills `s` from the partition row just fetched by select_partition, then reads the
  /// partition's trades and source marks.
  void load_state(PartitionState& s) {
    fill_head(s);
    partition_id = partition_id_out;
    if (select_trades.execute(true)) {
      do {
        add_trade(s);
      } while (select_trades.fetch());
    }
    if (select_marks.execute(true)) {
      do {
        s.source_marks.insert_or_assign(trade_id_out, version_out);
      } while (select_marks.fetch());
    }
  }

  /// Loads keys[at .. at + key_chunks[c]) into the same places of `out`, with three statements.
  void load_chunk(std::size_t c, std::span<const PartitionKey> keys, std::size_t at,
                  std::vector<PartitionState>& out) {
    const std::size_t n = key_chunks[c];
    for (std::size_t j = 0; j < n; ++j) {
      load_account[j] = keys[at + j].account;
      load_book[j] = keys[at + j].book;
      load_security[j] = keys[at + j].security;
      load_partition_id[j] = -1;  // no row (yet)
    }
    const auto slot = [&](std::size_t limit) -> std::size_t {
      if (lookup_ord_out < 0 || static_cast<unsigned long long>(lookup_ord_out) >= limit) {
        throw CorruptData("key ordinal " + std::to_string(lookup_ord_out) + " outside 0.." +
                          std::to_string(limit - 1));
      }
      return static_cast<std::size_t>(lookup_ord_out);
    };
    bool any = false;
    soci::statement& rows = load_statement(c, 0);
    if (rows.execute(true)) {
      do {  // to the end: the statement then holds no read lock
        const std::size_t j = slot(n);
        fill_head(out[at + j]);
        load_partition_id[j] = partition_id_out;
        any = true;
      } while (rows.fetch());
    }
    if (!any) return;  // none has a row: all empty states
    soci::statement& trades = load_statement(c, 1);
    if (trades.execute(true)) {
      do {
        add_trade(out[at + slot(n)]);
      } while (trades.fetch());
    }
    soci::statement& marks = load_statement(c, 2);
    if (marks.execute(true)) {
      do {
        out[at + slot(n)].source_marks.insert_or_assign(trade_id_out, version_out);
      } while (marks.fetch());
    }
  }

  /// The statements of load_chunk for key_chunks[c] keys, prepared on first use: `what` 0 the
  /// partition rows (inputs load_account/book/security), 1 their trades and 2 their source marks
  /// (input load_partition_id); outputs those of select_partition, select_trades and
  /// select_marks, and lookup_ord_out.
  soci::statement& load_statement(std::size_t c, std::size_t what) {
    auto& slot = load_chunk_statements[c][what];
    if (!slot) {
      const std::size_t n = key_chunks[c];
      auto st = std::make_unique<soci::statement>(session_);
      std::string sql;
      if (what == 0) {
        for (std::size_t j = 0; j < n; ++j) {
          st->exchange(soci::use(load_account[j]));
          st->exchange(soci::use(load_book[j]));
          st->exchange(soci::use(load_security[j]));
        }
        st->exchange(soci::into(lookup_ord_out));
        st->exchange(soci::into(partition_id_out));
        st->exchange(soci::into(seq_out));
        st->exchange(soci::into(fence_out));
        st->exchange(soci::into(net_quantity));
        st->exchange(soci::into(bought_quantity));
        st->exchange(soci::into(sold_quantity));
        st->exchange(soci::into(bought_notional));
        st->exchange(soci::into(sold_notional));
        st->exchange(soci::into(live_trades));
        sql = select_partitions_sql(n);
      } else {
        for (std::size_t j = 0; j < n; ++j) st->exchange(soci::use(load_partition_id[j]));
        st->exchange(soci::into(lookup_ord_out));
        st->exchange(soci::into(trade_id_out));
        st->exchange(soci::into(version_out));
        if (what == 1) {
          st->exchange(soci::into(side_out));
          st->exchange(soci::into(quantity_out));
          st->exchange(soci::into(price_out));
          st->exchange(soci::into(cancelled_out));
          sql = select_of_partitions_sql(
              n, "t.trade_id, t.version, t.side, t.quantity, t.price, t.cancelled", "trades");
        } else {
          sql = select_of_partitions_sql(n, "t.source_id, t.source_position", "source_marks");
        }
      }
      st->alloc();
      st->prepare(sql);
      st->define_and_bind();
      slot = std::move(st);
    }
    return *slot;
  }

  /// The claim (claim_partitions_sql) of key_chunks[c] keys in one statement, prepared on first
  /// use; inputs load_account/book/security.
  soci::statement& claim_statement(std::size_t c) {
    if (!claim_chunk[c]) {
      const std::size_t n = key_chunks[c];
      auto st = std::make_unique<soci::statement>(session_);
      for (std::size_t j = 0; j < n; ++j) {
        st->exchange(soci::use(load_account[j]));
        st->exchange(soci::use(load_book[j]));
        st->exchange(soci::use(load_security[j]));
      }
      st->alloc();
      st->prepare(claim_partitions_sql(n));
      st->define_and_bind();
      claim_chunk[c] = std::move(st);
    }
    return *claim_chunk[c];
  }

  /// The fields of select_partition's row (seq, fence, position) into `s`.
  void fill_head(PartitionState& s) {
    s.seq = static_cast<std::uint64_t>(seq_out);
    s.fence = static_cast<std::uint64_t>(fence_out);
    s.position.net_quantity = parse_decimal(net_quantity);
    s.position.bought_quantity = parse_decimal(bought_quantity);
    s.position.sold_quantity = parse_decimal(sold_quantity);
    s.position.bought_notional = parse_decimal(bought_notional);
    s.position.sold_notional = parse_decimal(sold_notional);
    s.position.live_trades = live_trades;
  }

  /// The trade row just fetched (select_trades' outputs) into `s`.
  void add_trade(PartitionState& s) {
    TradeRecord r;
    r.version = version_out;
    r.side = parse_side(side_out);
    r.quantity = parse_decimal(quantity_out);
    r.price = parse_decimal(price_out);
    r.cancelled = cancelled_out != 0;
    s.trades.insert_or_assign(trade_id_out, r);
  }

  /// Fills `slot` with the event the lookup statement just fetched for `key`.
  void found_event(const IdempotencyKey& key, std::optional<StoredEvent>& slot) {
    StoredEvent& e = slot.emplace();
    e.seq = static_cast<std::uint64_t>(seq_out);
    e.fence = static_cast<std::uint64_t>(event_fence_out);
    e.event.trade_id = key.trade_id;
    e.event.version = key.version;
    e.event.partition = PartitionKey{account_out, book_out, security_out};
    fill_event(e.event, type_out, side_out, side_ind, quantity_out, quantity_ind, price_out,
               price_ind);
  }

  /// Checks a check-only update against the stored seq and fence. Returns the refusal, if any.
  std::optional<errc> check_partition(const PartitionUpdate& u) {
    account = u.partition.account;
    book = u.partition.book;
    security = u.partition.security;
    const bool stored = fetch_one(select_head);  // none: seq 0, fence 0
    const auto stored_seq = stored ? static_cast<std::uint64_t>(seq_out) : 0;
    const auto stored_fence = stored ? static_cast<std::uint64_t>(fence_out) : 0;
    if (stored_fence > u.fence) return errc::fenced_off;  // a stale token wins
    if (stored_seq != u.expected_seq) return errc::sequence_conflict;
    return std::nullopt;
  }

  /// One row of `events` waiting for its INSERT, and of `trades` for its upsert.
  struct EventRow {
    long long partition_id = 0, seq = 0, version = 0, fence = 0;
    std::string trade_id, type, side, quantity, price;
    soci::indicator side_ind = soci::i_ok, value_ind = soci::i_ok;  // i_null for a CANCEL
  };
  struct TradeRow {
    long long partition_id = 0, version = 0;
    std::string trade_id, side, quantity, price;
    int cancelled = 0;
  };

  /// Runs `execute(c)` for chunks of row_chunks[c] rows over the first `used` rows of `rows`,
  /// largest chunks first. The statement of a chunk is bound to the first rows of `rows`, so the
  /// rows after an executed chunk are swapped to the front (strings keep their buffers).
  template <typename Rows, typename Execute>
  static void write_rows(Rows& rows, std::size_t& used, Execute execute) {
    for (std::size_t c = 0; c < row_chunks.size(); ++c) {
      const std::size_t n = row_chunks[c];
      while (used >= n) {
        execute(c);
        for (std::size_t k = n; k < used; ++k) std::swap(rows[k - n], rows[k]);
        used -= n;
      }
    }
  }

  /// Inserts the collected event rows.
  void flush_events(errc& on_unique) {
    on_unique = errc::key_conflict;  // UNIQUE(trade_id, version): the idempotency key
    write_rows(ev_rows, ev_rows_used,
               [&](std::size_t c) { insert_events_statement(c).execute(true); });
    on_unique = errc::store_error;
  }

  /// Upserts the collected trade rows.
  void flush_trades() {
    write_rows(tr_rows, tr_rows_used,
               [&](std::size_t c) { upsert_trades_statement(c).execute(true); });
  }

  /// The INSERT of row_chunks[c] events (ev_rows[0..n-1]), prepared on first use.
  soci::statement& insert_events_statement(std::size_t c) {
    if (!insert_events_chunk[c]) {
      const std::size_t n = row_chunks[c];
      auto st = std::make_unique<soci::statement>(session_);
      for (std::size_t j = 0; j < n; ++j) {
        EventRow& r = ev_rows[j];
        st->exchange(soci::use(r.partition_id));
        st->exchange(soci::use(r.seq));
        st->exchange(soci::use(r.trade_id));
        st->exchange(soci::use(r.version));
        st->exchange(soci::use(r.type));
        st->exchange(soci::use(r.side, r.side_ind));
        st->exchange(soci::use(r.quantity, r.value_ind));
        st->exchange(soci::use(r.price, r.value_ind));
        st->exchange(soci::use(r.fence));
      }
      st->alloc();
      st->prepare(insert_rows_sql("events", event_columns, n, ""));
      st->define_and_bind();
      insert_events_chunk[c] = std::move(st);
    }
    return *insert_events_chunk[c];
  }

  /// The upsert of row_chunks[c] trades (tr_rows[0..n-1]), prepared on first use.
  soci::statement& upsert_trades_statement(std::size_t c) {
    if (!upsert_trades_chunk[c]) {
      const std::size_t n = row_chunks[c];
      auto st = std::make_unique<soci::statement>(session_);
      for (std::size_t j = 0; j < n; ++j) {
        TradeRow& r = tr_rows[j];
        st->exchange(soci::use(r.partition_id));
        st->exchange(soci::use(r.trade_id));
        st->exchange(soci::use(r.version));
        st->exchange(soci::use(r.side));
        st->exchange(soci::use(r.quantity));
        st->exchange(soci::use(r.price));
        st->exchange(soci::use(r.cancelled));
      }
      st->alloc();
      st->prepare(insert_rows_sql("trades", trade_columns, n, upsert_trades_tail));
      st->define_and_bind();
      upsert_trades_chunk[c] = std::move(st);
    }
    return *upsert_trades_chunk[c];
  }

  /// Writes one partition of a batch inside the open transaction. Returns the refusal, if any.
  std::optional<errc> write_partition(const PartitionUpdate& u, errc& on_unique) {
    account = u.partition.account;
    book = u.partition.book;
    security = u.partition.security;
    seq = static_cast<long long>(u.new_seq);
    fence = static_cast<long long>(u.fence);
    expected_seq = static_cast<long long>(u.expected_seq);
    net_quantity = u.position.net_quantity.to_string();
    bought_quantity = u.position.bought_quantity.to_string();
    sold_quantity = u.position.sold_quantity.to_string();
    bought_notional = u.position.bought_notional.to_string();
    sold_notional = u.position.sold_notional.to_string();
    live_trades = u.position.live_trades;

    // The row first (its id, seq and fence): a partition that has one, as any claimed one does, is
    // then updated on condition, two statements; one without is inserted with its final state.
    // (A RETURNING clause would save the read, but SQLite runs it through an ephemeral table and
    // a trigger program: a claim with RETURNING cost 46,000 instructions against 14,400 without.)
    long long id = 0;
    if (fetch_one(select_head)) {
      id = partition_id_out;
      if (fence_out > fence) return errc::fenced_off;  // a stale token wins
      if (seq_out != expected_seq) return errc::sequence_conflict;
      partition_id = id;
      update_partition.execute(true);  // still conditional: the statement states its own guard
      if (update_partition.get_affected_rows() != 1) return errc::sequence_conflict;
    } else {
      if (u.expected_seq != 0) return errc::sequence_conflict;  // expected a written one
      insert_partition.execute(true);
      if (insert_partition.get_affected_rows() != 1 || !fetch_one(select_head)) {
        return errc::sequence_conflict;
      }
      id = partition_id_out;
    }

    for (const StoredEvent& e : u.events) {
      EventRow& r = ev_rows[ev_rows_used];
      r.partition_id = id;
      r.fence = fence;
      r.seq = static_cast<long long>(e.seq);
      r.version = e.event.version;
      r.trade_id = e.event.trade_id;
      r.type = to_string(e.event.type);
      if (e.event.type == TradeType::Cancel) {
        r.side_ind = soci::i_null;  // a CANCEL has no side, quantity or price
        r.value_ind = soci::i_null;
      } else {
        r.side_ind = soci::i_ok;
        r.value_ind = soci::i_ok;
        r.side = to_string(e.event.side);
        r.quantity = e.event.quantity.to_string();
        r.price = e.event.price.to_string();
      }
      if (++ev_rows_used == ev_rows.size()) flush_events(on_unique);
    }

    for (const auto& [id_of_trade, t] : u.trades) {
      TradeRow& r = tr_rows[tr_rows_used];
      r.partition_id = id;
      r.trade_id = id_of_trade;
      r.version = t.version;
      r.side = to_string(t.side);
      r.quantity = t.quantity.to_string();
      r.price = t.price.to_string();
      r.cancelled = t.cancelled ? 1 : 0;
      if (++tr_rows_used == tr_rows.size()) flush_trades();
    }

    if (const std::size_t n = u.marks.size(); n > 0) {
      mk_partition_id.assign(n, id);
      mk_source.resize(n);
      mk_position.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        mk_source[i] = u.marks[i].source;
        mk_position[i] = u.marks[i].position;
      }
      upsert_marks.execute(true);
    }
    return std::nullopt;
  }

  soci::session& session_;  // for the statements prepared on first use
  // Inputs of the single-row statements.
  std::string account, book, security, trade_id;
  long long version = 0, partition_id = 0, seq = 0, fence = 0, expected_seq = 0, live_trades = 0;
  std::string net_quantity, bought_quantity, sold_quantity, bought_notional, sold_notional;
  // Outputs (net_quantity ... live_trades above double as outputs of select_partition).
  std::string account_out, book_out, security_out, type_out, side_out, quantity_out, price_out;
  std::string trade_id_out;
  long long partition_id_out = 0, seq_out = 0, fence_out = 0, version_out = 0;
  long long event_fence_out = 0;
  int cancelled_out = 0;
  soci::indicator side_ind = soci::i_ok, quantity_ind = soci::i_ok, price_ind = soci::i_ok;
  // Rows of the multi-row statements, collected over the partitions of a commit.
  std::array<EventRow, row_chunks[0]> ev_rows;
  std::array<TradeRow, row_chunks[0]> tr_rows;
  std::size_t ev_rows_used = 0, tr_rows_used = 0;
  // Rows of the bulk statement of source marks (one element per row).
  std::vector<long long> mk_partition_id, mk_position;
  std::vector<std::string> mk_source;
  // Inputs and output of the multi-key lookups (key_chunks[0] keys at most).
  std::array<std::string, key_chunks[0]> lookup_trade_id;
  std::array<long long, key_chunks[0]> lookup_version{};
  long long lookup_ord_out = 0;
  // Inputs of the multi-key loads (key_chunks[0] keys at most).
  std::array<std::string, key_chunks[0]> load_account, load_book, load_security;
  std::array<long long, key_chunks[0]> load_partition_id{};
  // The source offset being written.
  std::string src_consumer, src_topic;
  long long src_partition = 0, src_next_offset = 0, src_epoch = 0;

  soci::statement find_event;        // (trade_id, version) -> the event and its partition
  soci::statement select_partition;  // key -> id, seq, fence, position
  soci::statement select_trades;     // partition id -> its trade records
  soci::statement select_marks;      // partition id -> its source marks
  soci::statement select_head;       // key -> id, seq, fence
  soci::statement claim_partition;   // create the row (seq 0, fence 1) or increment its fence
  soci::statement insert_partition;  // a new partition with its state after the batch
  soci::statement update_partition;  // conditional on seq and fence
  soci::statement upsert_marks;      // bulk
  soci::statement upsert_source;     // one source offset, conditional on its epoch
  // The multi-key lookups, one per key_chunks size, prepared on first use.
  std::array<std::unique_ptr<soci::statement>, key_chunks.size()> find_events_chunk;
  // The multi-key loads (rows, trades, marks), one set per key_chunks size, prepared on first use.
  std::array<std::array<std::unique_ptr<soci::statement>, 3>, key_chunks.size()>
      load_chunk_statements;
  // The multi-key claims, one per key_chunks size, prepared on first use.
  std::array<std::unique_ptr<soci::statement>, key_chunks.size()> claim_chunk;
  // The multi-row INSERT of events and upsert of trades, one per row_chunks size, prepared on
  // first use.
  std::array<std::unique_ptr<soci::statement>, row_chunks.size()> insert_events_chunk;
  std::array<std::unique_ptr<soci::statement>, row_chunks.size()> upsert_trades_chunk;
};

}  // namespace

std::unique_ptr<BatchStatements> make_row_statements(soci::session& session) {
  return std::make_unique<RowStatements>(session);
}

}  // namespace tradecapture::detail::sql
