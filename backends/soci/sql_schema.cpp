// The SQL schema and its history. The library creates and versions it: `schema_version` holds one
// row per applied migration, and the store applies the missing ones in order, in one transaction,
// when it opens a database.
//
// Decimals are stored exactly, in the canonical text of `Decimal::to_string` and read back with
// `Decimal::parse`. In SQLite the column type is TEXT in a STRICT table: a NUMERIC or REAL
// declaration would give the column a numeric affinity and SQLite would turn "0.1" into a binary
// floating-point number. The PostgreSQL dialect spells the same columns NUMERIC(38,14),
// PostgreSQL's exact decimal, which holds every value of `Decimal` (|v| <= 1e24 with 14 fractional
// digits) and reads back as text such as "12.50000000000000" that `Decimal::parse` accepts.
//
// events.partition_id, trades.partition_id and source_marks.partition_id refer to partitions. SQLite declares the foreign
// keys and leaves them unenforced (see sqlite_dialect.cpp); PostgreSQL always enforces a declared
// one, with a lookup per inserted row that cost 15-20 ms of a 5,000-event batch here (about a
// third of inserting the events), so the PostgreSQL dialect leaves the clause out. Nothing is lost:
// the store writes a partition_id only as returned by the update of that partition's row, locked
// by the same transaction, and never deletes a partition.

#include "sql_dialect.hpp"

#include <utility>

namespace tradecapture::detail::sql {
namespace {

/// Replaces each "{key}" of `pattern` by the dialect's spelling.
std::string spell(std::string_view pattern, const ColumnTypes& t) {
  std::string out;
  out.reserve(pattern.size() + 64);
  for (std::size_t i = 0; i < pattern.size();) {
    if (pattern[i] == '{') {
      const std::size_t end = pattern.find('}', i);
      const std::string_view key = pattern.substr(i + 1, end - i - 1);
      const std::pair<std::string_view, std::string_view> spellings[] = {
          {"id", t.id},
          {"int", t.integer},
          {"dec", t.decimal},
          {"text", t.text},
          {"opts", t.table_options},
          {"keyed", t.keyed_table_options},
          {"upd", t.updated_table_options},
          {"ref", t.partition_reference}};
      for (const auto& [name, spelling] : spellings) {
        if (key == name) out += spelling;
      }
      i = end + 1;
    } else {
      out += pattern[i++];
    }
  }
  return out;
}

}  // namespace

std::string schema_version_table(const ColumnTypes& types) {
  return spell(
      "CREATE TABLE IF NOT EXISTS schema_version ("
      "version {int} NOT NULL PRIMARY KEY, "
      "description {text} NOT NULL){opts}",
      types);
}

std::vector<Migration> schema_migrations(const ColumnTypes& types) {
  // CHECKs compare with '=' and OR: SQLite evaluates an IN list of three or more constants with an
  // ephemeral table built once per statement execution, i.e. once per inserted row.
  std::vector<Migration> m;
  // Version 1: partitions (state and position), events (every accepted event; UNIQUE(trade_id,
  // version) is the global idempotency key) and trades (the current state of each trade).
  m.push_back(Migration{
      1,
      "partitions, events and trades",
      {
          spell("CREATE TABLE partitions ("
                "partition_id {id}, "
                "account {text} NOT NULL, "
                "book {text} NOT NULL, "
                "security {text} NOT NULL, "
                "seq {int} NOT NULL, "
                "fence {int} NOT NULL, "
                "net_quantity {dec} NOT NULL, "
                "bought_quantity {dec} NOT NULL, "
                "sold_quantity {dec} NOT NULL, "
                "bought_notional {dec} NOT NULL, "
                "sold_notional {dec} NOT NULL, "
                "live_trades {int} NOT NULL, "
                "UNIQUE (account, book, security)){opts}{upd}",
                types),
          spell("CREATE TABLE events ("
                "partition_id {int} NOT NULL{ref}, "
                "seq {int} NOT NULL, "
                "trade_id {text} NOT NULL, "
                "version {int} NOT NULL, "
                "type {text} NOT NULL CHECK (type = 'NEW' OR type = 'AMEND' OR type = 'CANCEL'), "
                "side {text} CHECK (side IN ('BUY', 'SELL')), "
                "quantity {dec}, "
                "price {dec}, "
                "PRIMARY KEY (partition_id, seq), "
                "UNIQUE (trade_id, version)){keyed}",
                types),
          spell("CREATE TABLE trades ("
                "partition_id {int} NOT NULL{ref}, "
                "trade_id {text} NOT NULL, "
                "version {int} NOT NULL, "
                "side {text} NOT NULL CHECK (side IN ('BUY', 'SELL')), "
                "quantity {dec} NOT NULL, "
                "price {dec} NOT NULL, "
                "cancelled {int} NOT NULL CHECK (cancelled IN (0, 1)), "
                "PRIMARY KEY (partition_id, trade_id)){keyed}{upd}",
                types),
      }});
  // Version 2: the consumed position of each partition of an external source (a Kafka topic
  // partition), written in the commit transaction of the events it covers, and the claim epoch
  // that fences off a source partition's earlier owners (TradeStore::claim_source).
  m.push_back(Migration{
      2,
      "source offsets",
      {
          spell("CREATE TABLE source_offsets ("
                "consumer {text} NOT NULL, "
                "topic {text} NOT NULL, "
                "partition {int} NOT NULL, "
                "next_offset {int} NOT NULL CHECK (next_offset >= 0), "
                "epoch {int} NOT NULL CHECK (epoch >= 0), "
                "PRIMARY KEY (consumer, topic, partition)){keyed}{upd}",
                types),
      }});
  // Version 3: the fence each event's commit carried (StoredEvent::fence), so that after a lost
  // acknowledgement a writer can tell its own commit from another claimant's that stored the
  // same events. Events stored before this version keep NULL (unknown).
  m.push_back(Migration{
      3,
      "the writer's fence of each event",
      {
          spell("ALTER TABLE events ADD COLUMN fence {int}", types),
      }});
  // Version 4: source marks (SourceMark: how far a source's stream is decided in a partition) in
  // a table of their own, written with the events they cover. Up to version 3 the Kafka source
  // kept each of them in `trades`, as a record whose trade_id (the mark's source id) starts with
  // the control character 0x1f and whose version held the position; no valid trade id has a
  // control character, and text compares bytewise in both dialects, so exactly those ids sort
  // below ' '. They move here: `trades` holds trades only.
  m.push_back(Migration{
      4,
      "source marks in their own table",
      {
          spell("CREATE TABLE source_marks ("
                "partition_id {int} NOT NULL{ref}, "
                "source_id {text} NOT NULL, "
                "source_position {int} NOT NULL CHECK (source_position >= 0), "
                "PRIMARY KEY (partition_id, source_id)){keyed}{upd}",
                types),
          "INSERT INTO source_marks (partition_id, source_id, source_position) "
          "SELECT partition_id, trade_id, version FROM trades WHERE trade_id < ' '",
          "DELETE FROM trades WHERE trade_id < ' '",
      }});
  return m;
}

}  // namespace tradecapture::detail::sql
