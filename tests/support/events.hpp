#pragma once
/// \file events.hpp
/// The values the tests build again and again: decimals, partition keys and trade events.

#include <tradecapture/decimal.hpp>
#include <tradecapture/types.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace tctest {

using namespace tradecapture;

/// A decimal from text with an optional '-'; fails the test when it does not parse.
inline Decimal dec(std::string_view text) {
  const bool negative = !text.empty() && text.front() == '-';
  auto d = Decimal::parse(negative ? text.substr(1) : text, Decimal::scale);
  REQUIRE_MESSAGE(d.has_value(), "bad decimal in test: ", std::string(text));
  if (!negative) return d.value();
  auto n = Decimal::from_units(-d.value().units());
  REQUIRE(n.has_value());
  return n.value();
}

/// A partition key.
inline PartitionKey pk(std::string account, std::string book = "B", std::string security = "S") {
  return PartitionKey{std::move(account), std::move(book), std::move(security)};
}

/// A trade event; a CANCEL carries no side, quantity or price.
inline TradeEvent ev(std::string trade_id, std::int64_t version, TradeType type,
                     PartitionKey partition, Side side = Side::Buy,
                     std::string_view quantity = "10", std::string_view price = "2.5") {
  TradeEvent e;
  e.trade_id = std::move(trade_id);
  e.version = version;
  e.type = type;
  e.partition = std::move(partition);
  if (type != TradeType::Cancel) {
    e.side = side;
    e.quantity = dec(quantity);
    e.price = dec(price);
  }
  return e;
}

}  // namespace tctest
