#include <tradecapture/event_codec.hpp>

#include <nlohmann/json.hpp>

#include <charconv>
#include <clocale>
#include <cstdint>
#include <exception>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace tradecapture {
namespace {

using json = nlohmann::json;

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

Field lookup_field(std::string_view key) noexcept {
  for (int f = 0; f < field_count; ++f) {
    if (field_names[f] == key) return static_cast<Field>(f);
  }
  return f_none;
}

/// The JSON type of a top-level member as the SAX parser delivered it.
enum class Kind : std::uint8_t {
  absent,
  null,
  boolean,
  integer,    ///< number_integer: written with a leading '-', within int64
  unsigned_,  ///< number_unsigned: no '-', fraction or exponent, within uint64
  raw,        ///< number_float: fraction, exponent, or an integer beyond the 64-bit ranges
  string,
  object,
  array,
};

struct Slot {
  Kind kind = Kind::absent;
  std::string text;  ///< the decoded string, or the raw number text for Kind::raw
  std::int64_t i = 0;
  std::uint64_t u = 0;
};

// ---- duplicate-key detection -------------------------------------------------------------

/// The keys of one open object. Small objects use a linear scan over reused strings; large ones
/// switch to a hash set so an object with many keys stays O(n).
class KeySet {
 public:
  void clear() {
    count_ = 0;
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
  bool insert(const std::string& key) {
    if (big_mode_) return big_.insert(key).second;
    for (std::size_t k = 0; k < count_; ++k) {
      if (small_[k] == key) return false;
    }
    if (count_ < small_limit) {
      if (count_ < small_.size()) {
        small_[count_].assign(key);
      } else {
        small_.push_back(key);
      }
      ++count_;
      return true;
    }
    big_mode_ = true;
    big_.reserve(2 * small_limit);
    for (std::size_t k = 0; k < count_; ++k) big_.insert(small_[k]);
    return big_.insert(key).second;
  }

 private:
  static constexpr std::size_t small_limit = 16;
  std::vector<std::string> small_;
  std::size_t count_ = 0;
  std::unordered_set<std::string> big_;
  bool big_mode_ = false;
};

// ---- the SAX handler ---------------------------------------------------------------------

/// Collects the top-level members of one line and checks every object for repeated keys. Keeps
/// O(depth) state, no recursion: nesting depth only grows a vector (objects) or a counter
/// (arrays).
class Handler {
 public:
  void reset() {
    for (auto& s : slots_) s.kind = Kind::absent;
    depth_ = 0;
    open_objects_ = 0;
    field_ = f_none;
    top_is_object_ = false;
    duplicate_ = false;
    overflow_ = false;
    error_.clear();
  }

  /// Releases memory kept from an unusually deep or wide line.
  void trim() {
    if (objects_.size() > 256) objects_.resize(64);
  }

  // nlohmann::json SAX interface.
  bool null() { return scalar(Kind::null); }
  bool boolean(bool) { return scalar(Kind::boolean); }
  bool number_integer(json::number_integer_t v) {
    if (Slot* s = member()) {
      s->kind = Kind::integer;
      s->i = v;
    }
    return true;
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (Slot* s = member()) {
      s->kind = Kind::unsigned_;
      s->u = v;
    }
    return true;
  }
  bool number_float(json::number_float_t, const json::string_t& raw) {
    if (Slot* s = member()) {
      s->kind = Kind::raw;
      s->text.assign(raw);
      // The lexer writes the locale's decimal point into its buffer; put the JSON '.' back.
      const std::lconv* lc = std::localeconv();
      const char point = (lc != nullptr && lc->decimal_point != nullptr && *lc->decimal_point)
                             ? *lc->decimal_point
                             : '.';
      if (point != '.') {
        for (char& c : s->text) {
          if (c == point) c = '.';
        }
      }
    }
    return true;
  }
  bool string(json::string_t& v) {
    if (Slot* s = member()) {
      s->kind = Kind::string;
      s->text.assign(v);
    }
    return true;
  }
  bool binary(json::binary_t&) { return scalar(Kind::null); }  // never called for JSON text
  bool start_object(std::size_t) {
    if (Slot* s = member()) s->kind = Kind::object;
    if (depth_ == 0) top_is_object_ = true;
    if (open_objects_ == objects_.size()) objects_.emplace_back();
    objects_[open_objects_++].clear();
    ++depth_;
    return true;
  }
  bool end_object() {
    --open_objects_;
    --depth_;
    return true;
  }
  bool start_array(std::size_t) {
    if (Slot* s = member()) s->kind = Kind::array;
    ++depth_;
    return true;
  }
  bool end_array() {
    --depth_;
    return true;
  }
  bool key(json::string_t& k) {
    if (!objects_[open_objects_ - 1].insert(k)) {
      duplicate_ = true;
      error_ = k;
      return false;
    }
    if (depth_ == 1) field_ = lookup_field(k);
    return true;
  }
  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception& ex) {
    error_ = short_parser_message(ex.what(), position);
    // 406: a number too large for a double (1e400). Valid JSON all the same; see parse_event.
    overflow_ = ex.id == 406;
    overflow_token_ = last_token;
    overflow_end_ = position;
    return false;
  }
  /// The last failure was a number overflowing a double: its text and where it ends.
  bool overflow() const noexcept { return overflow_; }
  const std::string& overflow_token() const noexcept { return overflow_token_; }
  std::size_t overflow_end() const noexcept { return overflow_end_; }

  const Slot& slot(Field f) const { return slots_[f]; }
  bool duplicate() const noexcept { return duplicate_; }
  bool top_is_object() const noexcept { return top_is_object_; }
  /// The repeated key, or the parser's message.
  const std::string& error() const noexcept { return error_; }

 private:
  // The slot a value at the current position belongs to, or null when it is nested, unknown or
  // not inside the top-level object.
  Slot* member() noexcept {
    if (depth_ != 1 || !top_is_object_ || field_ == f_none) return nullptr;
    return &slots_[field_];
  }
  bool scalar(Kind k) {
    if (Slot* s = member()) s->kind = k;
    return true;
  }

  // "[json.exception.parse_error.101] parse error at line 1, column 3: syntax error while
  // parsing value - invalid literal; last read: '...'" -> the part without the prefix and the
  // echoed input, printable ASCII only, with the byte position.
  static std::string short_parser_message(std::string_view what, std::size_t position) {
    if (!what.empty() && what.front() == '[') {
      const auto close = what.find("] ");
      if (close != std::string_view::npos) what.remove_prefix(close + 2);
    }
    if (const auto at = what.find("parse error at line "); at == 0) {
      const auto colon = what.find(": ");
      if (colon != std::string_view::npos) what.remove_prefix(colon + 2);
    }
    if (const auto last = what.find("; last read:"); last != std::string_view::npos) {
      what = what.substr(0, last);
    }
    if (what.size() > 160) what = what.substr(0, 160);
    std::string out;
    out.reserve(what.size() + 24);
    for (const char ch : what) {
      const auto c = static_cast<unsigned char>(ch);
      out += (c < 0x20 || c >= 0x7F) ? '?' : ch;
    }
    out += " at byte ";
    out += std::to_string(position);
    return out;
  }

  Slot slots_[field_count];
  bool overflow_ = false;
  std::string overflow_token_;
  std::size_t overflow_end_ = 0;
  std::vector<KeySet> objects_;  // one per open object, reused across lines
  std::size_t open_objects_ = 0;
  std::size_t depth_ = 0;  // open objects and arrays
  Field field_ = f_none;   // the top-level member whose value comes next
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
std::string read_string(const Handler& h, Field f, std::string& out) {
  const Slot& s = h.slot(f);
  if (s.kind == Kind::absent) return missing(f);
  if (s.kind != Kind::string) return bad(f, "must be a string");
  out = s.text;
  return {};
}

std::string read_version(const Handler& h, std::int64_t& out) {
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
      if (s.text.find_first_of(".eE") != std::string::npos) {
        return bad(f_version, "must be an integer without fraction or exponent");
      }
      return bad(f_version, "out of range (max 9223372036854775807)");
    default:
      return bad(f_version, "must be a JSON integer");
  }
}

std::string read_decimal(const Handler& h, Field f, int max_fraction_digits, std::string_view max,
                         Decimal& out) {
  const Slot& s = h.slot(f);
  std::string_view text;
  char digits[24];
  switch (s.kind) {
    case Kind::absent:
      return missing(f);
    case Kind::string:
    case Kind::raw:
      text = s.text;
      break;
    case Kind::unsigned_: {
      const auto r = std::to_chars(digits, digits + sizeof digits, s.u);
      text = std::string_view(digits, static_cast<std::size_t>(r.ptr - digits));
      break;
    }
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
std::string build_event(const Handler& h, TradeEvent& e) {
  if (auto r = read_string(h, f_trade_id, e.trade_id); !r.empty()) return r;
  if (auto r = read_version(h, e.version); !r.empty()) return r;
  {
    const Slot& s = h.slot(f_type);
    if (s.kind == Kind::absent) return missing(f_type);
    if (s.kind != Kind::string) return bad(f_type, "must be a string");
    if (s.text == "NEW") {
      e.type = TradeType::New;
    } else if (s.text == "AMEND") {
      e.type = TradeType::Amend;
    } else if (s.text == "CANCEL") {
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
    if (s.text == "BUY") {
      e.side = Side::Buy;
    } else if (s.text == "SELL") {
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

ParsedEvent parse_event(std::string_view line) {
  ParsedEvent out;
  if (line.substr(0, utf8_bom.size()) == utf8_bom) {
    out.reason = "invalid: byte-order mark inside the input";
    return out;
  }
  // nlohmann's lexer takes a NUL byte for the end of the input, so "{...}\0junk" would pass.
  // A raw NUL is never legal JSON (not whitespace, and must be escaped inside strings).
  if (const auto nul = line.find('\0'); nul != std::string_view::npos) {
    out.reason = "invalid: not valid JSON: NUL byte at byte ";
    out.reason += std::to_string(nul + 1);
    return out;
  }
  thread_local Handler handler;
  try {
    handler.reset();
    bool ok = json::sax_parse(line.data(), line.data() + line.size(), &handler,
                              json::input_format_t::json, /*strict=*/true);
    // A number beyond a double's range (1e400) is valid JSON that nlohmann refuses. Such a
    // number is never a valid value of ours (an exponent), so parse again with it replaced by
    // "-0.0": still a JSON number written with a fraction and a sign, so invalid as a decimal
    // or a version, and ignored like the original in an unknown field or a CANCEL's amounts.
    std::string patched;
    for (int round = 0; !ok && handler.overflow() && round < 64; ++round) {
      if (patched.empty()) patched.assign(line);
      const std::string token = handler.overflow_token();
      const auto end = std::min(handler.overflow_end(), patched.size());
      const auto at = token.empty() ? std::string::npos : patched.rfind(token, end);
      if (at == std::string::npos || at + token.size() > end + 1) break;
      patched.replace(at, token.size(), "-0.0");
      handler.reset();
      ok = json::sax_parse(patched.data(), patched.data() + patched.size(), &handler,
                           json::input_format_t::json, /*strict=*/true);
    }
    if (!ok) {
      if (handler.duplicate()) {
        out.reason = "invalid: duplicate key ";
        out.reason += clip(handler.error());
      } else {
        out.reason = "invalid: not valid JSON: ";
        out.reason += handler.error();
      }
      handler.trim();
      return out;
    }
    handler.trim();
    if (!handler.top_is_object()) {
      out.reason = "invalid: not a JSON object";
      return out;
    }

    const Slot& id = handler.slot(f_trade_id);
    if (id.kind == Kind::string) out.echo_trade_id = id.text;
    const Slot& ver = handler.slot(f_version);
    if (ver.kind == Kind::integer) {
      out.echo_version = ver.i;
    } else if (ver.kind == Kind::unsigned_ &&
               ver.u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      out.echo_version = static_cast<std::int64_t>(ver.u);
    }

    TradeEvent e;
    if (auto r = build_event(handler, e); !r.empty()) {
      out.reason = std::move(r);
      return out;
    }
    if (auto r = validate(e); !r.empty()) {
      out.reason = std::move(r);
      return out;
    }
    out.event = std::move(e);
    return out;
  } catch (const std::exception& ex) {
    // Only resource exhaustion can get here; report the line, keep the replay going.
    handler.trim();
    out = ParsedEvent{};
    out.reason = "invalid: cannot parse line: ";
    out.reason += ex.what();
    return out;
  }
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
