#include <tradecapture/decimal.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace tradecapture {
namespace {

using urep = unsigned __int128;

constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Removes up to `n` factors `f` from `x` and returns how many were removed.
int strip_factor(urep& x, unsigned f, int n) noexcept {
  int removed = 0;
  while (removed < n && x % f == 0) {
    x /= f;
    ++removed;
  }
  return removed;
}

}  // namespace

result<Decimal> Decimal::parse(std::string_view text, int max_fraction_digits) noexcept {
  // More than `scale` digits can never be held, whatever the caller allows.
  const int max_frac = std::clamp(max_fraction_digits, 0, scale);
  if (text.empty()) return errc::decimal_syntax;
  if (text.front() == '+' || text.front() == '-') return errc::decimal_sign;

  std::size_t i = 0;
  const std::size_t n = text.size();
  // Integer part: at least one digit. Leading zeros are skipped before accumulating, so any
  // number of them is fine; more than 25 significant digits is certainly above 1e24.
  const std::size_t int_begin = i;
  while (i < n && is_digit(text[i])) ++i;
  const std::size_t int_end = i;
  if (int_end == int_begin) {
    return errc::decimal_syntax;  // empty integer part: ".5", "x", " 1", ...
  }
  std::size_t frac_begin = i;
  std::size_t frac_end = i;
  if (i < n && text[i] == '.') {
    ++i;
    frac_begin = i;
    while (i < n && is_digit(text[i])) ++i;
    frac_end = i;
    if (frac_end == frac_begin) {
      if (i < n && (text[i] == 'e' || text[i] == 'E')) return errc::decimal_exponent;
      return errc::decimal_syntax;  // "5." or "5.x"
    }
  }
  if (i < n) {
    if (text[i] == 'e' || text[i] == 'E') return errc::decimal_exponent;
    return errc::decimal_syntax;
  }

  const auto frac_digits = static_cast<int>(frac_end - frac_begin);
  if (frac_end - frac_begin > static_cast<std::size_t>(max_frac)) {
    return errc::decimal_fraction_digits;
  }

  std::size_t sig = int_begin;
  while (sig + 1 < int_end && text[sig] == '0') ++sig;
  if (int_end - sig > 25) return errc::decimal_range;
  rep integer = 0;
  for (std::size_t k = sig; k < int_end; ++k) integer = integer * 10 + (text[k] - '0');
  if (integer > pow10(24)) return errc::decimal_range;

  rep fraction = 0;
  for (std::size_t k = frac_begin; k < frac_end; ++k) fraction = fraction * 10 + (text[k] - '0');
  const rep units = integer * one_units + fraction * pow10(scale - frac_digits);
  if (units > max_units) return errc::decimal_range;
  return Decimal(units);
}

std::string Decimal::to_string() const {
  const bool negative = units_ < 0;
  urep magnitude = negative ? urep(0) - static_cast<urep>(units_) : static_cast<urep>(units_);
  const urep one = static_cast<urep>(one_units);
  urep integer = magnitude / one;
  static_assert(one_units - 1 <= std::numeric_limits<std::uint64_t>::max());
  // Below 10^scale: 64-bit arithmetic (a division by 10 is then a multiplication, not a call).
  auto fraction = static_cast<std::uint64_t>(magnitude % one);

  char buffer[64];
  char* end = buffer + sizeof buffer;
  char* p = end;
  if (fraction != 0) {
    int digits = scale;
    while (fraction % 10 == 0) {
      fraction /= 10;
      --digits;
    }
    for (int k = 0; k < digits; ++k) {
      *--p = static_cast<char>('0' + static_cast<int>(fraction % 10));
      fraction /= 10;
    }
    *--p = '.';
  }
  // The integer part in 64-bit arithmetic as soon as it fits (at once for |v| < 1.8e19).
  while (integer > std::numeric_limits<std::uint64_t>::max()) {
    *--p = static_cast<char>('0' + static_cast<int>(integer % 10));
    integer /= 10;
  }
  auto small = static_cast<std::uint64_t>(integer);
  do {
    *--p = static_cast<char>('0' + static_cast<int>(small % 10));
    small /= 10;
  } while (small != 0);
  if (negative) *--p = '-';
  return std::string(p, end);
}

result<Decimal> checked_mul(Decimal a, Decimal b) noexcept {
  using rep = Decimal::rep;
  if (a.units_ == 0 || b.units_ == 0) return Decimal();
  const bool negative = (a.units_ < 0) != (b.units_ < 0);
  urep x = a.units_ < 0 ? urep(0) - static_cast<urep>(a.units_) : static_cast<urep>(a.units_);
  urep y = b.units_ < 0 ? urep(0) - static_cast<urep>(b.units_) : static_cast<urep>(b.units_);

  // Fast path, the common case of a quantity (at most 6 fractional digits) times a price (at
  // most 8), either way round: x = a * 10^8 and y = b * 10^6 make the product's units exactly
  // a * b, with two divisions instead of stripping factors one division at a time.
  constexpr urep e6 = 1'000'000, e8 = 100'000'000;
  for (int swap = 0; swap < 2; ++swap) {
    const urep& u = swap == 0 ? x : y;
    const urep& v = swap == 0 ? y : x;
    if (u % e8 != 0 || v % e6 != 0) continue;
    urep product;
    if (__builtin_mul_overflow(u / e8, v / e6, &product) ||
        product > static_cast<urep>(Decimal::max_units)) {
      return errc::out_of_range;
    }
    return Decimal(negative ? -static_cast<rep>(product) : static_cast<rep>(product));
  }

  // x * y * 1e-28 is the exact product; its units are x * y / 10^14. Strip decimal zeros first,
  // then cancel the remaining 2s and 5s of 10^14 against the factors before multiplying, so the
  // multiplication only overflows when the result itself is far beyond the range.
  int exponent = -Decimal::scale;  // result units = x * y * 10^exponent
  exponent += strip_factor(x, 10, 64);
  exponent += strip_factor(y, 10, 64);
  if (exponent < 0) {
    const int need = -exponent;
    const int twos = strip_factor(x, 2, need);
    if (twos + strip_factor(y, 2, need - twos) != need) return errc::out_of_range;
    const int fives = strip_factor(x, 5, need);
    if (fives + strip_factor(y, 5, need - fives) != need) return errc::out_of_range;
    exponent = 0;
  }
  urep product;
  if (__builtin_mul_overflow(x, y, &product)) return errc::out_of_range;
  const urep limit = static_cast<urep>(Decimal::max_units);
  for (; exponent > 0; --exponent) {
    if (product > limit / 10) return errc::out_of_range;
    product *= 10;
  }
  if (product > limit) return errc::out_of_range;
  const rep units = negative ? -static_cast<rep>(product) : static_cast<rep>(product);
  return Decimal(units);
}

}  // namespace tradecapture
