// The event line parser (spec section 1) and the output lines (spec section 4).
#include <doctest/doctest.h>

#include <tradecapture/event_codec.hpp>

#include "support/events.hpp"
#include "support/trace.hpp"

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace tradecapture;

namespace {

/// Builds an event line from raw JSON member texts, in order.
class Line {
 public:
  Line() = default;
  static Line new_buy() {
    Line l;
    l.members_ = {{"trade_id", "\"T1\""}, {"version", "1"},        {"type", "\"NEW\""},
                  {"account", "\"A\""},   {"book", "\"B\""},       {"security", "\"S\""},
                  {"side", "\"BUY\""},    {"quantity", "\"100\""}, {"price", "187.25"}};
    return l;
  }
  static Line cancel() {
    Line l;
    l.members_ = {{"trade_id", "\"T1\""}, {"version", "2"},  {"type", "\"CANCEL\""},
                  {"account", "\"A\""},   {"book", "\"B\""}, {"security", "\"S\""}};
    return l;
  }
  /// Replaces member `key` (or appends it) with the raw JSON text `raw`.
  Line with(std::string_view key, std::string raw) const {
    Line l = *this;
    for (auto& [k, v] : l.members_) {
      if (k == key) {
        v = std::move(raw);
        return l;
      }
    }
    l.members_.emplace_back(std::string(key), std::move(raw));
    return l;
  }
  /// Replaces member `key` with a JSON string holding `text` as is (no escaping).
  Line with_str(std::string_view key, std::string_view text) const {
    return with(key, "\"" + std::string(text) + "\"");
  }
  /// Appends a member even if `key` is already there (for duplicates).
  Line also(std::string key, std::string raw) const {
    Line l = *this;
    l.members_.emplace_back(std::move(key), std::move(raw));
    return l;
  }
  Line without(std::string_view key) const {
    Line l = *this;
    std::erase_if(l.members_, [&](const auto& m) { return m.first == key; });
    return l;
  }
  std::string str() const {
    std::string out = "{";
    for (const auto& [k, v] : members_) {
      if (out.size() > 1) out += ',';
      out += '"' + k + "\":" + v;
    }
    return out + "}";
  }
  operator std::string() const { return str(); }

 private:
  std::vector<std::pair<std::string, std::string>> members_;
};

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// Parses a line that must be a valid event.
TradeEvent valid(const std::string& line) {
  const ParsedEvent p = parse_event(line);
  INFO("line: " << line << "\nreason: " << p.reason);
  REQUIRE(p.event.has_value());
  CHECK(p.reason.empty());
  return *p.event;
}

// Parses a line that must be rejected; returns the result for further checks.
ParsedEvent invalid(const std::string& line) {
  ParsedEvent p = parse_event(line);
  INFO("line: " << line);
  CHECK(!p.event.has_value());
  CHECK(starts_with(p.reason, "invalid: "));
  return p;
}

void check_no_echo(const ParsedEvent& p) {
  CHECK(!p.echo_trade_id.has_value());
  CHECK(!p.echo_version.has_value());
}

std::string repeat(std::string_view s, int n) {
  std::string out;
  for (int k = 0; k < n; ++k) out += s;
  return out;
}

std::string outcome_line(std::uint64_t line, const std::optional<std::string>& id,
                         const std::optional<std::int64_t>& version, const Outcome& o) {
  std::string out;
  append_outcome_json(out, line, id, version, o);
  return out;
}

std::string json_string(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

}  // namespace

TEST_CASE("codec: blank lines") {
  CHECK(is_blank_line(""));
  CHECK(is_blank_line(" "));
  CHECK(is_blank_line("\t \r"));
  CHECK(is_blank_line("\r"));
  CHECK(!is_blank_line(" x"));
  CHECK(!is_blank_line("\v"));
  CHECK(!is_blank_line("\f"));
  CHECK(!is_blank_line("{}"));
  CHECK(!is_blank_line(std::string_view("\0", 1)));
}

TEST_CASE("codec: a valid NEW line") {
  const ParsedEvent p = parse_event(Line::new_buy().str());
  REQUIRE(p.event.has_value());
  const TradeEvent& e = *p.event;
  CHECK(e.trade_id == "T1");
  CHECK(e.version == 1);
  CHECK(e.type == TradeType::New);
  CHECK(e.partition == PartitionKey{"A", "B", "S"});
  CHECK(e.side == Side::Buy);
  CHECK(e.quantity.to_string() == "100");
  CHECK(e.price.to_string() == "187.25");
  CHECK(p.echo_trade_id == std::optional<std::string>("T1"));
  CHECK(p.echo_version == std::optional<std::int64_t>(1));

  // whitespace around and inside, a trailing carriage return, members in any order
  const TradeEvent f = valid(
      " \t{ \"price\" : \"0\" , \"quantity\":0.5,\"side\":\"SELL\",\"security\":\"S\",\"book\":"
      "\"B\",\"account\":\"A\",\"type\":\"NEW\",\"version\":1,\"trade_id\":\"X\" }\r ");
  CHECK(f.side == Side::Sell);
  CHECK(f.quantity.to_string() == "0.5");
  CHECK(f.price.is_zero());
}

TEST_CASE("codec: byte-order mark") {
  const std::string line = Line::new_buy();
  const ParsedEvent p = invalid(std::string(utf8_bom) + line);
  CHECK(p.reason == "invalid: byte-order mark inside the input");
  check_no_echo(p);
  invalid(" " + std::string(utf8_bom) + line);
  invalid(line + std::string(utf8_bom));
  invalid("\xEF\xBB" + line);
  // U+FEFF inside a string is an ordinary character
  CHECK(valid(Line::new_buy().with_str("trade_id", "\xEF\xBB\xBFT")).trade_id == "\xEF\xBB\xBFT");
}

TEST_CASE("codec: identifier lengths count bytes") {
  for (const char* field : {"trade_id", "account", "book", "security"}) {
    INFO("field: " << field);
    valid(Line::new_buy().with_str(field, std::string(64, 'x')));
    invalid(Line::new_buy().with_str(field, std::string(65, 'x')));
    invalid(Line::new_buy().with_str(field, ""));
    const std::string e_acute = repeat("\xC3\xA9", 32);  // 64 bytes, 32 characters
    valid(Line::new_buy().with_str(field, e_acute));
    invalid(Line::new_buy().with_str(field, e_acute + "x"));
    valid(Line::new_buy().with_str(field, repeat("\\u00e9", 32)));  // escaped, same bytes
    invalid(Line::new_buy().with_str(field, repeat("\\u00e9", 32) + "x"));
    valid(Line::new_buy().with_str(field, repeat("\xE2\x82\xAC", 21) + "x"));  // 64 bytes
    invalid(Line::new_buy().with_str(field, repeat("\xE2\x82\xAC", 22)));      // 66 bytes
  }
  const ParsedEvent p = invalid(Line::new_buy().with_str("trade_id", std::string(65, 'x')));
  CHECK(p.reason.find("trade_id") != std::string::npos);
  CHECK(p.echo_trade_id == std::optional<std::string>(std::string(65, 'x')));
  CHECK(p.echo_version == std::optional<std::int64_t>(1));
}

TEST_CASE("codec: control characters") {
  for (const char* field : {"trade_id", "account", "book", "security"}) {
    INFO("field: " << field);
    for (const char* text :
         {"a\\u0000b", "\\u0001", "a\\u001f", "\\u007f", "a\\nb", "\\t", "\\r", "\\u001F"}) {
      INFO("text: " << text);
      invalid(Line::new_buy().with_str(field, text));
    }
    invalid(Line::new_buy().with_str(field, "a\x7f"));  // raw DEL is legal JSON, not an id
    invalid(Line::new_buy().with_str(field, "a\tb"));   // raw tab is not even JSON
    invalid(Line::new_buy().with_str(field, "a\x01"));
    valid(Line::new_buy().with_str(field, "\\u0080"));  // outside the forbidden set
    valid(Line::new_buy().with_str(field, "A_B"));
    valid(Line::new_buy().with_str(field, "a b/c\\\\d\\\"e"));
  }
  const ParsedEvent p = invalid(Line::new_buy().with_str("trade_id", "a\\u0000b"));
  CHECK(p.echo_trade_id == std::optional<std::string>(std::string("a\0b", 3)));
  CHECK(p.echo_version == std::optional<std::int64_t>(1));
}

TEST_CASE("codec: partitions are compared part by part") {
  const TradeEvent a = valid(Line::new_buy().with_str("account", "A_B").with_str("book", "C"));
  const TradeEvent b = valid(Line::new_buy().with_str("account", "A").with_str("book", "B_C"));
  CHECK(a.partition != b.partition);
  CHECK(a.partition.encode() != b.partition.encode());
}

TEST_CASE("codec: escapes in keys and values are decoded") {
  const TradeEvent e =
      valid(Line::new_buy().without("trade_id").with("\\u0074rade_id", "\"\\u0054\\u0031\""));
  CHECK(e.trade_id == "T1");
  CHECK(valid(Line::new_buy().with_str("quantity", "\\u0031\\u0030")).quantity.to_string() == "10");
  CHECK(valid(Line::new_buy().with_str("type", "N\\u0045W")).type == TradeType::New);
}

TEST_CASE("codec: duplicate keys at any depth") {
  const std::string base = Line::new_buy();
  ParsedEvent p = invalid(Line::new_buy().also("trade_id", "\"T1\""));
  check_no_echo(p);
  CHECK(p.reason.find("duplicate key") != std::string::npos);
  p = invalid(Line::new_buy().also("version", "1"));
  check_no_echo(p);
  invalid(Line::new_buy().also("\\u0074rade_id", "\"T1\""));  // same key once decoded
  invalid(Line::new_buy().also("extra", "1").also("extra", "2"));
  invalid(Line::new_buy().with("meta", R"({"a":1,"a":2})"));
  invalid(Line::new_buy().with("meta", R"([{"x":{"b":[{"c":1,"d":2,"c":3}]}}])"));
  invalid(Line::cancel().with("quantity", R"({"a":1,"a":1})"));
  // the same key in sibling or nested objects is fine
  valid(Line::new_buy().with("meta", R"({"a":{"a":{"a":1}},"b":{"a":1}})"));
  valid(Line::new_buy().with("meta", R"([{"a":1},{"a":1}])"));
  valid(Line::new_buy().with("meta", R"({"trade_id":5,"version":"x"})"));
  valid(Line::new_buy().with("meta", R"({"": 1, " ": 2})"));
  // wide objects (hash-set mode)
  std::string wide = "{";
  for (int k = 0; k < 40; ++k) wide += (k ? ",\"k" : "\"k") + std::to_string(k) + "\":1";
  valid(Line::new_buy().with("meta", wide + "}"));
  invalid(Line::new_buy().with("meta", wide + ",\"k3\":2}"));
  invalid(Line::new_buy().with("meta", wide + ",\"k39\":2}"));
}

TEST_CASE("codec: unknown fields are ignored, whatever they hold") {
  const TradeEvent e = valid(Line::new_buy()
                                 .with("comment", "\"hello\"")
                                 .with("n", "null")
                                 .with("flag", "true")
                                 .with("num", "-1.5e300")
                                 .with("obj", R"({"side":"SELL","quantity":[1,{"x":null}]})")
                                 .with("arr", R"([[],{},[[1,2,"3"]],"\u0000"])"));
  CHECK(e.side == Side::Buy);
  CHECK(e.quantity.to_string() == "100");
}

TEST_CASE("codec: strict JSON") {
  const std::string line = Line::new_buy();
  check_no_echo(invalid(line + " x"));
  check_no_echo(invalid(line + "{}"));
  check_no_echo(invalid(line + ","));
  valid(line + "  \r");
  check_no_echo(invalid(line.substr(0, line.size() - 1)));
  check_no_echo(invalid(Line::new_buy().with("price", "NaN")));
  invalid(Line::new_buy().with("price", "Infinity"));
  invalid(Line::new_buy().with("price", "-Infinity"));
  invalid(Line::new_buy().with("extra", "NaN"));
  invalid(Line::new_buy().with("extra", "'x'"));
  invalid(Line::new_buy().with("extra", "01"));
  invalid(Line::new_buy().with("extra", "1."));
  invalid(Line::new_buy().with("extra", ".5"));
  invalid(Line::new_buy().with("extra", "+1"));
  invalid(Line::new_buy().with("extra", "[1,]"));
  invalid(Line::new_buy().with("extra", "undefined"));
  invalid("{\"trade_id\":\"T1\",}");
  invalid("{'trade_id':'T1'}");
  invalid(line + "// comment");
  invalid("");  // blank lines never reach the parser, but it must not accept them
  invalid(line + std::string(1, '\0'));
  invalid(std::string(1, '\0') + line);
}

TEST_CASE("codec: invalid UTF-8 and lone surrogates") {
  for (const char* bytes : {"\xC3\x28", "\xFF", "\xC0\xAF", "\xE0\x80\xAF", "\xED\xA0\x80",
                            "\xE2\x82", "\x80", "\xF5\x80\x80\x80", "\xF4\x90\x80\x80"}) {
    INFO("bytes: " << bytes);
    ParsedEvent p = invalid(Line::new_buy().with_str("trade_id", std::string("T") + bytes));
    check_no_echo(p);
    for (const char ch : p.reason) {  // the reason itself stays printable ASCII
      CHECK(static_cast<unsigned char>(ch) >= 0x20);
      CHECK(static_cast<unsigned char>(ch) < 0x7F);
    }
    invalid(Line::new_buy().with_str("comment", bytes));
    invalid(Line::new_buy().with(std::string("k") + bytes, "1"));
  }
  check_no_echo(invalid(Line::new_buy().with_str("trade_id", "\\uD800")));
  check_no_echo(invalid(Line::new_buy().with_str("trade_id", "\\uDC00")));
  invalid(Line::new_buy().with_str("trade_id", "x\\uD83Dy"));
  invalid(Line::new_buy().with_str("trade_id", "\\uDE00\\uD83D"));
  invalid(Line::new_buy().with_str("comment", "\\uD800"));
  const TradeEvent e = valid(Line::new_buy().with_str("trade_id", "\\uD83D\\uDE00"));
  CHECK(e.trade_id == "\xF0\x9F\x98\x80");
  CHECK(valid(Line::new_buy().with_str("trade_id", "\xF0\x9F\x98\x80")).trade_id ==
        "\xF0\x9F\x98\x80");
}

TEST_CASE("codec: lines that are not objects") {
  for (const char* text :
       {"[]", "1", "\"x\"", "null", "true", "-0", "[{\"trade_id\":\"T1\"}]", "\"{}\""}) {
    INFO("line: " << text);
    const ParsedEvent p = invalid(text);
    CHECK(p.reason == "invalid: not a JSON object");
    check_no_echo(p);
  }
  std::string nested_top = Line::new_buy();
  invalid("[" + nested_top + "]");
}

TEST_CASE("codec: missing fields and wrong types") {
  for (const char* field : {"trade_id", "version", "type", "account", "book", "security", "side",
                            "quantity", "price"}) {
    INFO("field: " << field);
    ParsedEvent p = invalid(Line::new_buy().without(field));
    CHECK(p.reason == std::string("invalid: missing field ") + field);
    for (const char* raw : {"null", "true", "{}", "[]", "[\"x\"]"}) {
      p = invalid(Line::new_buy().with(field, raw));
      CHECK(p.reason.find(field) != std::string::npos);
    }
  }
  for (const char* field : {"trade_id", "type", "account", "book", "security", "side"}) {
    invalid(Line::new_buy().with(field, "5"));
  }
  const ParsedEvent p = invalid(Line::new_buy().with("trade_id", "5"));
  CHECK(!p.echo_trade_id.has_value());
  CHECK(p.echo_version == std::optional<std::int64_t>(1));
  for (const char* type : {"new", "New", "NEW ", "DELETE", "", "AMENDED"}) {
    invalid(Line::new_buy().with_str("type", type));
  }
  for (const char* side : {"buy", "B", "SELL ", "", "SHORT"}) {
    invalid(Line::new_buy().with_str("side", side));
  }
  for (const char* field : {"trade_id", "version", "type", "account", "book", "security"}) {
    invalid(Line::cancel().without(field));
  }
}

TEST_CASE("codec: version rules") {
  auto version = [](std::string raw) { return Line::new_buy().with("version", std::move(raw)); };
  auto amend = [](std::string raw) {
    return Line::new_buy().with("type", "\"AMEND\"").with("version", std::move(raw));
  };
  ParsedEvent p = invalid(version("0"));
  CHECK(p.echo_version == std::optional<std::int64_t>(0));
  CHECK(p.echo_trade_id == std::optional<std::string>("T1"));
  p = invalid(version("-1"));
  CHECK(p.echo_version == std::optional<std::int64_t>(-1));
  p = invalid(version("-5"));
  CHECK(p.echo_version == std::optional<std::int64_t>(-5));
  p = invalid(version("-0"));
  CHECK(p.echo_version == std::optional<std::int64_t>(0));
  p = invalid(version("2"));  // NEW must be 1
  CHECK(p.echo_version == std::optional<std::int64_t>(2));
  CHECK(p.reason.find("version") != std::string::npos);
  for (const char* raw : {"1.0", "1e0", "1E0", "0.1e1", "\"1\"", "true", "null", "[1]"}) {
    INFO("version: " << raw);
    p = invalid(version(raw));
    CHECK(!p.echo_version.has_value());
    CHECK(p.echo_trade_id == std::optional<std::string>("T1"));
  }
  p = invalid(amend("1"));
  CHECK(p.echo_version == std::optional<std::int64_t>(1));
  invalid(Line::cancel().with("version", "1"));
  CHECK(valid(amend("2")).version == 2);
  CHECK(valid(Line::cancel().with("version", "2")).version == 2);
  const TradeEvent big = valid(amend("9223372036854775807"));
  CHECK(big.version == INT64_MAX);
  p = parse_event(amend("9223372036854775807").str());
  CHECK(p.echo_version == std::optional<std::int64_t>(INT64_MAX));
  p = invalid(amend("9223372036854775808"));
  CHECK(!p.echo_version.has_value());
  p = invalid(amend("18446744073709551616"));
  CHECK(!p.echo_version.has_value());
  p = invalid(amend("-9223372036854775808"));
  CHECK(p.echo_version == std::optional<std::int64_t>(INT64_MIN));
  p = invalid(amend("-9223372036854775809"));
  CHECK(!p.echo_version.has_value());
  p = invalid(amend("99999999999999999999999999999"));
  CHECK(!p.echo_version.has_value());
}

TEST_CASE("codec: decimals as strings or plain numbers") {
  auto qty = [](std::string raw) { return Line::new_buy().with("quantity", std::move(raw)); };
  auto price = [](std::string raw) { return Line::new_buy().with("price", std::move(raw)); };
  CHECK(valid(qty("100")).quantity.to_string() == "100");
  CHECK(valid(qty("\"100\"")).quantity.to_string() == "100");
  CHECK(valid(qty("100.5")).quantity.to_string() == "100.5");
  CHECK(valid(qty("\"007\"")).quantity.to_string() == "7");
  CHECK(valid(qty("\"0.5\"")).quantity.to_string() == "0.5");
  CHECK(valid(qty("0.000001")).quantity.to_string() == "0.000001");
  CHECK(valid(qty("1.000000")).quantity.to_string() == "1");
  CHECK(valid(qty("1000000000000")).quantity.to_string() == "1000000000000");
  CHECK(valid(qty("\"1000000000000.000000\"")).quantity.to_string() == "1000000000000");
  CHECK(valid(price("187.25")).price.to_string() == "187.25");
  CHECK(valid(price("0")).price.is_zero());
  CHECK(valid(price("\"0.00\"")).price.is_zero());
  CHECK(valid(price("1000000000")).price.to_string() == "1000000000");
  CHECK(valid(price("\"0.00000001\"")).price.to_string() == "0.00000001");
  CHECK(valid(price("1.00000000")).price.to_string() == "1");
  // 17 significant digits: would not survive a trip through double
  CHECK(valid(price("123456789.12345678")).price.to_string() == "123456789.12345678");
  CHECK(valid(qty("999999999999.999999")).quantity.to_string() == "999999999999.999999");

  for (const char* raw : {"1e3",
                          "1E3",
                          "1.0e2",
                          "\"1e3\"",
                          "-1",
                          "\"-1\"",
                          "-0",
                          "\"-0\"",
                          "-0.0",
                          "\"+1\"",
                          "\"0x10\"",
                          "\" 1\"",
                          "\"1 \"",
                          "\"\"",
                          "\".5\"",
                          "\"5.\"",
                          "\".\"",
                          "\"1,5\"",
                          "\"NaN\"",
                          "\"inf\"",
                          "0",
                          "\"0\"",
                          "0.0",
                          "\"1.0000000\"",
                          "1.0000000",
                          "0.0000001",
                          "1000000000000.000001",
                          "1000000000001",
                          "12345678901234567890",
                          "123456789012345678901234567890",
                          "\"123456789012345678901234567890\"",
                          "true",
                          "null",
                          "{}",
                          "[\"1\"]",
                          "\"1\\u0000\""}) {
    INFO("quantity: " << raw);
    invalid(qty(raw));
  }
  for (const char* raw : {"-0", "-0.5", "\"-1\"", "1e2", "\"1.000000000\"", "0.000000001",
                          "1000000000.00000001", "1000000001", "\"\"", "null"}) {
    INFO("price: " << raw);
    invalid(price(raw));
  }
  const ParsedEvent p = invalid(qty("\"1.0000000\""));
  CHECK(p.reason == "invalid: quantity: too many fractional digits (max 6)");
  CHECK(p.echo_trade_id == std::optional<std::string>("T1"));
  CHECK(p.echo_version == std::optional<std::int64_t>(1));
}

TEST_CASE("codec: CANCEL ignores side, quantity and price whatever they hold") {
  const TradeEvent c = valid(Line::cancel());
  CHECK(c.type == TradeType::Cancel);
  CHECK(c.version == 2);
  CHECK(c.quantity.is_zero());
  CHECK(c.price.is_zero());
  valid(Line::cancel()
            .with("side", "42")
            .with("quantity", R"({"a":[1,{"b":null}]})")
            .with("price", "\"abc\""));
  valid(Line::cancel().with("side", "\"SIDEWAYS\"").with("quantity", "-1").with("price", "1e99"));
  valid(Line::cancel().with("side", "null").with("quantity", "\"1.0000000000000000000\""));
  valid(Line::cancel().with_str("side", "\\u0000"));
  // still strict JSON
  invalid(Line::cancel().with("quantity", "NaN"));
  invalid(Line::cancel().with("quantity", "[1,2"));
  invalid(Line::cancel().with_str("price", "\xFF"));
  invalid(Line::cancel().also("side", "1").also("side", "2"));
}

TEST_CASE("codec: deep nesting does not recurse") {
  constexpr int depth = 100'000;
  const std::string arrays = std::string(depth, '[') + std::string(depth, ']');
  const std::string objects = repeat("{\"a\":", depth) + "1" + std::string(depth, '}');
  const auto start = std::chrono::steady_clock::now();
  valid(Line::new_buy().with("deep", arrays));
  valid(Line::new_buy().with("deep", objects));
  invalid(Line::new_buy().with("deep", std::string(depth, '[') + std::string(depth - 1, ']')));
  invalid(Line::new_buy().with("deep", std::string(depth, '[')));
  invalid(repeat("{\"a\":", depth) + "1" + std::string(depth - 1, '}'));
  invalid(std::string(depth, '['));
  invalid(arrays);  // valid JSON, not an object
  invalid(Line::new_buy().with(
      "deep", repeat("{\"a\":", depth) + "1" + std::string(depth - 1, '}') + ",\"a\":2}"));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  // Quadratic work would take hours; under TSan on a busy 2-core machine this takes ~12 s.
  CHECK(elapsed < std::chrono::seconds(60));
  valid(Line::new_buy());  // state left by the deep lines does not leak
}

TEST_CASE("codec: append_json_string escapes") {
  CHECK(json_string("") == "\"\"");
  CHECK(json_string("T1") == "\"T1\"");
  CHECK(json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(json_string("\n\r\t\b\f") == "\"\\n\\r\\t\\b\\f\"");
  CHECK(json_string(std::string("\0\x01\x1f\x7f", 4)) == "\"\\u0000\\u0001\\u001f\\u007f\"");
  CHECK(json_string("\xC3\xA9\xF0\x9F\x98\x80/") == "\"\xC3\xA9\xF0\x9F\x98\x80/\"");
  std::string out = "x";
  append_json_string(out, "y");
  CHECK(out == "x\"y\"");
}

TEST_CASE("codec: outcome lines") {
  CHECK(outcome_line(1, "T1", 1, Outcome::accepted(1)) ==
        "{\"line\": 1, \"trade_id\": \"T1\", \"version\": 1, \"outcome\": \"ACCEPTED\", \"reason\": \"\", "
        "\"seq\": 1}\n");
  CHECK(outcome_line(7, std::nullopt, std::nullopt,
                     Outcome::rejected("invalid: not a JSON object")) ==
        "{\"line\": 7, \"trade_id\": null, \"version\": null, \"outcome\": \"REJECTED\", \"reason\": "
        "\"invalid: not a JSON object\", \"seq\": null}\n");
  CHECK(outcome_line(3, "T\"2", -5, Outcome::rejected("invalid: version: must be at least 1")) ==
        "{\"line\": 3, \"trade_id\": \"T\\\"2\", \"version\": -5, \"outcome\": \"REJECTED\", \"reason\": "
        "\"invalid: version: must be at least 1\", \"seq\": null}\n");
  CHECK(outcome_line(4, "T", INT64_MAX, Outcome::duplicate()) ==
        "{\"line\": 4, \"trade_id\": \"T\", \"version\": 9223372036854775807, \"outcome\": \"DUPLICATE\", "
        "\"reason\": \"\", \"seq\": null}\n");
  CHECK(outcome_line(5, "T", 3, Outcome::stale()) ==
        "{\"line\": 5, \"trade_id\": \"T\", \"version\": 3, \"outcome\": \"STALE\", \"reason\": \"\", "
        "\"seq\": null}\n");
  // a reason or seq on a non-REJECTED / non-ACCEPTED outcome is not printed
  CHECK(outcome_line(6, "T", 2, Outcome{OutcomeKind::Stale, 9, "x"}) ==
        "{\"line\": 6, \"trade_id\": \"T\", \"version\": 2, \"outcome\": \"STALE\", \"reason\": \"\", "
        "\"seq\": null}\n");
  CHECK(outcome_line(18446744073709551615ULL, std::string("a\0", 2), INT64_MIN,
                     Outcome::accepted(18446744073709551615ULL)) ==
        "{\"line\": 18446744073709551615, \"trade_id\": \"a\\u0000\", \"version\": -9223372036854775808, "
        "\"outcome\": \"ACCEPTED\", \"reason\": \"\", \"seq\": 18446744073709551615}\n");
}

TEST_CASE("codec: position lines") {
  PositionRow row;
  row.partition = {"A", "B_C", "S\"1"};
  row.position.net_quantity = Decimal();
  row.position.bought_quantity = Decimal::parse("1.5").value();
  row.position.sold_quantity = Decimal::parse("1.5").value();
  row.position.bought_notional = Decimal::parse("280.875").value();
  row.position.sold_notional = Decimal::parse("0.00000000000001").value();
  row.position.live_trades = 0;
  row.seq = 3;
  std::string out;
  append_position_json(out, row);
  CHECK(out ==
        "{\"account\": \"A\", \"book\": \"B_C\", \"security\": \"S\\\"1\", \"net_quantity\": \"0\", "
        "\"bought_quantity\": \"1.5\", \"sold_quantity\": \"1.5\", \"bought_notional\": \"280.875\", "
        "\"sold_notional\": \"0.00000000000001\", \"live_trades\": 0, \"seq\": 3}\n");
  row.position.net_quantity = checked_sub(Decimal(), Decimal::max()).value();
  row.position.live_trades = 12;
  out.clear();
  append_position_json(out, row);
  CHECK(out.find("\"net_quantity\": \"-1000000000000000000000000\"") != std::string::npos);
  CHECK(out.find("\"live_trades\": 12, \"seq\": 3}\n") != std::string::npos);
}

TEST_CASE("codec: event lines") {
  StoredEvent se{valid(Line::new_buy()), 1};
  std::string out;
  append_event_json(out, se);
  CHECK(out ==
        "{\"account\": \"A\", \"book\": \"B\", \"security\": \"S\", \"seq\": 1, \"trade_id\": \"T1\", "
        "\"version\": 1, \"type\": \"NEW\", \"side\": \"BUY\", \"quantity\": \"100\", \"price\": \"187.25\"}"
        "\n");
  se = StoredEvent{valid(Line::new_buy()
                             .with("type", "\"AMEND\"")
                             .with("version", "4")
                             .with("side", "\"SELL\"")
                             .with("quantity", "\"0010.500000\"")
                             .with("price", "0")),
                   2};
  out.clear();
  append_event_json(out, se);
  CHECK(out ==
        "{\"account\": \"A\", \"book\": \"B\", \"security\": \"S\", \"seq\": 2, \"trade_id\": \"T1\", "
        "\"version\": 4, \"type\": \"AMEND\", \"side\": \"SELL\", \"quantity\": \"10.5\", \"price\": \"0\"}"
        "\n");
  se = StoredEvent{valid(Line::cancel().with("version", "9").with("quantity", "\"junk\"")), 3};
  out.clear();
  append_event_json(out, se);
  CHECK(out ==
        "{\"account\": \"A\", \"book\": \"B\", \"security\": \"S\", \"seq\": 3, \"trade_id\": \"T1\", "
        "\"version\": 9, \"type\": \"CANCEL\", \"side\": null, \"quantity\": null, \"price\": null}\n");
}

TEST_CASE("codec: input events written by append_input_event_json parse back to themselves") {
  // Every kind the trace generator makes (invalid ones excluded), with escapes in the partition.
  tctest::TraceOptions o;
  o.seed = 7;
  o.events = 3000;
  o.keys = {tctest::pk("A\"c\\c", "b/x", "\xC3\xA9"), tctest::pk("A", "B", "S")};
  o.mix = tctest::adversarial_mix();
  o.mix.invalid = 0;
  o.mix.edge_amounts = true;
  for (const auto& te : tctest::make_trace(o)) {
    std::string line;
    append_input_event_json(line, te.event);
    INFO(line);
    REQUIRE(line.find('\n') == std::string::npos);
    ParsedEvent p = parse_event(line);
    REQUIRE(p.event.has_value());
    const TradeEvent& e = *p.event;
    CHECK(e.trade_id == te.event.trade_id);
    CHECK(e.version == te.event.version);
    CHECK(e.type == te.event.type);
    CHECK(e.partition == te.event.partition);
    if (e.type != TradeType::Cancel) {
      CHECK(e.side == te.event.side);
      CHECK(e.quantity == te.event.quantity);
      CHECK(e.price == te.event.price);
    }
  }
  std::string cancel;
  append_input_event_json(cancel, tctest::ev("T9", 3, TradeType::Cancel, tctest::pk("A")));
  CHECK(cancel ==
        "{\"trade_id\": \"T9\", \"version\": 3, \"type\": \"CANCEL\", \"account\": \"A\", "
        "\"book\": \"B\", \"security\": \"S\"}");
}

TEST_CASE("codec: numbers beyond a double's range are valid JSON") {
  // nlohmann refuses 1e400 ("number overflow"); the codec must still treat the line as JSON.
  TradeEvent e = valid(Line::new_buy().with("extra", "1e400"));
  CHECK(e.trade_id == "T1");
  valid(Line::new_buy().with("extra", "[-1e400, {\"x\": 2E+999}]"));
  valid(Line::cancel().with("version", "3").with("quantity", "1e400").with("price", "-1e999"));
  ParsedEvent q = parse_event(Line::new_buy().with("quantity", "1e400").str());
  CHECK_FALSE(q.event);
  CHECK(q.reason.rfind("invalid:", 0) == 0);
  CHECK(q.echo_trade_id == std::optional<std::string>("T1"));
  ParsedEvent v = parse_event(Line::new_buy().with("version", "1e400").str());
  CHECK_FALSE(v.event);
  CHECK_FALSE(v.echo_version);
  ParsedEvent p = parse_event(Line::new_buy().with("price", "1e400").str());
  CHECK_FALSE(p.event);
  // Still strict: an overflowing number followed by garbage is not JSON.
  ParsedEvent bad = parse_event("{\"a\": 1e400,}");
  CHECK_FALSE(bad.event);
  CHECK_FALSE(bad.echo_trade_id);
}

TEST_CASE("codec: edge cases of the simdjson parser") {
  // A root string followed by more text is not one JSON value.
  check_no_echo(invalid("\"x\"" + Line::new_buy().str()));
  check_no_echo(invalid("\"\\\"\"{}"));
  CHECK(invalid("\"x\" ").reason == "invalid: not a JSON object");
  CHECK(invalid(" \"a\\\\\" ").reason == "invalid: not a JSON object");
  // Scalars are checked from their own text, also where nothing reads them.
  for (const char* raw : {"1x", "11e401e4000", "1e", "1e+", "-", "--1", "0x10", "1.5.5", "tru",
                          "truex", "nul", "nulll", "falsey", "t", "1\v", "1\f"}) {
    INFO("extra: " << raw);
    const ParsedEvent p = invalid(Line::new_buy().with("extra", raw));
    check_no_echo(p);
    CHECK(starts_with(p.reason, "invalid: not valid JSON: "));
    invalid(Line::cancel().with("quantity", raw));
    invalid(Line::new_buy().with("meta", std::string("[1, {\"a\": ") + raw + "}]"));
  }
  CHECK(starts_with(invalid(Line::new_buy().with("version", "11e401e4000")).reason,
                    "invalid: not valid JSON: "));
  // Exact number text whatever its magnitude: an exponent is an exponent, a sign a sign.
  CHECK(invalid(Line::new_buy().with("quantity", "1e400")).reason ==
        "invalid: quantity: exponent not allowed");
  CHECK(invalid(Line::new_buy().with("price", "-1e400")).reason ==
        "invalid: price: sign not allowed");
  CHECK(invalid(Line::new_buy().with("quantity", "123456789012345678901234567890")).reason ==
        "invalid: quantity: greater than 1e12");
  // Form feed and vertical tab are not JSON whitespace.
  invalid(Line::new_buy().str() + "\f");
  invalid("\v" + Line::new_buy().str());
  // Escaped NUL and surrogate pairs in keys; raw NUL anywhere.
  valid(Line::new_buy().with("\\u0000", "1"));
  valid(Line::new_buy().with("\\uD83D\\uDE00", "1"));
  invalid(Line::new_buy().with("\\uD83D", "1"));
  invalid(Line::new_buy().with("k\\uDE00", "1"));
  const ParsedEvent nul = invalid(Line::new_buy().with_str("comment", std::string("a\0b", 3)));
  CHECK(nul.reason.find("NUL byte") != std::string::npos);
  // Lines far longer than the parser's first buffers (and than what it keeps after a line),
  // then ordinary lines again; what is echoed from a long line is intact.
  const std::string huge_id(3 << 20, 'i');
  const ParsedEvent huge = invalid(Line::new_buy().with_str("trade_id", huge_id));
  CHECK(huge.echo_trade_id == std::optional<std::string>(huge_id));
  CHECK(huge.echo_version == std::optional<std::int64_t>(1));
  CHECK(valid(Line::new_buy().with_str("comment", huge_id)).trade_id == "T1");
  const std::string long_text(300'000, 'x');
  CHECK(valid(Line::new_buy().with_str("comment", long_text)).trade_id == "T1");
  invalid(Line::new_buy().with_str("comment", long_text).also("comment", "1"));
  const std::string wide_array = "[" + repeat("{\"a\":1},", 20'000) + "{\"a\":1}]";
  valid(Line::new_buy().with("many", wide_array));
  CHECK(valid(Line::new_buy()).quantity.to_string() == "100");
  // Strings the parser decoded are copied out: the event outlives the next line's parse.
  const TradeEvent first = valid(Line::new_buy().with_str("trade_id", "first\\u00e9"));
  valid(Line::new_buy().with_str("trade_id", "second"));
  CHECK(first.trade_id == "first\xC3\xA9");
}

TEST_CASE("codec: decode_event is parse_event without validate") {
  std::vector<std::string> lines = {
      Line::new_buy(),
      Line::cancel(),
      Line::new_buy().with("version", "0"),
      Line::new_buy().with("version", "2"),
      Line::new_buy().with("version", "-3"),
      Line::cancel().with("version", "1"),
      Line::new_buy().with("type", "\"AMEND\"").with("version", "1"),
      Line::new_buy().with_str("trade_id", std::string(65, 'x')),
      Line::new_buy().with_str("trade_id", ""),
      Line::new_buy().with_str("account", "a\\u0001"),
      Line::new_buy().with_str("book", "a\x7f"),
      Line::new_buy().with_str("security", std::string(65, 'y')),
      Line::new_buy().with("quantity", "0"),
      Line::new_buy().with("quantity", "1000000000001"),
      Line::new_buy().with("quantity", "\"1.0000000\""),
      Line::new_buy().with("price", "1000000001"),
      Line::new_buy().with("price", "0.000000001"),
      Line::new_buy().with("quantity", "-1"),
      Line::new_buy().without("side"),
      Line::new_buy().with_str("side", "HOLD"),
      Line::new_buy().also("trade_id", "\"T2\""),
      Line::new_buy().str() + "x",
      "[]",
      "",
  };
  for (const std::string& line : lines) {
    INFO("line: " << line);
    const ParsedEvent full = parse_event(line);
    const ParsedEvent form = decode_event(line);
    CHECK(form.echo_trade_id == full.echo_trade_id);
    CHECK(form.echo_version == full.echo_version);
    if (form.event) {
      CHECK(form.reason.empty());
      const std::string reason = validate(*form.event);
      CHECK(reason == full.reason);
      CHECK(full.event.has_value() == reason.empty());
      if (full.event) {
        CHECK(full.event->trade_id == form.event->trade_id);
        CHECK(full.event->version == form.event->version);
        CHECK(full.event->same_content(*form.event));
      }
    } else {
      CHECK(!full.event);
      CHECK(form.reason == full.reason);
    }
  }
}
