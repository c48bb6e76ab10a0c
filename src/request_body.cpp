#include <tradecapture/request_body.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tradecapture {
namespace {

/// Where one top-level value (or top-level array element) sits in the body.
struct Span {
  std::size_t begin = 0;
  std::size_t end = 0;
};

/// A single-pass RFC 8259 validator for a whole application/json body that also finds the
/// top-level value or the elements of a top-level array.
///
/// Why not the event parser's simdjson: the 400 answer says what is wrong and where ("expected
/// ',' or ']' at byte 4", 1-based in the body as sent), which simdjson's error codes do not, and
/// only the split is needed here: numbers of any magnitude and repeated keys pass, each element
/// is parsed by `parse_event` (which rejects that element alone). The grammar (RFC 8259) and the
/// UTF-8 rules (RFC 3629) are the ones `parse_event` applies, so an element this validator
/// accepts is JSON to `parse_event` too (the fuzz target tests/fuzz/fuzz_request_body.cpp checks
/// that, and checks both against nlohmann-json as an independent reader).
///
/// No recursion: open containers are a byte stack, so nesting depth costs one byte each. Linear
/// in the body size.
class BodyScanner {
 public:
  /// `s` is the body after any byte-order mark, which is `base` bytes long: positions in errors
  /// count from the start of the body as sent.
  BodyScanner(std::string_view s, std::size_t base) : s_(s), base_(base) {}

  /// Validates the body. On success `top()` is the top-level value and, when it is an array,
  /// `elements()` are its elements; on failure `error()` says why.
  bool run() {
    skip_ws();
    if (i_ == s_.size()) return fail("empty body");
    top_ = {i_, i_};
    top_is_array_ = s_[i_] == '[';
    for (;;) {
      // ---- a value starts at i_ -------------------------------------------------------------
      if (i_ == s_.size()) return fail("unexpected end of input, expected a value");
      if (top_is_array_ && stack_.size() == 1) element_begin_ = i_;
      const char c = s_[i_];
      if (c == '[' || c == '{') {
        stack_.push_back(c);
        ++i_;
        skip_ws();
        if (i_ == s_.size()) return fail("unexpected end of input");
        if (c == '[') {
          if (s_[i_] != ']') continue;  // the first element
          ++i_;
        } else {
          if (s_[i_] != '}') {
            if (!member_key()) return false;
            continue;  // the member's value
          }
          ++i_;
        }
        stack_.pop_back();  // an empty container
      } else if (c == '"') {
        if (!string()) return false;
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        if (!number()) return false;
      } else if (c == 't') {
        if (!literal("true")) return false;
      } else if (c == 'f') {
        if (!literal("false")) return false;
      } else if (c == 'n') {
        if (!literal("null")) return false;
      } else {
        return fail("unexpected character, expected a value");
      }

      // ---- a value ended at i_: close containers until one wants another value -------------
      for (;;) {
        if (stack_.empty()) {
          top_.end = i_;
          skip_ws();
          if (i_ != s_.size()) return fail("unexpected text after the JSON value");
          return true;
        }
        if (top_is_array_ && stack_.size() == 1) elements_.push_back({element_begin_, i_});
        skip_ws();
        if (i_ == s_.size()) return fail("unexpected end of input");
        const char open = stack_.back();
        const char close = open == '[' ? ']' : '}';
        if (s_[i_] == close) {
          ++i_;
          stack_.pop_back();
          continue;  // the container itself was a value
        }
        if (s_[i_] != ',') {
          return fail(open == '[' ? "expected ',' or ']'" : "expected ',' or '}'");
        }
        ++i_;
        skip_ws();
        if (open == '{' && !member_key()) return false;
        skip_ws();
        break;  // the next value
      }
    }
  }

  Span top() const noexcept { return top_; }
  bool top_is_array() const noexcept { return top_is_array_; }
  const std::vector<Span>& elements() const noexcept { return elements_; }
  const std::string& error() const noexcept { return error_; }

 private:
  bool fail(std::string_view what) {
    error_ = "invalid: not valid JSON: ";
    error_ += what;
    error_ += " at byte ";
    error_ += std::to_string(base_ + i_ + 1);
    return false;
  }

  void skip_ws() noexcept {
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
      ++i_;
    }
  }

  // At the key of an object member (whitespace skipped): the key, ':' and the whitespace up to
  // the value.
  bool member_key() {
    if (i_ == s_.size()) return fail("unexpected end of input, expected a key");
    if (s_[i_] != '"') return fail("expected a string key");
    if (!string()) return false;
    skip_ws();
    if (i_ == s_.size()) return fail("unexpected end of input, expected ':'");
    if (s_[i_] != ':') return fail("expected ':'");
    ++i_;
    skip_ws();
    return true;
  }

  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return fail("invalid literal");
    i_ += word.size();
    return true;
  }

  bool digits() noexcept {
    const std::size_t from = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ != from;
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?  Any magnitude: RFC 8259 sets no limit.
  bool number() {
    if (s_[i_] == '-') ++i_;
    if (i_ == s_.size()) return fail("unexpected end of input in a number");
    if (s_[i_] == '0') {
      ++i_;
    } else if (!digits()) {
      return fail("invalid number");
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (!digits()) return fail("invalid number: digits expected after '.'");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digits()) return fail("invalid number: digits expected in the exponent");
    }
    return true;
  }

  static int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Four hex digits at i_ (after "\u"); -1 when they are not.
  int hex4() noexcept {
    if (s_.size() - i_ < 4) return -1;
    int v = 0;
    for (int k = 0; k < 4; ++k) {
      const int h = hex_value(s_[i_ + k]);
      if (h < 0) return -1;
      v = v * 16 + h;
    }
    i_ += 4;
    return v;
  }

  bool in(std::size_t at, unsigned char lo, unsigned char hi) const noexcept {
    if (at >= s_.size()) return false;
    const auto c = static_cast<unsigned char>(s_[at]);
    return c >= lo && c <= hi;
  }

  // One UTF-8 sequence starting with the non-ASCII byte at i_ (RFC 3629: no overlong forms, no
  // encoded surrogates, nothing above U+10FFFF).
  bool utf8() {
    const auto c = static_cast<unsigned char>(s_[i_]);
    bool ok = false;
    std::size_t len = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      ok = in(i_ + 1, 0x80, 0xBF);
      len = 2;
    } else if (c == 0xE0) {
      ok = in(i_ + 1, 0xA0, 0xBF) && in(i_ + 2, 0x80, 0xBF);
      len = 3;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      ok = in(i_ + 1, 0x80, 0xBF) && in(i_ + 2, 0x80, 0xBF);
      len = 3;
    } else if (c == 0xED) {
      ok = in(i_ + 1, 0x80, 0x9F) && in(i_ + 2, 0x80, 0xBF);
      len = 3;
    } else if (c == 0xF0) {
      ok = in(i_ + 1, 0x90, 0xBF) && in(i_ + 2, 0x80, 0xBF) && in(i_ + 3, 0x80, 0xBF);
      len = 4;
    } else if (c >= 0xF1 && c <= 0xF3) {
      ok = in(i_ + 1, 0x80, 0xBF) && in(i_ + 2, 0x80, 0xBF) && in(i_ + 3, 0x80, 0xBF);
      len = 4;
    } else if (c == 0xF4) {
      ok = in(i_ + 1, 0x80, 0x8F) && in(i_ + 2, 0x80, 0xBF) && in(i_ + 3, 0x80, 0xBF);
      len = 4;
    }
    if (!ok) return fail("invalid UTF-8 in a string");
    i_ += len;
    return true;
  }

  // A string literal starting at the '"' at i_.
  bool string() {
    ++i_;
    for (;;) {
      // The common case: a run of plain printable ASCII.
      while (i_ < s_.size()) {
        const auto c = static_cast<unsigned char>(s_[i_]);
        if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) break;
        ++i_;
      }
      if (i_ == s_.size()) return fail("unexpected end of input in a string");
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return fail("control character in a string must be escaped");
      if (c >= 0x80) {
        if (!utf8()) return false;
        continue;
      }
      // A backslash.
      ++i_;
      if (i_ == s_.size()) return fail("unexpected end of input in a string");
      const char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
          break;
        case 'u': {
          const int u = hex4();
          if (u < 0) return fail("'\\u' must be followed by 4 hex digits");
          if (u >= 0xDC00 && u <= 0xDFFF) return fail("lone low surrogate escape");
          if (u >= 0xD800 && u <= 0xDBFF) {
            if (s_.substr(i_, 2) != "\\u") return fail("lone high surrogate escape");
            i_ += 2;
            const int low = hex4();
            if (low < 0) return fail("'\\u' must be followed by 4 hex digits");
            if (low < 0xDC00 || low > 0xDFFF) return fail("lone high surrogate escape");
          }
          break;
        }
        default:
          --i_;
          return fail("invalid escape in a string");
      }
    }
  }

  std::string_view s_;
  std::size_t base_ = 0;
  std::size_t i_ = 0;
  std::vector<char> stack_;  // '[' or '{' per open container
  Span top_;
  bool top_is_array_ = false;
  std::size_t element_begin_ = 0;
  std::vector<Span> elements_;
  std::string error_;
};

ParsedBody parse_json_body(std::string_view body, std::size_t base) {
  ParsedBody out;
  BodyScanner scanner(body, base);
  if (!scanner.run()) {
    out.error = scanner.error();
    return out;
  }
  if (!scanner.top_is_array()) {
    const Span t = scanner.top();
    out.events.push_back({1, parse_event(body.substr(t.begin, t.end - t.begin))});
    return out;
  }
  out.events.reserve(scanner.elements().size());
  std::uint64_t index = 0;
  for (const Span& e : scanner.elements()) {
    out.events.push_back({++index, parse_event(body.substr(e.begin, e.end - e.begin))});
  }
  return out;
}

ParsedBody parse_ndjson_body(std::string_view body) {
  ParsedBody out;
  std::uint64_t line_no = 0;
  std::size_t from = 0;
  while (from <= body.size()) {
    auto nl = body.find('\n', from);
    if (nl == std::string_view::npos) nl = body.size();
    const std::string_view line = body.substr(from, nl - from);
    ++line_no;
    if (!is_blank_line(line)) out.events.push_back({line_no, parse_event(line)});
    from = nl + 1;
  }
  return out;
}

}  // namespace

ParsedBody parse_request_body(std::string_view body, BodyFormat format) {
  std::size_t base = 0;
  if (body.substr(0, utf8_bom.size()) == utf8_bom) {
    body.remove_prefix(utf8_bom.size());
    base = utf8_bom.size();
  }
  return format == BodyFormat::json ? parse_json_body(body, base) : parse_ndjson_body(body);
}

}  // namespace tradecapture
