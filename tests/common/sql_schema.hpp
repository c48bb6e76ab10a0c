#pragma once
/// \file sql_schema.hpp
/// The plain-SQL checks of the SOCI store's schema that SQLite and PostgreSQL share
/// (tests/sqlite, tests/postgresql): the partition `schema_partition` writes, read back as rows of
/// `schema_version`, `partitions`, `events` and `trades`. Included only where SOCI is built.

#include "common/store_conformance.hpp"

#include <soci/soci.h>

#include <string>

namespace tctest {

/// `sample_position()` with a net quantity of -10^24, 25 digits before the point.
inline Position schema_position() {
  Position p = store_ops::sample_position();
  p.net_quantity = dec("-1000000000000000000000000");
  return p;
}

/// Partition (A, B, C) at fence 3: T1's NEW (BUY 0.5 at 187.25) and its CANCEL, position `p`.
inline UpdateBuilder schema_partition(const Position& p = schema_position()) {
  using namespace store_ops;
  return UpdateBuilder(key("A", "B", "C"), 3, 0)
      .add(new_trade("T1", Side::Buy, "0.5", "187.25"))
      .add(event("T1", 2, TradeType::Cancel))
      .position(p);
}

/// How a database prints what `check_schema_rows` reads.
struct SchemaText {
  /// Appended to a decimal column to read it as text: "::text" for PostgreSQL's NUMERIC, empty
  /// where decimals are stored as text already (SQLite).
  std::string as_text;
  std::string net_quantity;     ///< partition (A, B, C)'s
  std::string bought_notional;  ///< partition (A, B, C)'s
  std::string quantity;         ///< T1's NEW's, and its trade row's
  std::string price;            ///< T1's NEW's
};

/// Checks, in plain SQL, what `schema_partition` wrote: a schema version, the partition's row
/// (amounts, seq 2, fence 3, two live trades), T1's NEW with its side and amounts, its CANCEL
/// with none (NULL), and T1's trade row, cancelled.
inline void check_schema_rows(soci::session& sql, const SchemaText& text) {
  const std::string& t = text.as_text;
  long long version = 0;
  sql << "SELECT MAX(version) FROM schema_version", soci::into(version);
  CHECK(version >= 1);

  std::string net, bought_notional;
  long long seq = 0, fence = 0, live = 0;
  sql << "SELECT net_quantity" + t + ", bought_notional" + t +
             ", seq, fence, live_trades FROM partitions "
             "WHERE account = 'A' AND book = 'B' AND security = 'C'",
      soci::into(net), soci::into(bought_notional), soci::into(seq), soci::into(fence),
      soci::into(live);
  CHECK(net == text.net_quantity);
  CHECK(bought_notional == text.bought_notional);
  CHECK(seq == 2);
  CHECK(fence == 3);
  CHECK(live == 2);

  const std::string select_event = "SELECT type, side, quantity" + t + ", price" + t +
                                   " FROM events WHERE trade_id = 'T1' AND version = ";
  std::string type, side, quantity, price;
  soci::indicator side_ind, quantity_ind, price_ind;
  sql << select_event + "1", soci::into(type), soci::into(side, side_ind),
      soci::into(quantity, quantity_ind), soci::into(price, price_ind);
  CHECK(type == "NEW");
  CHECK(side == "BUY");
  CHECK(quantity == text.quantity);
  CHECK(price == text.price);
  sql << select_event + "2", soci::into(type), soci::into(side, side_ind),
      soci::into(quantity, quantity_ind), soci::into(price, price_ind);
  CHECK(type == "CANCEL");
  CHECK(side_ind == soci::i_null);
  CHECK(quantity_ind == soci::i_null);
  CHECK(price_ind == soci::i_null);

  long long cancelled = -1;
  sql << "SELECT cancelled, quantity" + t + " FROM trades WHERE trade_id = 'T1'",
      soci::into(cancelled), soci::into(quantity);
  CHECK(cancelled == 1);
  CHECK(quantity == text.quantity);
}

}  // namespace tctest
