#pragma once
// Private to the SOCI backend: how the store's values are spelled in SQL columns, shared by the
// store and by both kinds of batch statements (sql_row_statements.cpp, postgresql_statements.cpp).

#include <tradecapture/types.hpp>

#include <soci/soci.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

namespace tradecapture::detail::sql {

/// Thrown on a stored value this library could not have written; reported as `store_error`.
struct CorruptData : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The largest sequence number, version or fencing token a BIGINT / INTEGER column holds.
inline constexpr std::uint64_t max_sql_integer = std::numeric_limits<long long>::max();

inline TradeType parse_type(std::string_view text) {
  if (text == "NEW") return TradeType::New;
  if (text == "AMEND") return TradeType::Amend;
  if (text == "CANCEL") return TradeType::Cancel;
  throw CorruptData("stored event type '" + std::string(text) + "'");
}

/// The Side of a stored `side` column ("BUY" or "SELL", written with `to_string(Side)`).
inline Side parse_side(std::string_view text) {
  if (text == "BUY") return Side::Buy;
  if (text == "SELL") return Side::Sell;
  throw CorruptData("stored side '" + std::string(text) + "'");
}

/// Reads a stored decimal: canonical text with an optional '-' (PostgreSQL's NUMERIC text, with
/// trailing zeros up to 14 fractional digits, is accepted as well).
inline Decimal parse_decimal(std::string_view text) {
  const bool negative = !text.empty() && text.front() == '-';
  auto value = Decimal::parse(negative ? text.substr(1) : text, Decimal::scale);
  if (value && negative) value = Decimal::from_units(-value.value().units());
  if (!value) throw CorruptData("stored decimal '" + std::string(text) + "'");
  return value.value();
}

/// Fills the type and, unless a CANCEL, the side, quantity and price of a stored event.
inline void fill_event(TradeEvent& e, const std::string& type, const std::string& side,
                       soci::indicator side_ind, const std::string& quantity,
                       soci::indicator quantity_ind, const std::string& price,
                       soci::indicator price_ind) {
  e.type = parse_type(type);
  if (e.type == TradeType::Cancel) return;
  if (side_ind != soci::i_ok || quantity_ind != soci::i_ok || price_ind != soci::i_ok) {
    throw CorruptData("stored " + std::string(to_string(e.type)) +
                      " without side, quantity or price");
  }
  e.side = parse_side(side);
  e.quantity = parse_decimal(quantity);
  e.price = parse_decimal(price);
}

}  // namespace tradecapture::detail::sql
