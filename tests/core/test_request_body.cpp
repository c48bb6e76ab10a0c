// Splitting a POST /v1/trades body into events (spec section 5).
#include <doctest/doctest.h>

#include <tradecapture/request_body.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using namespace tradecapture;

namespace {

std::string new_event(std::string_view trade_id, std::string_view extra = {}) {
  std::string s = R"({"trade_id": ")";
  s += trade_id;
  s += R"(", "version": 1, "type": "NEW", "account": "A", "book": "B", "security": "S", )"
       R"("side": "BUY", "quantity": "100", "price": 187.25)";
  s += extra;
  s += '}';
  return s;
}

/// True when `a` and `b` are the same parse result (event content, reason and echo fields).
bool same(const ParsedEvent& a, const ParsedEvent& b) {
  if (a.reason != b.reason || a.echo_trade_id != b.echo_trade_id ||
      a.echo_version != b.echo_version || a.event.has_value() != b.event.has_value()) {
    return false;
  }
  if (!a.event) return true;
  return a.event->trade_id == b.event->trade_id && a.event->version == b.event->version &&
         a.event->same_content(*b.event);
}

/// Checks that `body` parses without error into exactly `elements`, each parsed as on its own,
/// with the given line numbers.
void check_elements(const ParsedBody& body, const std::vector<std::string>& elements,
                    const std::vector<std::uint64_t>& lines) {
  REQUIRE(body.error.empty());
  REQUIRE(body.events.size() == elements.size());
  REQUIRE(lines.size() == elements.size());
  for (std::size_t k = 0; k < elements.size(); ++k) {
    CAPTURE(k);
    CHECK(body.events[k].line == lines[k]);
    CHECK(same(body.events[k].parsed, parse_event(elements[k])));
  }
}

ParsedBody json(std::string_view body) { return parse_request_body(body, BodyFormat::json); }
ParsedBody ndjson(std::string_view body) { return parse_request_body(body, BodyFormat::ndjson); }

void not_json(std::string_view body) {
  CAPTURE(body);
  const ParsedBody b = json(body);
  CHECK(b.events.empty());
  CHECK(b.error.starts_with("invalid: not valid JSON: "));
}

}  // namespace

// A bound that only quadratic work on megabytes can exceed (~1e13 steps), with room for the
// sanitizer builds on a shared 2-core CI machine (ThreadSanitizer runs this 5-15x slower).
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr auto linear_time_bound = std::chrono::seconds(120);
#else
constexpr auto linear_time_bound = std::chrono::seconds(10);
#endif

TEST_CASE("request body: a single JSON object is one event with line 1") {
  const std::string e = new_event("T1");
  const ParsedBody b = json(e);
  check_elements(b, {e}, {1});
  REQUIRE(b.events[0].parsed.event);
  CHECK(b.events[0].parsed.event->trade_id == "T1");
  // Surrounding whitespace, as a client may send it.
  check_elements(json(" \r\n\t" + e + "\n\n"), {e}, {1});
  // A single invalid object is still one event, not an error.
  const ParsedBody bad = json(R"({"trade_id": "T9", "version": 1})");
  REQUIRE(bad.error.empty());
  REQUIRE(bad.events.size() == 1);
  CHECK(bad.events[0].parsed.reason == "invalid: missing field type");
  CHECK(bad.events[0].parsed.echo_trade_id == "T9");
  CHECK(bad.events[0].parsed.echo_version == 1);
}

TEST_CASE("request body: a JSON array gives one event per element, 1-based, in order") {
  const std::vector<std::string> elements = {
      new_event("T1"),
      R"({"trade_id": "T2", "version": 0, "type": "NEW"})",  // rejected, echoes kept
      new_event("T3"),
  };
  const std::string body = "[" + elements[0] + ",\n  " + elements[1] + " ,\t" + elements[2] + "]";
  const ParsedBody b = json(body);
  check_elements(b, elements, {1, 2, 3});
  CHECK(b.events[0].parsed.event);
  CHECK_FALSE(b.events[1].parsed.event);
  CHECK(b.events[1].parsed.reason.starts_with("invalid: "));
  CHECK(b.events[1].parsed.echo_trade_id == "T2");
  CHECK(b.events[1].parsed.echo_version == 0);
  CHECK(b.events[2].parsed.event->trade_id == "T3");
}

TEST_CASE("request body: an empty array is zero events and no error") {
  for (const std::string_view body : {"[]", " [ ] ", "[\n]", "\xEF\xBB\xBF[]"}) {
    CAPTURE(body);
    const ParsedBody b = json(body);
    CHECK(b.error.empty());
    CHECK(b.events.empty());
  }
}

TEST_CASE("request body: elements that are not objects are each one REJECTED event") {
  const std::vector<std::string> elements = {
      "1", R"("x")", "[]", "null", "true", "{}", "[{\"trade_id\": \"T1\"}]", "-0.5e3"};
  std::string body = "[";
  for (std::size_t k = 0; k < elements.size(); ++k) body += (k ? ", " : "") + elements[k];
  body += "]";
  const ParsedBody b = json(body);
  check_elements(b, elements, {1, 2, 3, 4, 5, 6, 7, 8});
  for (const auto& e : b.events) {
    CHECK_FALSE(e.parsed.event);
    CHECK(e.parsed.reason.starts_with("invalid: "));
  }
  CHECK(b.events[0].parsed.reason == "invalid: not a JSON object");
  CHECK(b.events[6].parsed.reason == "invalid: not a JSON object");
  CHECK(b.events[5].parsed.reason == "invalid: missing field trade_id");
}

TEST_CASE("request body: a top-level scalar is one REJECTED event, not a 400") {
  for (const std::string_view body : {"42", "\"NEW\"", "null", " false "}) {
    CAPTURE(body);
    const ParsedBody b = json(body);
    REQUIRE(b.error.empty());
    REQUIRE(b.events.size() == 1);
    CHECK(b.events[0].line == 1);
    CHECK(b.events[0].parsed.reason == "invalid: not a JSON object");
  }
}

TEST_CASE("request body: the splitter respects strings, escapes and nesting") {
  // Brackets, commas, quotes and backslashes inside strings, and nested values in unknown
  // fields, must not end an element early.
  const std::vector<std::string> elements = {
      new_event(R"(a],\"[{,}\\)"),
      new_event("T2", R"(, "note": "]]],,,{{{\\\\\"", "nested": [[{"a": [1, {"b": "]"}]}], {}])"),
      new_event(R"(\u005d\u002c\"\\\/)"),
      new_event("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \\ud83d\\ude00"),
  };
  const std::string body =
      "[" + elements[0] + "," + elements[1] + "," + elements[2] + "," + elements[3] + "]";
  const ParsedBody b = json(body);
  check_elements(b, elements, {1, 2, 3, 4});
  for (const auto& e : b.events) CHECK(e.parsed.event);
  CHECK(b.events[0].parsed.event->trade_id == R"(a],"[{,}\)");
  CHECK(b.events[2].parsed.event->trade_id == R"(],"\/)");
}

TEST_CASE("request body: a body that is not JSON at all is an error with no events") {
  not_json("");
  not_json("   \r\n");
  not_json("{");
  not_json("[");
  not_json("[" + new_event("T1") + ",");
  not_json("[" + new_event("T1") + "," + new_event("T2"));
  not_json(new_event("T1").substr(0, 30));  // truncated inside a string
  not_json("[1 2]");
  not_json("[1,]");
  not_json("[,1]");
  not_json("{\"a\" 1}");
  not_json("{\"a\": 1,}");
  not_json("{1: 2}");
  not_json(new_event("T1") + "x");
  not_json(new_event("T1") + new_event("T2"));         // two objects is not one JSON value
  not_json(new_event("T1") + "\n" + new_event("T2"));  // NDJSON sent as application/json
  not_json("[nul]");
  not_json("[tru]");
  not_json("[NaN]");
  not_json("[Infinity]");
  not_json("[01]");
  not_json("[1.]");
  not_json("[.5]");
  not_json("[1e]");
  not_json("[-]");
  not_json("[+1]");
  not_json("['a']");
  not_json("[\"\\x\"]");      // invalid escape
  not_json("[\"\\u12\"]");    // short \u escape
  not_json("[\"\\ud800\"]");  // lone high surrogate
  not_json("[\"\\udc00\"]");  // lone low surrogate
  not_json("[\"\\ud800\\u0041\"]");
  not_json("[\"a\tb\"]");  // raw control character in a string
  not_json(std::string("[\"a\0b\"]", 6));
  not_json(std::string("[1]\0", 4));  // a NUL after the value is not the end of the input
  not_json(std::string("\0[1]", 4));
  not_json("[\"\xFF\"]");                  // invalid UTF-8
  not_json("[\"\xC0\xAF\"]");              // overlong
  not_json("[\"\xED\xA0\x80\"]");          // an encoded surrogate
  not_json("[\"\xF4\x90\x80\x80\"]");      // above U+10FFFF
  not_json("[\"\xE2\x82\"]");              // truncated sequence
  not_json("\xEF\xBB\xBF\xEF\xBB\xBF[]");  // only one byte-order mark is skipped
  not_json("\xEF\xBB[]");                  // a partial byte-order mark
}

TEST_CASE("request body: the error names the byte, counting a byte-order mark") {
  CHECK(json("[1 2]").error == "invalid: not valid JSON: expected ',' or ']' at byte 4");
  CHECK(json("\xEF\xBB\xBF[1 2]").error ==
        "invalid: not valid JSON: expected ',' or ']' at byte 7");
  CHECK(json("").error == "invalid: not valid JSON: empty body at byte 1");
}

TEST_CASE("request body: valid JSON that is a bad event rejects only that element") {
  // Repeated keys and numbers beyond a double's range are JSON: parse_event rejects them.
  const std::vector<std::string> elements = {
      new_event("T1", R"(, "side": "SELL")"),
      new_event("T2", R"(, "big": 1e400)"),
      R"({"trade_id": "T3", "version": 1, "type": "NEW", "account": "A", "book": "B", )"
      R"("security": "S", "side": "BUY", "quantity": 1e400, "price": 1})",
      new_event("T4"),
      new_event(std::string(65, 'x')),
      R"({"trade_id": "T6", "version": 99999999999999999999, "type": "AMEND"})",
  };
  std::string body = "[";
  for (std::size_t k = 0; k < elements.size(); ++k) body += (k ? "," : "") + elements[k];
  body += "]";
  const ParsedBody b = json(body);
  check_elements(b, elements, {1, 2, 3, 4, 5, 6});
  CHECK(b.events[0].parsed.reason == "invalid: duplicate key side");
  CHECK(b.events[1].parsed.event);  // an unknown field may hold any number
  CHECK(b.events[2].parsed.reason.starts_with("invalid: quantity: "));
  CHECK(b.events[3].parsed.event);
  CHECK(b.events[4].parsed.reason.starts_with("invalid: trade_id"));
  CHECK(b.events[5].parsed.echo_trade_id == "T6");
  CHECK_FALSE(b.events[5].parsed.echo_version);
}

TEST_CASE("request body: a byte-order mark is skipped only at the very start") {
  const std::string e = new_event("T1");
  check_elements(json("\xEF\xBB\xBF" + e), {e}, {1});
  check_elements(json("\xEF\xBB\xBF[" + e + "]"), {e}, {1});
  check_elements(ndjson("\xEF\xBB\xBF" + e + "\n" + e), {e, e}, {1, 2});
  // Inside the body it is not skipped: that NDJSON line is rejected as in a replay file.
  const ParsedBody b = ndjson(e + "\n\xEF\xBB\xBF" + e);
  REQUIRE(b.events.size() == 2);
  CHECK(b.events[0].parsed.event);
  CHECK(b.events[1].parsed.reason == "invalid: byte-order mark inside the input");
}

TEST_CASE("request body: NDJSON lines are numbered physically, blank lines skipped") {
  const std::string e1 = new_event("T1");
  const std::string e2 = "not json";
  const std::string e3 = new_event("T3") + "\r";  // CRLF line ending
  const std::string body = "\n" + e1 + "\n \t\r\n\n" + e2 + "\n" + e3 + "\n\n";
  const ParsedBody b = ndjson(body);
  check_elements(b, {e1, e2, e3}, {2, 5, 6});
  CHECK(b.events[0].parsed.event);
  CHECK(b.events[1].parsed.reason.starts_with("invalid: not valid JSON"));
  CHECK(b.events[2].parsed.event);
  // No trailing newline, an object spread over lines (each line stands alone), and garbage:
  // never a body error.
  check_elements(ndjson(e1), {e1}, {1});
  check_elements(ndjson("{\n\"trade_id\": \"T1\"\n}"), {"{", "\"trade_id\": \"T1\"", "}"},
                 {1, 2, 3});
  check_elements(ndjson("[" + e1 + "]"), {"[" + e1 + "]"}, {1});
  for (const std::string_view body : {"", "\n", "\n\n \r\n", "\xEF\xBB\xBF", "\xEF\xBB\xBF\n"}) {
    const ParsedBody empty = ndjson(body);
    CHECK(empty.error.empty());
    CHECK(empty.events.empty());
  }
  const ParsedBody garbage = ndjson(std::string("\xFF\0{[\n\"", 6));
  CHECK(garbage.error.empty());
  REQUIRE(garbage.events.size() == 2);
  CHECK(garbage.events[0].parsed.reason.starts_with("invalid: "));
  CHECK(garbage.events[1].line == 2);
}

TEST_CASE("request body: deep nesting neither recurses nor overflows the stack") {
  constexpr std::size_t depth = 100000;
  const auto start = std::chrono::steady_clock::now();
  // Valid: one element, a deeply nested array, rejected as not an object.
  const ParsedBody arrays = json(std::string(depth, '[') + std::string(depth, ']'));
  REQUIRE(arrays.error.empty());
  REQUIRE(arrays.events.size() == 1);
  CHECK(arrays.events[0].parsed.reason == "invalid: not a JSON object");
  // Truncated: no closing brackets, or one missing.
  not_json(std::string(depth, '['));
  not_json(std::string(depth, '[') + std::string(depth - 1, ']'));
  not_json(std::string(depth, '{'));
  // Deep objects in an unknown field of a valid event.
  std::string objects;
  for (std::size_t k = 0; k < depth; ++k) objects += "{\"a\":";
  objects += "1";
  objects += std::string(depth, '}');
  const std::string deep = new_event("T1", ", \"deep\": " + objects);
  const ParsedBody b = json("[" + deep + "," + new_event("T2") + "]");
  check_elements(b, {deep, new_event("T2")}, {1, 2});
  CHECK(b.events[0].parsed.event);
  CHECK(b.events[1].parsed.event);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed < linear_time_bound);
}

TEST_CASE("request body: huge strings are handled in linear time") {
  const std::string big(8 << 20, 'x');
  const auto start = std::chrono::steady_clock::now();
  const std::string e1 = new_event("T1", ", \"memo\": \"" + big + "\"");
  const std::string e2 = new_event(big);
  const ParsedBody b = json("[" + e1 + "," + e2 + "]");
  REQUIRE(b.error.empty());
  REQUIRE(b.events.size() == 2);
  CHECK(b.events[0].parsed.event);
  CHECK(b.events[1].parsed.reason.starts_with("invalid: trade_id"));
  not_json("[\"" + big);  // unterminated
  not_json("[\"" + big + "\xFF\"]");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed < linear_time_bound);
}

TEST_CASE("request body: 100k events in one body, JSON and NDJSON alike") {
  constexpr std::size_t n = 100000;
  std::string array = "[";
  std::string lines;
  for (std::size_t k = 0; k < n; ++k) {
    const std::string e = new_event("T" + std::to_string(k));
    array += (k ? "," : "") + e;
    lines += e + "\n";
  }
  array += "]";
  const auto start = std::chrono::steady_clock::now();
  const ParsedBody a = json(array);
  const ParsedBody l = ndjson(lines);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE(a.error.empty());
  REQUIRE(a.events.size() == n);
  REQUIRE(l.events.size() == n);
  std::size_t mismatches = 0;
  for (std::size_t k = 0; k < n; ++k) {
    if (a.events[k].line != k + 1 || l.events[k].line != k + 1 || !a.events[k].parsed.event ||
        a.events[k].parsed.event->trade_id != "T" + std::to_string(k) ||
        !same(a.events[k].parsed, l.events[k].parsed)) {
      ++mismatches;
    }
  }
  CHECK(mismatches == 0);
  CHECK(elapsed < std::chrono::seconds(20));
}
