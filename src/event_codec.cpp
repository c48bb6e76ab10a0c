#include <tradecapture/event_codec.hpp>

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

namespace tradecapture {
namespace {

namespace od = simdjson::ondemand;

// ---- the fields of an event line ---------------------------------------------------------

enum Field : int {
  f_trade_id,
  f_version,
  f_type,
  f_account,
  f_book,
  f_security,
  f_side,
  f_quantity,
  f_price,
  field_count,
  f_none = -1,
};

constexpr std::string_view field_names[field_count] = {
    "trade_id", "version", "type", "account", "book", "security", "side", "quantity", "price",
};

/// `s == lit`, as a fixed-size memcmp the compiler turns into a few integer compares (GCC does
/// not inline std::string_view's operator== here: it was ~13% of a line's instructions).
template <std::size_t N>
bool is(std::string_view s, const char (&lit)[N]) noexcept {
  return s.size() == N - 1 && std::memcmp(s.data(), lit, N - 1) == 0;
}

Field lookup_field(std::string_view key) noexcept {
  switch (key.size()) {
    case 4:
      if (is(key, "type")) return f_type;
      if (is(key, "book")) return f_book;
      if (is(key, "side")) return f_side;
      break;
    case 5:
      if (is(key, "price")) return f_price;
      break;
    case 7:
      if (is(key, "version")) return f_version;
      if (is(key, "account")) return f_account;
      break;
    case 8:
      if (is(key, "trade_id")) return f_trade_id;
      if (is(key, "security")) return f_security;
      if (is(key, "quantity")) return f_quantity;
      break;
    default:
      break;
  }
  return f_none;
}

/// The JSON type of a top-level member.
enum class Kind : std::uint8_t {
  absent,
  null,
  boolean,
  integer,    ///< written with a leading '-', no fraction or exponent, within int64
  unsigned_,  ///< no '-', fraction or exponent, within uint64
  raw,        ///< any other number: fraction, exponent, or beyond the 64-bit ranges
  string,
  object,
  array,
};

struct Slot {
  Kind kind = Kind::absent;
  /// The decoded string, or the number's text exactly as written. Points into the parser's
  /// buffers: valid until the next line is parsed on this thread.
  std::string_view text;
  std::int64_t i = 0;
  std::uint64_t u = 0;
};

bool is_json_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim_json_space(std::string_view s) noexcept {
  while (!s.empty() && is_json_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_json_space(s.back())) s.remove_suffix(1);
  return s;
}

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

/// Checks `t` against RFC 8259's number grammar, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
/// (any magnitude), and classifies it into `s` without any floating point: the text is kept as
/// written. False when `t` is not a JSON number.
bool read_number(std::string_view t, Slot& s) noexcept {
  const std::size_t n = t.size();
  std::size_t k = 0;
  const bool negative = k < n && t[k] == '-';
  if (negative) ++k;
  if (k == n) return false;
  const std::size_t int_begin = k;
  if (t[k] == '0') {
    ++k;
  } else if (t[k] >= '1' && t[k] <= '9') {
    while (k < n && is_digit(t[k])) ++k;
  } else {
    return false;
  }
  const std::size_t int_end = k;
  bool plain = true;
  if (k < n && t[k] == '.') {
    ++k;
    if (k == n || !is_digit(t[k])) return false;
    while (k < n && is_digit(t[k])) ++k;
    plain = false;
  }
  if (k < n && (t[k] == 'e' || t[k] == 'E')) {
    ++k;
    if (k < n && (t[k] == '+' || t[k] == '-')) ++k;
    if (k == n || !is_digit(t[k])) return false;
    while (k < n && is_digit(t[k])) ++k;
    plain = false;
  }
  if (k != n) return false;
  s.text = t;
  s.kind = Kind::raw;
  if (plain) {
    std::uint64_t u = 0;
    const auto r = std::from_chars(t.data() + int_begin, t.data() + int_end, u);
    if (r.ec == std::errc() && r.ptr == t.data() + int_end) {
      constexpr std::uint64_t min_magnitude = std::uint64_t{1} << 63;  // of INT64_MIN
      if (!negative) {
        s.kind = Kind::unsigned_;
        s.u = u;
      } else if (u < min_magnitude) {
        s.kind = Kind::integer;
        s.i = -static_cast<std::int64_t>(u);
      } else if (u == min_magnitude) {
        s.kind = Kind::integer;
        s.i = std::numeric_limits<std::int64_t>::min();
      }
    }
  }
  return true;
}

// ---- duplicate-key detection -------------------------------------------------------------

/// The keys of one open object (views into the parser's string buffer). Small objects use a
/// linear scan; large ones switch to a hash set so an object with many keys stays O(n).
class KeySet {
 public:
  void clear() {
    small_.clear();
    if (big_mode_) {
      if (big_.bucket_count() > 1024) {
        big_ = {};
      } else {
        big_.clear();
      }
      big_mode_ = false;
    }
  }

  /// Adds `key`; false when it was already there.
  bool insert(std::string_view key) {
    if (big_mode_) return big_.insert(key).second;
    for (const std::string_view k : small_) {
      if (k == key) return false;
    }
    if (small_.size() < small_limit) {
      small_.push_back(key);
      return true;
    }
    big_mode_ = true;
    big_.reserve(2 * small_limit);
    big_.insert(small_.begin(), small_.end());
    return big_.insert(key).second;
  }

 private:
  static constexpr std::size_t small_limit = 16;
  std::vector<std::string_view> small_;
  std::unordered_set<std::string_view> big_;
  bool big_mode_ = false;
};

// ---- the parser --------------------------------------------------------------------------

/// Parses one line with simdjson's On-Demand API: stage 1 (structure and UTF-8, SIMD) over the
/// whole line, then a walk over every value, so that nothing is skipped unchecked: each key is
/// decoded (repeated keys are found in every object, at any depth), each string is decoded
/// (escapes, lone surrogates), each number and literal is checked against the grammar from its
/// own text. Collects the top-level members of an object. No recursion: open containers are a
/// stack of iterators, so nesting depth only grows vectors.
class Parser {
 public:
  /// Parses `line`. False when it is not one JSON value or an object repeats a key; then
  /// `duplicate()` tells which, and `error()` holds the repeated key or the parser's message.
  bool run(std::string_view line) {
    reset();
    if (!load(line)) return false;
    if (auto e = parser_.iterate(simdjson::padded_string_view(buf_.get(), line.size(), buf_cap_))
                     .get(doc_)) {
      return fail(e);
    }
    doc_live_ = true;
    od::json_type type;
    if (auto e = doc_.type().get(type)) return fail(e);
    switch (type) {
      case od::json_type::object: {
        od::object o;
        if (auto e = doc_.get_object().get(o)) return fail(e);
        top_is_object_ = true;
        if (!open_object(o)) return false;
        break;
      }
      case od::json_type::array: {
        od::array a;
        if (auto e = doc_.get_array().get(a)) return fail(e);
        if (!open_array(a)) return false;
        break;
      }
      case od::json_type::string: {
        std::string_view s;
        if (auto e = doc_.get_string().get(s)) return fail(e);
        // Valid as a string (escapes checked): only whitespace may follow its closing quote.
        const std::string_view t = trim_json_space(line);
        std::size_t k = 1;
        while (k < t.size() && t[k] != '"') k += t[k] == '\\' ? 2 : 1;
        if (k + 1 != t.size()) {
          return fail_at("unexpected text after the JSON value",
                         buf_.get() + (t.data() - line.data()) + std::min(k + 1, t.size()));
        }
        return true;
      }
      default: {
        // A number or literal as the whole document: the trimmed line is the one token.
        const std::string_view t = trim_json_space(line);
        Slot ignored;
        if (!scalar(type, {buf_.get() + (t.data() - line.data()), t.size()}, ignored)) {
          return false;
        }
        return true;
      }
    }
    if (!walk()) return false;
    // Everything consumed: the document ends where its top-level value does.
    const auto rest = doc_.current_location();
    if (!rest.error()) return fail_at("unexpected text after the JSON value", rest.value_unsafe());
    return true;
  }

  /// Releases memory kept from an unusually long, deep or wide line.
  void trim() {
    if (buf_cap_ > big_line) {
      buf_.reset();
      buf_cap_ = 0;
      parser_ = od::parser{};
    }
    if (frames_.capacity() > 4096) std::vector<Frame>().swap(frames_);
    if (keysets_.size() > 256) keysets_.resize(64);
  }

  const Slot& slot(Field f) const { return slots_[f]; }
  bool duplicate() const noexcept { return duplicate_; }
  bool top_is_object() const noexcept { return top_is_object_; }
  /// The repeated key, or the parser's message.
  const std::string& error() const noexcept { return error_; }

 private:
  static constexpr std::size_t big_line = std::size_t{1} << 20;
  static constexpr std::size_t min_capacity = 4096;

  /// One open container: its iterator, and whether its current element was handled already
  /// (then the iterator is advanced before it is read again).
  struct Frame {
    od::object_iterator object;
    od::array_iterator array;
    bool is_object = false;
    bool started = false;
  };

  void reset() {
    for (auto& s : slots_) s.kind = Kind::absent;
    doc_live_ = false;
    frames_.clear();
    open_objects_ = 0;
    seen_ = 0;
    top_is_object_ = false;
    duplicate_ = false;
    error_.clear();
  }

  // Copies `line` into the padded buffer simdjson reads (it reads up to SIMDJSON_PADDING bytes
  // past the end) and sizes the parser: nesting can be as deep as the line is long.
  bool load(std::string_view line) {
    const std::size_t need = line.size() + simdjson::SIMDJSON_PADDING;
    if (need > buf_cap_) {
      const std::size_t cap = std::max(need, min_capacity + simdjson::SIMDJSON_PADDING);
      buf_.reset(new char[cap]);
      buf_cap_ = cap;
    }
    std::memcpy(buf_.get(), line.data(), line.size());
    std::memset(buf_.get() + line.size(), 0, simdjson::SIMDJSON_PADDING);
    if (line.size() > parser_.capacity() || line.size() + 2 > parser_.max_depth()) {
      const std::size_t cap = std::max(line.size(), min_capacity);
      if (auto e = parser_.allocate(cap, cap + 2)) return fail(e);
    }
    return true;
  }

  bool open_object(od::object& o) {
    od::object_iterator it;
    if (auto e = o.begin().get(it)) return fail(e);
    if (open_objects_ == keysets_.size()) keysets_.emplace_back();
    keysets_[open_objects_++].clear();
    Frame& f = frames_.emplace_back();
    f.object = it;
    f.is_object = true;
    return true;
  }

  bool open_array(od::array& a) {
    od::array_iterator it;
    if (auto e = a.begin().get(it)) return fail(e);
    Frame& f = frames_.emplace_back();
    f.array = it;
    return true;
  }

  // Visits every value under the open containers, depth first, until they are all closed.
  bool walk() {
    while (!frames_.empty()) {
      Frame& f = frames_.back();
      if (f.is_object) {
        if (f.started) ++f.object;
        f.started = true;
        if (!(f.object != od::object_iterator{})) {
          --open_objects_;
          frames_.pop_back();
          continue;
        }
        od::field field;
        if (auto e = (*f.object).get(field)) return fail(e);
        std::string_view key;
        if (auto e = field.unescaped_key().get(key)) return fail(e);
        Slot* s = nullptr;
        const Field id = frames_.size() == 1 && top_is_object_ ? lookup_field(key) : f_none;
        if (id != f_none) {
          // The fields of the event are told apart by a bit each; other keys by the key set.
          const unsigned bit = 1u << id;
          if ((seen_ & bit) != 0) return repeated(key);
          seen_ |= bit;
          s = &slots_[id];
        } else if (!keysets_[open_objects_ - 1].insert(key)) {
          return repeated(key);
        }
        if (!value(field.value(), s)) return false;  // may open a container: `f` is stale
      } else {
        if (f.started) ++f.array;
        f.started = true;
        if (!(f.array != od::array_iterator{})) {
          frames_.pop_back();
          continue;
        }
        od::value v;
        if (auto e = (*f.array).get(v)) return fail(e);
        if (!value(v, nullptr)) return false;
      }
    }
    return true;
  }

  // One value inside a container; `s` is its slot when it is a field of the event.
  bool value(od::value v, Slot* s) {
    od::json_type type;
    if (auto e = v.type().get(type)) return fail(e);
    switch (type) {
      case od::json_type::object: {
        od::object o;
        if (auto e = v.get_object().get(o)) return fail(e);
        if (s != nullptr) s->kind = Kind::object;
        return open_object(o);
      }
      case od::json_type::array: {
        od::array a;
        if (auto e = v.get_array().get(a)) return fail(e);
        if (s != nullptr) s->kind = Kind::array;
        return open_array(a);
      }
      case od::json_type::string: {
        std::string_view text;
        if (auto e = v.get_string().get(text)) return fail(e);
        if (s != nullptr) {
          s->kind = Kind::string;
          s->text = text;
        }
        return true;
      }
      default: {
        Slot ignored;
        return scalar(type, trim_json_space(v.raw_json_token()), s != nullptr ? *s : ignored);
      }
    }
  }

  // A number or literal from its text (simdjson only looked at its first byte).
  bool scalar(od::json_type type, std::string_view text, Slot& s) {
    switch (type) {
      case od::json_type::number:
        if (!read_number(text, s)) return fail_at("invalid number", text.data());
        return true;
      case od::json_type::boolean:
        if (!is(text, "true") && !is(text, "false")) return fail_at("invalid literal", text.data());
        s.kind = Kind::boolean;
        return true;
      case od::json_type::null:
        if (!is(text, "null")) return fail_at("invalid literal", text.data());
        s.kind = Kind::null;
        return true;
      default:
        return fail_at("unexpected value", text.data());
    }
  }

  bool repeated(std::string_view key) {
    duplicate_ = true;
    error_.assign(key);
    return false;
  }

  bool fail(simdjson::error_code e) {
    // Where the walk stopped; before it began (stage 1, the document's first value) simdjson
    // knows no position worth giving.
    const char* at = nullptr;
    if (doc_live_ && !frames_.empty()) {
      if (const auto loc = doc_.current_location(); !loc.error()) at = loc.value_unsafe();
    }
    std::string_view what = simdjson::error_message(e);
    if (what.ends_with('.')) what.remove_suffix(1);
    return fail_at(what, at);
  }

  // "<message> at byte N" (N 1-based in the line), printable ASCII only.
  bool fail_at(std::string_view what, const char* at) {
    if (what.size() > 160) what = what.substr(0, 160);
    error_.clear();
    for (const char ch : what) {
      const auto c = static_cast<unsigned char>(ch);
      error_ += (c < 0x20 || c >= 0x7F) ? '?' : ch;
    }
    if (at != nullptr && at >= buf_.get() && at <= buf_.get() + buf_cap_) {
      error_ += " at byte ";
      error_ += std::to_string(at - buf_.get() + 1);
    }
    return false;
  }

  od::parser parser_;
  od::document doc_;
  bool doc_live_ = false;  // doc_ is this line's document (else a stale one, or none)
  std::unique_ptr<char[]> buf_;
  std::size_t buf_cap_ = 0;
  Slot slots_[field_count];
  unsigned seen_ = 0;  // one bit per Field met among the top-level keys
  std::vector<Frame> frames_;
  std::vector<KeySet> keysets_;  // one per open object, reused across lines
  std::size_t open_objects_ = 0;
  bool top_is_object_ = false;
  bool duplicate_ = false;
  std::string error_;
};

// ---- building the event ------------------------------------------------------------------

// At most 64 bytes of `s`, cut on a UTF-8 boundary, for reasons that quote the input.
std::string_view clip(std::string_view s) noexcept {
  if (s.size() <= 64) return s;
  std::size_t n = 64;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

std::string missing(Field f) {
  std::string r = "invalid: missing field ";
  r += field_names[f];
  return r;
}

std::string bad(Field f, std::string_view what) {
  std::string r = "invalid: ";
  r += field_names[f];
  r += ": ";
  r += what;
  return r;
}

// Reads a string member into `out`; returns the reason when it is missing or not a string.
std::string read_string(const Parser& h, Field f, std::string& out) {
  const Slot& s = h.slot(f);
  if (s.kind == Kind::absent) return missing(f);
  if (s.kind != Kind::string) return bad(f, "must be a string");
  out.assign(s.text);
  return {};
}

std::string read_version(const Parser& h, std::int64_t& out) {
  const Slot& s = h.slot(f_version);
  switch (s.kind) {
    case Kind::absent:
      return missing(f_version);
    case Kind::integer:
      out = s.i;
      return {};
    case Kind::unsigned_:
      if (s.u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return bad(f_version, "out of range (max 9223372036854775807)");
      }
      out = static_cast<std::int64_t>(s.u);
      return {};
    case Kind::raw:
      if (s.text.find_first_of(".eE") != std::string_view::npos) {
        return bad(f_version, "must be an integer without fraction or exponent");
      }
      return bad(f_version, "out of range (max 9223372036854775807)");
    default:
      return bad(f_version, "must be a JSON integer");
  }
}

std::string read_decimal(const Parser& h, Field f, int max_fraction_digits, std::string_view max,
                         Decimal& out) {
  const Slot& s = h.slot(f);
  std::string_view text;
  switch (s.kind) {
    case Kind::absent:
      return missing(f);
    case Kind::string:
    case Kind::raw:
    case Kind::unsigned_:  // digits only: the text as written
      text = s.text;
      break;
    case Kind::integer:
      return bad(f, "sign not allowed");
    default:
      return bad(f, "must be a decimal string or number");
  }
  const auto parsed = Decimal::parse(text, max_fraction_digits);
  if (parsed) {
    out = parsed.value();
    return {};
  }
  switch (static_cast<errc>(parsed.error().value())) {
    case errc::decimal_sign:
      return bad(f, "sign not allowed");
    case errc::decimal_exponent:
      return bad(f, "exponent not allowed");
    case errc::decimal_fraction_digits: {
      std::string what = "too many fractional digits (max ";
      what += std::to_string(max_fraction_digits);
      what += ')';
      return bad(f, what);
    }
    case errc::decimal_range: {
      std::string what = "greater than ";
      what += max;
      return bad(f, what);
    }
    default:
      return bad(f, "not a plain decimal (digits, optionally '.' and digits)");
  }
}

// Turns the collected members into an event; returns the reason when a member is missing or of
// the wrong type or form. Range, length and version rules are left to `validate`.
std::string build_event(const Parser& h, TradeEvent& e) {
  if (auto r = read_string(h, f_trade_id, e.trade_id); !r.empty()) return r;
  if (auto r = read_version(h, e.version); !r.empty()) return r;
  {
    const Slot& s = h.slot(f_type);
    if (s.kind == Kind::absent) return missing(f_type);
    if (s.kind != Kind::string) return bad(f_type, "must be a string");
    if (is(s.text, "NEW")) {
      e.type = TradeType::New;
    } else if (is(s.text, "AMEND")) {
      e.type = TradeType::Amend;
    } else if (is(s.text, "CANCEL")) {
      e.type = TradeType::Cancel;
    } else {
      return bad(f_type, "must be NEW, AMEND or CANCEL");
    }
  }
  if (auto r = read_string(h, f_account, e.partition.account); !r.empty()) return r;
  if (auto r = read_string(h, f_book, e.partition.book); !r.empty()) return r;
  if (auto r = read_string(h, f_security, e.partition.security); !r.empty()) return r;
  if (e.type == TradeType::Cancel) return {};  // side, quantity and price are ignored

  {
    const Slot& s = h.slot(f_side);
    if (s.kind == Kind::absent) return missing(f_side);
    if (s.kind != Kind::string) return bad(f_side, "must be a string");
    if (is(s.text, "BUY")) {
      e.side = Side::Buy;
    } else if (is(s.text, "SELL")) {
      e.side = Side::Sell;
    } else {
      return bad(f_side, "must be BUY or SELL");
    }
  }
  if (auto r = read_decimal(h, f_quantity, 6, "1e12", e.quantity); !r.empty()) return r;
  if (auto r = read_decimal(h, f_price, 8, "1e9", e.price); !r.empty()) return r;
  return {};
}

// ---- output helpers ----------------------------------------------------------------------

template <class Int>
void append_int(std::string& out, Int v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace

bool is_blank_line(std::string_view line) noexcept {
  for (const char c : line) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

ParsedEvent decode_event(std::string_view line) {
  ParsedEvent out;
  if (line.substr(0, utf8_bom.size()) == utf8_bom) {
    out.reason = "invalid: byte-order mark inside the input";
    return out;
  }
  // A raw NUL is never legal JSON (not whitespace, and must be escaped inside strings).
  if (const auto nul = line.find('\0'); nul != std::string_view::npos) {
    out.reason = "invalid: not valid JSON: NUL byte at byte ";
    out.reason += std::to_string(nul + 1);
    return out;
  }
  thread_local Parser parser;
  // The slots point into the parser's buffers: its memory is released only once everything
  // was copied out of them, on every path.
  struct Trim {
    Parser& p;
    ~Trim() { p.trim(); }
  } trim_at_exit{parser};
  try {
    if (!parser.run(line)) {
      if (parser.duplicate()) {
        out.reason = "invalid: duplicate key ";
        out.reason += clip(parser.error());
      } else {
        out.reason = "invalid: not valid JSON: ";
        out.reason += parser.error();
      }
      return out;
    }
    if (!parser.top_is_object()) {
      out.reason = "invalid: not a JSON object";
      return out;
    }

    const Slot& id = parser.slot(f_trade_id);
    if (id.kind == Kind::string) out.echo_trade_id.emplace(id.text);
    const Slot& ver = parser.slot(f_version);
    if (ver.kind == Kind::integer) {
      out.echo_version = ver.i;
    } else if (ver.kind == Kind::unsigned_ &&
               ver.u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      out.echo_version = static_cast<std::int64_t>(ver.u);
    }

    TradeEvent e;
    if (auto r = build_event(parser, e); !r.empty()) {
      out.reason = std::move(r);
      return out;
    }
    out.event = std::move(e);
    return out;
  } catch (const std::exception& ex) {
    // Only resource exhaustion can get here; report the line, keep the replay going.
    out = ParsedEvent{};
    out.reason = "invalid: cannot parse line: ";
    out.reason += ex.what();
    return out;
  }
}

ParsedEvent parse_event(std::string_view line) {
  ParsedEvent out = decode_event(line);
  if (out.event) {
    if (auto r = validate(*out.event); !r.empty()) {
      out.event.reset();
      out.reason = std::move(r);
    }
  }
  return out;
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // start of the pending run of bytes copied as they are
  for (std::size_t k = 0; k < s.size(); ++k) {
    const auto c = static_cast<unsigned char>(s[k]);
    if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7F) continue;
    out.append(s.data() + run, k - run);
    run = k + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 0xF];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

void append_outcome_json(std::string& out, std::uint64_t line,
                         const std::optional<std::string>& trade_id,
                         const std::optional<std::int64_t>& version, const Outcome& outcome) {
  out += "{\"line\": ";
  append_int(out, line);
  out += ", \"trade_id\": ";
  if (trade_id) {
    append_json_string(out, *trade_id);
  } else {
    out += "null";
  }
  out += ", \"version\": ";
  if (version) {
    append_int(out, *version);
  } else {
    out += "null";
  }
  out += ", \"outcome\": ";
  append_json_string(out, to_string(outcome.kind));
  out += ", \"reason\": ";
  append_json_string(out, outcome.kind == OutcomeKind::Rejected ? std::string_view(outcome.reason)
                                                                : std::string_view());
  out += ", \"seq\": ";
  if (outcome.kind == OutcomeKind::Accepted) {
    append_int(out, outcome.seq);
  } else {
    out += "null";
  }
  out += "}\n";
}

void append_position_json(std::string& out, const PositionRow& row) {
  const Position& p = row.position;
  out += "{\"account\": ";
  append_json_string(out, row.partition.account);
  out += ", \"book\": ";
  append_json_string(out, row.partition.book);
  out += ", \"security\": ";
  append_json_string(out, row.partition.security);
  out += ", \"net_quantity\": ";
  append_json_string(out, p.net_quantity.to_string());
  out += ", \"bought_quantity\": ";
  append_json_string(out, p.bought_quantity.to_string());
  out += ", \"sold_quantity\": ";
  append_json_string(out, p.sold_quantity.to_string());
  out += ", \"bought_notional\": ";
  append_json_string(out, p.bought_notional.to_string());
  out += ", \"sold_notional\": ";
  append_json_string(out, p.sold_notional.to_string());
  out += ", \"live_trades\": ";
  append_int(out, p.live_trades);
  out += ", \"seq\": ";
  append_int(out, row.seq);
  out += "}\n";
}

namespace {

/// `"trade_id": ..., "version": ..., "type": ...` and, unless a CANCEL, side, quantity and price;
/// a CANCEL gets JSON nulls for those when `cancel_nulls`, nothing otherwise.
void append_trade_fields(std::string& out, const TradeEvent& e, bool cancel_nulls) {
  out += "\"trade_id\": ";
  append_json_string(out, e.trade_id);
  out += ", \"version\": ";
  append_int(out, e.version);
  out += ", \"type\": ";
  append_json_string(out, to_string(e.type));
  if (e.type == TradeType::Cancel) {
    if (cancel_nulls) out += ", \"side\": null, \"quantity\": null, \"price\": null";
    return;
  }
  out += ", \"side\": ";
  append_json_string(out, to_string(e.side));
  out += ", \"quantity\": ";
  append_json_string(out, e.quantity.to_string());
  out += ", \"price\": ";
  append_json_string(out, e.price.to_string());
}

/// `"account": ..., "book": ..., "security": ...`.
void append_partition_fields(std::string& out, const PartitionKey& p) {
  out += "\"account\": ";
  append_json_string(out, p.account);
  out += ", \"book\": ";
  append_json_string(out, p.book);
  out += ", \"security\": ";
  append_json_string(out, p.security);
}

}  // namespace

void append_event_json(std::string& out, const StoredEvent& se) {
  out += '{';
  append_partition_fields(out, se.event.partition);
  out += ", \"seq\": ";
  append_int(out, se.seq);
  out += ", ";
  append_trade_fields(out, se.event, /*cancel_nulls=*/true);
  out += "}\n";
}

void append_input_event_json(std::string& out, const TradeEvent& e) {
  out += '{';
  append_trade_fields(out, e, /*cancel_nulls=*/false);
  out += ", ";
  append_partition_fields(out, e.partition);
  out += '}';
}

}  // namespace tradecapture
