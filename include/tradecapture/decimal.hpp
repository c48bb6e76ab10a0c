#pragma once
/// \file decimal.hpp
/// An exact fixed-point decimal: 14 fractional digits in a 128-bit integer, no binary floating point.

#include <tradecapture/error.hpp>

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

namespace tradecapture {

namespace detail {
/// 10^n as a 128-bit integer, for 0 <= n <= 38.
constexpr __int128 pow10_i128(int n) noexcept {
  __int128 r = 1;
  for (int i = 0; i < n; ++i) r *= 10;
  return r;
}
}  // namespace detail

/// An exact decimal number with 14 fractional digits, held as a signed 128-bit count of 1e-14.
///
/// The supported range is |value| <= 1e24 (`Decimal::max()`); every operation that would leave it
/// fails with `errc::out_of_range` instead of wrapping or rounding. Quantities (6 fractional
/// digits) times prices (8 fractional digits) are exact. Instances are plain values.
class Decimal {
 public:
  using rep = __int128;
  /// Number of fractional digits kept.
  static constexpr int scale = 14;

  constexpr Decimal() = default;

  /// 10^n as a `rep`, for 0 <= n <= 38.
  static constexpr rep pow10(int n) noexcept { return detail::pow10_i128(n); }
  /// The count of 1e-14 units in one.
  static constexpr rep one_units = detail::pow10_i128(scale);
  /// The largest magnitude in units (1e24).
  static constexpr rep max_units = detail::pow10_i128(38);

  /// The value `units * 1e-14`; fails when outside the supported range.
  static result<Decimal> from_units(rep units) noexcept {
    if (units > max_units || units < -max_units) return errc::out_of_range;
    return Decimal(units);
  }
  /// The integer `v`.
  static constexpr Decimal from_int(std::int64_t v) noexcept { return Decimal(rep(v) * one_units); }
  /// The largest supported value, 1e24.
  static constexpr Decimal max() noexcept { return Decimal(max_units); }

  /// Parses unsigned plain notation: digits, optionally '.' and at least one digit. Leading zeros
  /// are allowed ("007"); signs, exponents, spaces, a bare or leading '.', and more than
  /// `max_fraction_digits` fractional digits (trailing zeros count) are errors.
  static result<Decimal> parse(std::string_view text, int max_fraction_digits = scale) noexcept;

  /// The count of 1e-14 units.
  constexpr rep units() const noexcept { return units_; }
  /// True when the value is zero.
  constexpr bool is_zero() const noexcept { return units_ == 0; }
  /// True when the value is below zero.
  constexpr bool is_negative() const noexcept { return units_ < 0; }

  /// Canonical plain notation: optional '-', integer digits, and '.' plus fractional digits
  /// without trailing zeros only when the value is not an integer ("0", "12.5", "-0.00000001").
  std::string to_string() const;

  /// Exact sum; `errc::out_of_range` past the supported range.
  friend result<Decimal> checked_add(Decimal a, Decimal b) noexcept {
    rep r;
    if (__builtin_add_overflow(a.units_, b.units_, &r)) return errc::out_of_range;
    return from_units(r);
  }
  /// Exact difference; `errc::out_of_range` past the supported range.
  friend result<Decimal> checked_sub(Decimal a, Decimal b) noexcept {
    rep r;
    if (__builtin_sub_overflow(a.units_, b.units_, &r)) return errc::out_of_range;
    return from_units(r);
  }
  /// Exact product; `errc::out_of_range` when the result is out of range or would need more than
  /// 14 fractional digits.
  friend result<Decimal> checked_mul(Decimal a, Decimal b) noexcept;

  friend constexpr auto operator<=>(const Decimal&, const Decimal&) = default;
  friend constexpr bool operator==(const Decimal&, const Decimal&) = default;

 private:
  constexpr explicit Decimal(rep units) noexcept : units_(units) {}
  rep units_ = 0;
};

}  // namespace tradecapture
