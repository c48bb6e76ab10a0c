// The reference PositionProcessor (spec sections 2-3) and `validate` (spec section 1).
#include <doctest/doctest.h>

#include <tradecapture/processor.hpp>

#include <string>
#include <string_view>

using namespace tradecapture;

namespace {

Decimal dec(std::string_view text) {
  auto r = Decimal::parse(text);
  REQUIRE(r.has_value());
  return r.value();
}

TradeEvent make(TradeType type, std::int64_t version, Side side, std::string_view qty,
                std::string_view price, std::string id = "T1") {
  TradeEvent e;
  e.trade_id = std::move(id);
  e.version = version;
  e.type = type;
  e.partition = {"ACC", "BOOK", "SEC"};
  if (type != TradeType::Cancel) {
    e.side = side;
    e.quantity = dec(qty);
    e.price = dec(price);
  }
  return e;
}

TradeEvent new_trade(Side side, std::string_view qty, std::string_view price,
                     std::string id = "T1") {
  return make(TradeType::New, 1, side, qty, price, std::move(id));
}

TradeEvent amend(std::int64_t v, Side side, std::string_view qty, std::string_view price,
                 std::string id = "T1") {
  return make(TradeType::Amend, v, side, qty, price, std::move(id));
}

TradeEvent cancel(std::int64_t v, std::string id = "T1") {
  return make(TradeType::Cancel, v, Side::Buy, "", "", std::move(id));
}

// Applies an accepted decision to the state as the pipeline would.
void apply(PartitionState& state, const TradeEvent& e, const Decision& d) {
  REQUIRE(d.outcome.kind == OutcomeKind::Accepted);
  state.position = d.position;
  state.trades[e.trade_id] = d.record;
  ++state.seq;
}

Decision run(PartitionState& state, const TradeEvent& e) {
  static const auto processor = make_position_processor();
  REQUIRE(validate(e).empty());
  Decision d = processor->decide(e, state);
  if (d.outcome.kind == OutcomeKind::Accepted) apply(state, e, d);
  return d;
}

struct Expected {
  const char* net;
  const char* bought;
  const char* sold;
  const char* bought_notional;
  const char* sold_notional;
  std::int64_t live;
};

void check_position(const Position& p, const Expected& x) {
  CHECK(p.net_quantity.to_string() == x.net);
  CHECK(p.bought_quantity.to_string() == x.bought);
  CHECK(p.sold_quantity.to_string() == x.sold);
  CHECK(p.bought_notional.to_string() == x.bought_notional);
  CHECK(p.sold_notional.to_string() == x.sold_notional);
  CHECK(p.live_trades == x.live);
}

}  // namespace

TEST_CASE("processor: NEW BUY and NEW SELL effects") {
  PartitionState s;
  auto d = run(s, new_trade(Side::Buy, "100", "187.25"));
  CHECK(d.outcome == Outcome::accepted(0));  // the pipeline assigns seq
  check_position(s.position, {"100", "100", "0", "18725", "0", 1});
  CHECK(d.record == TradeRecord{1, Side::Buy, dec("100"), dec("187.25"), false});

  d = run(s, new_trade(Side::Sell, "40.5", "10.01", "T2"));
  CHECK(d.outcome.kind == OutcomeKind::Accepted);
  check_position(s.position, {"59.5", "100", "40.5", "18725", "405.405", 2});
  CHECK(s.trades.at("T2") == TradeRecord{1, Side::Sell, dec("40.5"), dec("10.01"), false});

  d = run(s, new_trade(Side::Sell, "100", "0", "T3"));  // price 0 is legal
  check_position(s.position, {"-40.5", "100", "140.5", "18725", "405.405", 3});
}

TEST_CASE("processor: exact notionals") {
  PartitionState s;
  run(s, new_trade(Side::Buy, "0.000001", "0.00000001"));
  check_position(s.position, {"0.000001", "0.000001", "0", "0.00000000000001", "0", 1});
  run(s, new_trade(Side::Buy, "999999999999.999999", "999999999.99999999", "T2"));
  CHECK(s.position.bought_notional.to_string() == "999999999999999989000.00000000000002");
  CHECK(s.position.bought_quantity.to_string() == "1000000000000");
}

TEST_CASE("processor: AMEND reverses the current effect and applies the new one") {
  PartitionState s;
  run(s, new_trade(Side::Buy, "100", "10"));
  auto d = run(s, amend(2, Side::Buy, "150", "11"));
  CHECK(d.outcome.kind == OutcomeKind::Accepted);
  check_position(s.position, {"150", "150", "0", "1650", "0", 1});
  CHECK(d.record == TradeRecord{2, Side::Buy, dec("150"), dec("11"), false});

  // side change BUY -> SELL, skipping versions is fine
  d = run(s, amend(5, Side::Sell, "20", "2.5"));
  CHECK(d.outcome.kind == OutcomeKind::Accepted);
  check_position(s.position, {"-20", "0", "20", "0", "50", 1});
  CHECK(s.trades.at("T1").version == 5);
  CHECK(s.trades.at("T1").side == Side::Sell);

  // back to BUY
  run(s, amend(6, Side::Buy, "1", "1"));
  check_position(s.position, {"1", "1", "0", "1", "0", 1});
}

TEST_CASE("processor: AMEND/CANCEL with a version not above the current one is STALE") {
  PartitionState s;
  run(s, new_trade(Side::Buy, "100", "10"));
  run(s, amend(3, Side::Buy, "200", "10"));
  const Position before = s.position;
  const auto processor = make_position_processor();
  for (std::int64_t v : {2, 3}) {
    CHECK(processor->decide(amend(v, Side::Sell, "1", "1"), s).outcome == Outcome::stale());
    CHECK(processor->decide(cancel(v), s).outcome == Outcome::stale());
  }
  CHECK(s.position == before);
  CHECK(processor->decide(amend(4, Side::Sell, "1", "1"), s).outcome.kind == OutcomeKind::Accepted);
}

TEST_CASE("processor: unknown trade") {
  PartitionState s;
  const auto processor = make_position_processor();
  auto d = processor->decide(amend(2, Side::Buy, "1", "1"), s);
  CHECK(d.outcome == Outcome::rejected("unknown trade"));
  d = processor->decide(cancel(2), s);
  CHECK(d.outcome == Outcome::rejected("unknown trade"));
  run(s, new_trade(Side::Buy, "1", "1", "OTHER"));
  CHECK(processor->decide(cancel(2), s).outcome == Outcome::rejected("unknown trade"));
}

TEST_CASE("processor: CANCEL reverses the effect, decrements live_trades, records cancelled") {
  PartitionState s;
  run(s, new_trade(Side::Buy, "100", "10"));
  run(s, new_trade(Side::Sell, "30", "2", "T2"));
  check_position(s.position, {"70", "100", "30", "1000", "60", 2});
  auto d = run(s, cancel(2));
  CHECK(d.outcome.kind == OutcomeKind::Accepted);
  check_position(s.position, {"-30", "0", "30", "0", "60", 1});
  CHECK(d.record.cancelled);
  CHECK(d.record.version == 2);
  d = run(s, cancel(7, "T2"));
  check_position(s.position, {"0", "0", "0", "0", "0", 0});
  CHECK(s.trades.at("T2").cancelled);
  CHECK(s.trades.at("T2").version == 7);
}

TEST_CASE("processor: AMEND or CANCEL after a cancel is REJECTED trade cancelled") {
  PartitionState s;
  run(s, new_trade(Side::Buy, "100", "10"));
  run(s, cancel(3));
  const auto processor = make_position_processor();
  CHECK(processor->decide(amend(4, Side::Buy, "1", "1"), s).outcome ==
        Outcome::rejected("trade cancelled"));
  CHECK(processor->decide(cancel(4), s).outcome == Outcome::rejected("trade cancelled"));
  // not above the current version: STALE wins over cancelled
  CHECK(processor->decide(amend(3, Side::Buy, "1", "1"), s).outcome == Outcome::stale());
  CHECK(processor->decide(cancel(2), s).outcome == Outcome::stale());
}

TEST_CASE("processor: NEW for a trade already in the partition is rejected defensively") {
  PartitionState s;
  run(s, new_trade(Side::Buy, "1", "1"));
  const auto d = make_position_processor()->decide(new_trade(Side::Buy, "1", "1"), s);
  CHECK(d.outcome.kind == OutcomeKind::Rejected);
  CHECK(d.outcome.reason.rfind("conflict: ", 0) == 0);
}

TEST_CASE("processor: totals past 1e24 are REJECTED out of range and change nothing") {
  const auto processor = make_position_processor();
  PartitionState s;
  // Each max trade adds 1e21 to bought_notional: 1000 of them reach exactly 1e24.
  s.position.bought_quantity = dec("999000000000000");
  s.position.net_quantity = dec("999000000000000");
  s.position.bought_notional = dec("999000000000000000000000");
  s.position.live_trades = 999;
  auto d = run(s, new_trade(Side::Buy, "1000000000000", "1000000000", "MAX"));
  REQUIRE(d.outcome.kind == OutcomeKind::Accepted);
  CHECK(s.position.bought_notional == Decimal::max());
  CHECK(s.position.live_trades == 1000);
  const PartitionState before = s;

  d = processor->decide(new_trade(Side::Buy, "0.000001", "0.00000001", "X"), s);
  CHECK(d.outcome.kind == OutcomeKind::Rejected);
  CHECK(d.outcome.reason.rfind("out of range: ", 0) == 0);
  CHECK(d.outcome.reason.find("bought_notional") != std::string::npos);
  CHECK(d.outcome.seq == 0);
  CHECK(s.position == before.position);

  // an amend that would raise the notional is rejected, one that lowers it is accepted
  d = processor->decide(amend(2, Side::Buy, "1000000000000", "1000000000.00000001", "MAX"), s);
  CHECK(d.outcome.kind == OutcomeKind::Rejected);
  CHECK(d.outcome.reason.rfind("out of range: ", 0) == 0);
  d = processor->decide(amend(2, Side::Buy, "1000000000000", "999999999.99999999", "MAX"), s);
  CHECK(d.outcome.kind == OutcomeKind::Accepted);
  CHECK(d.position.bought_notional.to_string() == "999999999999999999990000");

  // a SELL is fine: it does not touch the bought side
  d = processor->decide(new_trade(Side::Sell, "1", "1", "S"), s);
  CHECK(d.outcome.kind == OutcomeKind::Accepted);
}

TEST_CASE("processor: net and sold quantities out of range") {
  const auto processor = make_position_processor();
  PartitionState s;
  s.position.sold_quantity = dec("999999999999000000000000");
  s.position.net_quantity = checked_sub(Decimal(), dec("999999999999000000000000")).value();
  auto d = processor->decide(new_trade(Side::Sell, "1000000000000", "0"), s);
  CHECK(d.outcome.kind == OutcomeKind::Accepted);
  d = processor->decide(new_trade(Side::Sell, "1000000000000.000001", "0"), s);
  REQUIRE(d.outcome.kind == OutcomeKind::Rejected);  // (the event is invalid anyway)
  d = processor->decide(new_trade(Side::Sell, "1000000000000", "0"), [&] {
    PartitionState t = s;
    t.position.sold_quantity = checked_add(t.position.sold_quantity, dec("0.000001")).value();
    return t;
  }());
  CHECK(d.outcome.kind == OutcomeKind::Rejected);
  CHECK(d.outcome.reason.rfind("out of range: ", 0) == 0);
  CHECK(d.outcome.reason.find("sold_quantity") != std::string::npos);

  PartitionState n;  // net_quantity alone at the edge
  n.position.net_quantity = checked_sub(Decimal(), Decimal::max()).value();
  d = processor->decide(new_trade(Side::Sell, "1", "1"), n);
  CHECK(d.outcome.kind == OutcomeKind::Rejected);
  CHECK(d.outcome.reason.find("net_quantity") != std::string::npos);
  d = processor->decide(new_trade(Side::Buy, "1", "1"), n);
  CHECK(d.outcome.kind == OutcomeKind::Accepted);
  CHECK(d.position.net_quantity.to_string() == "-999999999999999999999999");
}

TEST_CASE("processor: decide is pure and the state is not touched by rejections") {
  const auto processor = make_position_processor();
  PartitionState s;
  run(s, new_trade(Side::Buy, "5", "5"));
  const PartitionState copy = s;
  const auto a = processor->decide(amend(2, Side::Sell, "1", "2"), s);
  const auto b = processor->decide(amend(2, Side::Sell, "1", "2"), s);
  CHECK(a.outcome == b.outcome);
  CHECK(a.position == b.position);
  CHECK(a.record == b.record);
  CHECK(s.position == copy.position);
  CHECK(s.trades == copy.trades);
}

// ---- validate ------------------------------------------------------------------------------

namespace {
bool invalid(const TradeEvent& e) {
  const std::string r = validate(e);
  return r.rfind("invalid: ", 0) == 0;
}
}  // namespace

TEST_CASE("validate: identifiers") {
  TradeEvent e = new_trade(Side::Buy, "1", "1");
  CHECK(validate(e).empty());
  e.trade_id = std::string(64, 'x');
  CHECK(validate(e).empty());
  e.trade_id = std::string(65, 'x');
  CHECK(invalid(e));
  e.trade_id = "";
  CHECK(invalid(e));
  std::string e_acute;  // 32 x U+00E9 = 64 bytes
  for (int k = 0; k < 32; ++k) e_acute += "\xC3\xA9";
  e.trade_id = e_acute;
  CHECK(validate(e).empty());
  e.trade_id = e_acute + "x";
  CHECK(invalid(e));
  for (const char* bad : {"a\x01", "\x1f", "x\x7f", "\t", "x\ny"}) {
    e.trade_id = bad;
    CHECK(invalid(e));
  }
  e.trade_id = std::string("a\0b", 3);
  CHECK(invalid(e));
  e.trade_id = "\xC2\x80";  // U+0080 is not in the forbidden set
  CHECK(validate(e).empty());
  e.trade_id = "\xFF";
  CHECK(invalid(e));
  e.trade_id = "T";
  for (std::string PartitionKey::*part :
       {&PartitionKey::account, &PartitionKey::book, &PartitionKey::security}) {
    TradeEvent f = e;
    f.partition.*part = "A_B";
    CHECK(validate(f).empty());
    f.partition.*part = std::string(64, 'p');
    CHECK(validate(f).empty());
    f.partition.*part = std::string(65, 'p');
    CHECK(invalid(f));
    f.partition.*part = "";
    CHECK(invalid(f));
    f.partition.*part = "a\x7f";
    CHECK(invalid(f));
  }
}

TEST_CASE("validate: versions") {
  TradeEvent e = new_trade(Side::Buy, "1", "1");
  e.version = 2;
  CHECK(invalid(e));
  e.version = 0;
  CHECK(invalid(e));
  TradeEvent a = amend(1, Side::Buy, "1", "1");
  CHECK(invalid(a));
  a.version = 2;
  CHECK(validate(a).empty());
  a.version = INT64_MAX;
  CHECK(validate(a).empty());
  a.version = -3;
  CHECK(invalid(a));
  TradeEvent c = cancel(1);
  CHECK(invalid(c));
  c.version = 2;
  CHECK(validate(c).empty());
}

TEST_CASE("validate: quantity and price") {
  auto with = [](std::string_view q, std::string_view p) { return new_trade(Side::Buy, q, p); };
  CHECK(validate(with("1000000000000", "1000000000")).empty());
  CHECK(invalid(with("1000000000000.000001", "1")));
  CHECK(invalid(with("1", "1000000000.00000001")));
  CHECK(invalid(with("0", "1")));
  CHECK(validate(with("0.000001", "0")).empty());
  CHECK(invalid(with("0.0000001", "1")));  // 7 fractional digits
  CHECK(validate(with("1", "0.00000001")).empty());
  CHECK(invalid(with("1", "0.000000001")));  // 9 fractional digits
  TradeEvent neg = with("1", "1");
  neg.price = checked_sub(Decimal(), dec("1")).value();
  CHECK(invalid(neg));
  neg = with("1", "1");
  neg.quantity = checked_sub(Decimal(), dec("1")).value();
  CHECK(invalid(neg));
  // a cancel ignores side, quantity and price whatever they hold
  TradeEvent c = cancel(2);
  c.quantity = checked_sub(Decimal(), dec("1")).value();
  c.price = dec("0.00000000000001");
  c.side = static_cast<Side>(9);
  CHECK(validate(c).empty());
  TradeEvent bad_side = with("1", "1");
  bad_side.side = static_cast<Side>(9);
  CHECK(invalid(bad_side));
}

TEST_CASE("types: same_content, partition keys and hashes") {
  TradeEvent a = new_trade(Side::Buy, "1.5", "2");
  TradeEvent b = new_trade(Side::Buy, "1.500000", "2.00");
  CHECK(a.same_content(b));
  b.price = dec("2.00000001");
  CHECK(!a.same_content(b));
  b = a;
  b.side = Side::Sell;
  CHECK(!a.same_content(b));
  b = a;
  b.partition.security = "OTHER";
  CHECK(!a.same_content(b));
  b = a;
  b.type = TradeType::Amend;
  CHECK(!a.same_content(b));
  TradeEvent c1 = cancel(2);
  TradeEvent c2 = cancel(2);
  c2.quantity = dec("5");
  c2.side = Side::Sell;
  CHECK(c1.same_content(c2));
  c2.partition.book = "X";
  CHECK(!c1.same_content(c2));

  const PartitionKey k1{"A_B", "C", "S"};
  const PartitionKey k2{"A", "B_C", "S"};
  CHECK(k1 != k2);
  CHECK(k1.encode() != k2.encode());
  CHECK(PartitionKey{"A", "B_C", "S1"}.encode() == "1:A3:B_C2:S1");
  CHECK(PartitionKey{"1:A", "", "x"}.encode() == "3:1:A0:1:x");
  CHECK(PartitionKeyHash{}(k1) != PartitionKeyHash{}(k2));
  CHECK(PartitionKeyHash{}(k1) == PartitionKeyHash{}(PartitionKey{"A_B", "C", "S"}));
  CHECK(PartitionKey{"a/b", "c\\d", "e"}.to_string() == "a\\/b/c\\\\d/e");
  CHECK(IdempotencyKeyHash{}({"T1", 1}) == IdempotencyKeyHash{}({"T1", 1}));
  CHECK(IdempotencyKeyHash{}({"T1", 1}) != IdempotencyKeyHash{}({"T1", 2}));
  CHECK(to_string(TradeType::New) == "NEW");
  CHECK(to_string(TradeType::Amend) == "AMEND");
  CHECK(to_string(TradeType::Cancel) == "CANCEL");
  CHECK(to_string(Side::Buy) == "BUY");
  CHECK(to_string(Side::Sell) == "SELL");
  CHECK(to_string(OutcomeKind::Accepted) == "ACCEPTED");
  CHECK(to_string(OutcomeKind::Duplicate) == "DUPLICATE");
  CHECK(to_string(OutcomeKind::Stale) == "STALE");
  CHECK(to_string(OutcomeKind::Rejected) == "REJECTED");
}
