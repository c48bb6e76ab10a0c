#include <tradecapture/types.hpp>

#include <tradecapture/detail/validation_count.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace tradecapture {
namespace {

// splitmix64's finaliser: a cheap, well-distributed 64-bit mixer.
constexpr std::uint64_t mix(std::uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

constexpr std::uint64_t combine(std::uint64_t seed, std::uint64_t h) noexcept {
  return mix(seed + 0x9e3779b97f4a7c15ULL + h);
}

// A hash of a short string (an identifier, 1..64 bytes), eight bytes per multiply; the callers
// mix the result again. Hashes live in this process only (shards, in-memory tables), so the
// function may change; std::hash (murmur, byte-oriented tail) cost ~4x more on these keys.
std::uint64_t hash_bytes(std::string_view s) noexcept {
  const char* p = s.data();
  std::size_t n = s.size();
  std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ (std::uint64_t{n} * 0xff51afd7ed558ccdULL);
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    std::uint64_t w = 0;
    for (std::size_t i = 0; i < n; ++i)
      w |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    h = (h ^ w) * 0x94d049bb133111ebULL;
    h ^= h >> 32;
  }
  return h;
}

// True when `s` is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int extra = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      extra = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (end - p <= extra) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (int k = 2; k <= extra; ++k) {
      if (p[k] < 0x80 || p[k] > 0xBF) return false;
    }
    p += extra + 1;
  }
  return true;
}

// True when every byte of `value` is printable ASCII (0x20..0x7E), eight bytes at a time: the
// common case, which needs no further check.
bool printable_ascii(std::string_view value) noexcept {
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t highs = 0x8080808080808080ULL;
  const char* p = value.data();
  std::size_t n = value.size();
  while (n > 0) {
    std::uint64_t x = 0x4141414141414141ULL;  // 'A' pads a short tail
    const std::size_t k = n < 8 ? n : 8;
    std::memcpy(&x, p, k);
    p += k;
    n -= k;
    const std::uint64_t y = x ^ (ones * 0x7F);
    // A byte >= 0x80, a byte < 0x20 (exact as a whole: hasless), a byte == 0x7F (haszero of y).
    if (((x | ((x - ones * 0x20) & ~x) | ((y - ones) & ~y)) & highs) != 0) return false;
  }
  return true;
}

// Why `value` is not a legal identifier (1..64 bytes of UTF-8, no control characters), or null
// when it is one. The reason text is built only on failure (validate runs for every event).
const char* identifier_problem(std::string_view value) noexcept {
  if (value.empty()) return "must not be empty";
  if (value.size() > 64) return "longer than 64 bytes";
  if (printable_ascii(value)) return nullptr;
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F) return "contains a control character";
  }
  if (!is_valid_utf8(value)) return "not valid UTF-8";
  return nullptr;
}

// "" when `value` is a legal identifier, else the reason ("invalid: <field>: <problem>").
std::string check_identifier(std::string_view field, std::string_view value) {
  const char* problem = identifier_problem(value);
  if (problem == nullptr) return {};
  std::string reason = "invalid: ";
  reason += field;
  reason += ": ";
  reason += problem;
  return reason;
}

}  // namespace

std::string PartitionKey::encode() const {
  std::string out;
  out.reserve(account.size() + book.size() + security.size() + 12);
  for (const std::string* part : {&account, &book, &security}) {
    out += std::to_string(part->size());
    out += ':';
    out += *part;
  }
  return out;
}

std::string PartitionKey::to_string() const {
  std::string out;
  out.reserve(account.size() + book.size() + security.size() + 2);
  bool first = true;
  for (const std::string* part : {&account, &book, &security}) {
    if (!first) out += '/';
    first = false;
    for (const char c : *part) {
      if (c == '/' || c == '\\') out += '\\';
      out += c;
    }
  }
  return out;
}

std::size_t PartitionKeyHash::operator()(const PartitionKey& k) const noexcept {
  std::uint64_t h = mix(hash_bytes(k.account));
  h = combine(h, hash_bytes(k.book));
  h = combine(h, hash_bytes(k.security));
  return static_cast<std::size_t>(h);
}

std::size_t IdempotencyKeyHash::operator()(const IdempotencyKey& k) const noexcept {
  const std::uint64_t h = mix(hash_bytes(k.trade_id));
  return static_cast<std::size_t>(combine(h, mix(static_cast<std::uint64_t>(k.version))));
}

std::string_view to_string(TradeType t) noexcept {
  switch (t) {
    case TradeType::New:
      return "NEW";
    case TradeType::Amend:
      return "AMEND";
    case TradeType::Cancel:
      return "CANCEL";
  }
  return "UNKNOWN";
}

std::string_view to_string(Side s) noexcept {
  switch (s) {
    case Side::Buy:
      return "BUY";
    case Side::Sell:
      return "SELL";
  }
  return "UNKNOWN";
}

std::string_view to_string(OutcomeKind k) noexcept {
  switch (k) {
    case OutcomeKind::Accepted:
      return "ACCEPTED";
    case OutcomeKind::Duplicate:
      return "DUPLICATE";
    case OutcomeKind::Stale:
      return "STALE";
    case OutcomeKind::Rejected:
      return "REJECTED";
  }
  return "UNKNOWN";
}

bool TradeEvent::same_content(const TradeEvent& other) const noexcept {
  if (type != other.type || partition != other.partition) return false;
  if (type == TradeType::Cancel) return true;
  return side == other.side && quantity == other.quantity && price == other.price;
}

namespace detail {
namespace {
// The test hook of detail/validation_count.hpp. The default TLS model: a static core makes it one
// instruction; a shared core may also be dlopen'ed by a host (initial-exec would then need room
// in the static TLS block).
thread_local std::uint64_t validations = 0;
}  // namespace

std::uint64_t validations_on_this_thread() noexcept { return validations; }
}  // namespace detail

std::string validate(const TradeEvent& e) {
  ++detail::validations;
  if (identifier_problem(e.trade_id) != nullptr) return check_identifier("trade_id", e.trade_id);
  if (e.type != TradeType::New && e.type != TradeType::Amend && e.type != TradeType::Cancel) {
    return "invalid: type: must be NEW, AMEND or CANCEL";
  }
  if (e.version < 1) return "invalid: version: must be at least 1";
  if (e.type == TradeType::New && e.version != 1) {
    return "invalid: version: NEW must have version 1";
  }
  if (e.type == TradeType::Amend && e.version < 2) {
    return "invalid: version: AMEND must have version >= 2";
  }
  if (e.type == TradeType::Cancel && e.version < 2) {
    return "invalid: version: CANCEL must have version >= 2";
  }
  if (identifier_problem(e.partition.account) != nullptr)
    return check_identifier("account", e.partition.account);
  if (identifier_problem(e.partition.book) != nullptr)
    return check_identifier("book", e.partition.book);
  if (identifier_problem(e.partition.security) != nullptr)
    return check_identifier("security", e.partition.security);
  if (e.type == TradeType::Cancel) return {};

  if (e.side != Side::Buy && e.side != Side::Sell) return "invalid: side: must be BUY or SELL";

  const Decimal::rep qty = e.quantity.units();
  if (qty <= 0) return "invalid: quantity: must be greater than 0";
  if (qty > Decimal::from_int(1'000'000'000'000).units()) {
    return "invalid: quantity: greater than 1e12";
  }
  if (qty % Decimal::pow10(Decimal::scale - 6) != 0) {
    return "invalid: quantity: too many fractional digits (max 6)";
  }

  const Decimal::rep price = e.price.units();
  if (price < 0) return "invalid: price: must not be negative";
  if (price > Decimal::from_int(1'000'000'000).units()) return "invalid: price: greater than 1e9";
  if (price % Decimal::pow10(Decimal::scale - 8) != 0) {
    return "invalid: price: too many fractional digits (max 8)";
  }
  return {};
}

}  // namespace tradecapture
