// libFuzzer target for the request body splitter (spec section 5) and the event parser (spec
// section 1). Built and run by tests/fuzz/run.sh; any failed invariant aborts with a message.
//
// Invariants checked for every input:
// - parse_event: an event xor a reason starting "invalid: "; the event passes `validate`; the
//   echoes of an accepted event are its own trade_id and version; the event written back as a
//   line (append_event_json) parses to the same event; parsing is deterministic (no state left
//   in the parser's thread-local handler).
// - application/json: an error starts "invalid: not valid JSON: " and comes with no events;
//   no event of a body without an error is "not valid JSON" to parse_event;
//   otherwise lines are 1, 2, 3, ...; the verdict agrees with nlohmann::json (whatever nlohmann
//   accepts is accepted; whatever it refuses for a reason other than a number beyond a double's
//   range is refused); the number of events is the number of array elements nlohmann sees, and
//   each element's echoes match nlohmann's view of that element; a non-array body is one event
//   equal to parse_event of the whole body.
// - application/x-ndjson: never an error; one event per non-blank physical line, with its line
//   number, equal to parse_event of that line (split here independently).
#include <tradecapture/event_codec.hpp>
#include <tradecapture/request_body.hpp>
#include <tradecapture/types.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace tradecapture;
using json = nlohmann::json;

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz_request_body: invariant broken: %s %.*s\n", what,
               static_cast<int>(detail.size() > 300 ? 300 : detail.size()), detail.data());
  std::abort();
}

#define FUZZ_CHECK(cond, detail)        \
  do {                                  \
    if (!(cond)) fail(#cond, (detail)); \
  } while (0)

bool same_event(const TradeEvent& a, const TradeEvent& b) {
  return a.trade_id == b.trade_id && a.version == b.version && a.same_content(b);
}

bool same(const ParsedEvent& a, const ParsedEvent& b) {
  if (a.reason != b.reason || a.echo_trade_id != b.echo_trade_id ||
      a.echo_version != b.echo_version || a.event.has_value() != b.event.has_value()) {
    return false;
  }
  return !a.event || same_event(*a.event, *b.event);
}

void check_event(const ParsedEvent& p) {
  if (p.event) {
    FUZZ_CHECK(p.reason.empty(), p.reason);
    FUZZ_CHECK(validate(*p.event).empty(), p.event->trade_id);
    FUZZ_CHECK(p.echo_trade_id == p.event->trade_id, p.event->trade_id);
    FUZZ_CHECK(p.echo_version == p.event->version, p.event->trade_id);
    // The canonical form (an `events` line: unknown "seq", null amounts for a CANCEL) is an
    // event line that must give back the same event.
    std::string line;
    append_event_json(line, StoredEvent{*p.event, 1});
    FUZZ_CHECK(!line.empty() && line.back() == '\n', line);
    line.pop_back();
    const ParsedEvent again = parse_event(line);
    FUZZ_CHECK(again.event && same_event(*again.event, *p.event), line + " -> " + again.reason);
  } else {
    FUZZ_CHECK(p.reason.starts_with("invalid: "), p.reason);
  }
}

/// Remembers why nlohmann refused a text.
struct Verdict : nlohmann::json_sax<json> {
  int error_id = 0;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    error_id = ex.id;
    return false;
  }
};

void check_json_body(std::string_view data) {
  const ParsedBody b = parse_request_body(data, BodyFormat::json);
  std::string_view body = data;
  if (body.starts_with(utf8_bom)) body.remove_prefix(utf8_bom.size());

  if (!b.error.empty()) {
    FUZZ_CHECK(b.events.empty(), b.error);
    FUZZ_CHECK(b.error.starts_with("invalid: not valid JSON: "), b.error);
  }
  for (std::size_t k = 0; k < b.events.size(); ++k) {
    FUZZ_CHECK(b.events[k].line == k + 1, "line numbers");
    check_event(b.events[k].parsed);
    // The body's validator and the event parser agree on what JSON is: an element of a body
    // that is JSON is JSON to parse_event too.
    FUZZ_CHECK(!b.events[k].parsed.reason.starts_with("invalid: not valid JSON"),
               b.events[k].parsed.reason);
  }

  // nlohmann's lexer stops at a NUL byte, so it cannot judge such inputs; we refuse them.
  if (data.find('\0') != std::string_view::npos) {
    FUZZ_CHECK(!b.error.empty(), "a raw NUL must make the body invalid");
    return;
  }
  Verdict v;
  const bool accepted = json::sax_parse(data.data(), data.data() + data.size(), &v,
                                        json::input_format_t::json, /*strict=*/true);
  if (accepted) {
    FUZZ_CHECK(b.error.empty(), b.error);
  } else if (v.error_id != 406) {  // 406: a number beyond a double, valid JSON all the same
    FUZZ_CHECK(!b.error.empty(), "nlohmann refused what we accepted");
  }
  if (!b.error.empty()) return;

  std::size_t first = body.find_first_not_of(" \t\r\n");
  FUZZ_CHECK(first != std::string_view::npos, "an empty body was accepted");
  if (body[first] != '[') {
    FUZZ_CHECK(b.events.size() == 1, "a non-array body is one event");
    FUZZ_CHECK(same(b.events[0].parsed, parse_event(body)), "a single value is parse_event");
    return;
  }
  if (!accepted) return;  // nlohmann cannot build the array (1e400); nothing to compare with
  // Both parsers are iterative, and so is the destructor of a json value.
  const json doc = json::parse(data.begin(), data.end(), nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(doc.is_array(), "top-level array");
  FUZZ_CHECK(doc.size() == b.events.size(), "one event per array element");
  for (std::size_t k = 0; k < b.events.size(); ++k) {
    const ParsedEvent& p = b.events[k].parsed;
    const json& e = doc[k];
    if (!e.is_object()) {
      // Rejected with no echo. The reason is "not a JSON object", unless parse_event met another
      // fault first inside the value (a repeated key in a nested object, say): the spec fixes
      // only the "invalid: " prefix.
      FUZZ_CHECK(!p.event && p.reason.rfind("invalid: ", 0) == 0, p.reason);
      FUZZ_CHECK(!p.echo_trade_id && !p.echo_version, "no echo for a non-object element");
      continue;
    }
    if (p.echo_trade_id) {
      // An echo is only set when the element has no repeated key, so nlohmann kept the one
      // value there is.
      const auto id = e.find("trade_id");
      FUZZ_CHECK(
          id != e.end() && id->is_string() && id->get_ref<const std::string&>() == *p.echo_trade_id,
          *p.echo_trade_id);
    }
    if (p.echo_version) {
      const auto ver = e.find("version");
      FUZZ_CHECK(
          ver != e.end() && ver->is_number_integer() && ver->get<std::int64_t>() == *p.echo_version,
          "version echo");
    }
  }
}

void check_ndjson_body(std::string_view data) {
  const ParsedBody b = parse_request_body(data, BodyFormat::ndjson);
  FUZZ_CHECK(b.error.empty(), b.error);
  std::string_view rest = data;
  if (rest.starts_with(utf8_bom)) rest.remove_prefix(utf8_bom.size());
  std::size_t k = 0;
  std::uint64_t line_no = 0;
  for (;;) {
    const std::size_t nl = rest.find('\n');
    const std::string_view line = rest.substr(0, nl);
    ++line_no;
    if (!is_blank_line(line)) {
      FUZZ_CHECK(k < b.events.size(), "too few NDJSON events");
      FUZZ_CHECK(b.events[k].line == line_no, "NDJSON line number");
      FUZZ_CHECK(same(b.events[k].parsed, parse_event(line)), line);
      check_event(b.events[k].parsed);
      ++k;
    }
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  FUZZ_CHECK(k == b.events.size(), "too many NDJSON events");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view data(reinterpret_cast<const char*>(bytes), size);
  const ParsedEvent p = parse_event(data);
  check_event(p);
  FUZZ_CHECK(same(p, parse_event(data)), "parse_event is deterministic");
  check_json_body(data);
  check_ndjson_body(data);
  return 0;
}
