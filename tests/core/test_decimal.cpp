// Decimal: parsing (spec section 1), canonical text and exact checked arithmetic.
#include <doctest/doctest.h>

#include <tradecapture/decimal.hpp>

#include <boost/multiprecision/cpp_int.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

using tradecapture::Decimal;
using tradecapture::errc;

namespace {

Decimal dec(std::string_view text, int max_fraction_digits = Decimal::scale) {
  auto r = Decimal::parse(text, max_fraction_digits);
  REQUIRE_MESSAGE(r.has_value(), "failed to parse: ", std::string(text));
  return r.value();
}

// The error of parsing `text`, or 0 when it parses.
int parse_error(std::string_view text, int max_fraction_digits = Decimal::scale) {
  auto r = Decimal::parse(text, max_fraction_digits);
  return r ? 0 : r.error().value();
}

int code(errc e) { return static_cast<int>(e); }

std::string str(const tradecapture::result<Decimal>& r) {
  REQUIRE(r.has_value());
  return r.value().to_string();
}

}  // namespace

TEST_CASE("decimal: valid plain notation") {
  CHECK(dec("100").units() == Decimal::rep(100) * Decimal::one_units);
  CHECK(dec("187.25").to_string() == "187.25");
  CHECK(dec("0.5").units() == Decimal::rep(50'000'000'000'000));
  CHECK(dec("007").to_string() == "7");
  CHECK(dec("007") == Decimal::from_int(7));
  CHECK(dec("0").is_zero());
  CHECK(dec("0.0").is_zero());
  CHECK(dec("000").to_string() == "0");
  CHECK(dec("0.00000000000001").units() == 1);  // 14 fractional digits, the scale
  CHECK(dec("1.50") == dec("1.5"));             // numeric equality
  CHECK(dec("12.34000") == dec("12.34"));
  CHECK(dec("999999999999.999999").to_string() == "999999999999.999999");
  CHECK(dec("99999999999999999999999.99999999999999").to_string() ==
        "99999999999999999999999.99999999999999");
}

TEST_CASE("decimal: leading zeros do not count against the range") {
  const std::string zeros(1000, '0');
  CHECK(dec(zeros + "1") == Decimal::from_int(1));
  CHECK(dec(zeros + "1000000000000000000000000") == Decimal::max());
  CHECK(dec(zeros).is_zero());
  CHECK(dec(zeros + "." + "5").to_string() == "0.5");
}

TEST_CASE("decimal: syntax errors") {
  for (const char* text : {"",    ".",   ".5",       "5.",  "0x10",  " 1",   "1 ",   "1.2.3", "NaN",
                           "nan", "inf", "Infinity", "1,5", "1_000", "abc",  "1.5x", "1..5",  "\t1",
                           "1\n", "1-",  "1+2",      "e3",  "٣",     "1.-5", "0b1"}) {
    INFO("text: '" << text << "'");
    CHECK(parse_error(text) == code(errc::decimal_syntax));
  }
  CHECK(parse_error(std::string_view("1\0", 2)) == code(errc::decimal_syntax));
}

TEST_CASE("decimal: signs are errors, including -0 and +0") {
  for (const char* text : {"+1", "-0", "-1", "+0", "-0.5", "-", "+", "--1", "-1e3", "+.5"}) {
    INFO("text: '" << text << "'");
    CHECK(parse_error(text) == code(errc::decimal_sign));
  }
}

TEST_CASE("decimal: exponents are errors") {
  for (const char* text : {"1e3", "1E3", "1.0e2", "1e-3", "1E+3", "1.5E0", "0e0"}) {
    INFO("text: '" << text << "'");
    CHECK(parse_error(text) == code(errc::decimal_exponent));
  }
}

TEST_CASE("decimal: fractional digits are counted as written, trailing zeros included") {
  CHECK(parse_error("1.000000", 6) == 0);
  CHECK(parse_error("1.0000000", 6) == code(errc::decimal_fraction_digits));
  CHECK(parse_error("0.1234567", 6) == code(errc::decimal_fraction_digits));
  CHECK(parse_error("0.12345678", 8) == 0);
  CHECK(parse_error("0.123456789", 8) == code(errc::decimal_fraction_digits));
  CHECK(parse_error("1.00000000", 8) == 0);
  CHECK(parse_error("1.000000000", 8) == code(errc::decimal_fraction_digits));
  CHECK(parse_error("1", 0) == 0);
  CHECK(parse_error("1.0", 0) == code(errc::decimal_fraction_digits));
  CHECK(parse_error("0.00000000000001") == 0);
  CHECK(parse_error("0.000000000000010") == code(errc::decimal_fraction_digits));
  CHECK(parse_error("0." + std::string(5000, '0')) == code(errc::decimal_fraction_digits));
}

TEST_CASE("decimal: range boundary 1e24") {
  CHECK(dec("1000000000000000000000000") == Decimal::max());
  CHECK(dec("1000000000000000000000000.00000000000000") == Decimal::max());
  CHECK(Decimal::max().to_string() == "1000000000000000000000000");
  CHECK(parse_error("1000000000000000000000000.00000000000001") == code(errc::decimal_range));
  CHECK(parse_error("1000000000000000000000001") == code(errc::decimal_range));
  CHECK(parse_error("10000000000000000000000000") == code(errc::decimal_range));
  CHECK(parse_error(std::string(100, '9')) == code(errc::decimal_range));
  CHECK(parse_error(std::string(100, '9') + ".5") == code(errc::decimal_range));
  CHECK(dec("999999999999999999999999.99999999999999").units() == Decimal::max_units - 1);
}

TEST_CASE("decimal: from_units range") {
  CHECK(Decimal::from_units(Decimal::max_units).has_value());
  CHECK(Decimal::from_units(-Decimal::max_units).has_value());
  CHECK(!Decimal::from_units(Decimal::max_units + 1).has_value());
  CHECK(!Decimal::from_units(-Decimal::max_units - 1).has_value());
}

TEST_CASE("decimal: addition and subtraction are exact") {
  CHECK(checked_add(dec("0.1"), dec("0.2")).value() == dec("0.3"));
  CHECK(str(checked_add(dec("0.1"), dec("0.2"))) == "0.3");
  CHECK(str(checked_sub(dec("0.3"), dec("0.1"))) == "0.2");
  CHECK(str(checked_sub(dec("1"), dec("1.00000000000001"))) == "-0.00000000000001");
  CHECK(str(checked_add(dec("999999999999999999999999.99999999999999"), dec("0.00000000000001"))) ==
        "1000000000000000000000000");
}

TEST_CASE("decimal: add/sub overflow is out_of_range") {
  const Decimal tiny = dec("0.00000000000001");
  auto r = checked_add(Decimal::max(), tiny);
  REQUIRE(!r.has_value());
  CHECK(r.error() == errc::out_of_range);
  const Decimal min = checked_sub(Decimal(), Decimal::max()).value();
  CHECK(min.to_string() == "-1000000000000000000000000");
  auto s = checked_sub(min, tiny);
  REQUIRE(!s.has_value());
  CHECK(s.error() == errc::out_of_range);
  CHECK(!checked_add(Decimal::max(), Decimal::max()).has_value());
  CHECK(!checked_sub(Decimal::max(), min).has_value());
  CHECK(checked_sub(Decimal::max(), Decimal::max()).value().is_zero());
}

TEST_CASE("decimal: multiplication is exact") {
  CHECK(str(checked_mul(dec("1000000000000"), dec("1000000000"))) == "1000000000000000000000");
  // (1e12 - 1e-6) * (1e9 - 1e-8) = 1e21 - 1e4 - 1e3 + 1e-14
  CHECK(str(checked_mul(dec("999999999999.999999"), dec("999999999.99999999"))) ==
        "999999999999999989000.00000000000001");
  CHECK(str(checked_mul(dec("100"), dec("187.25"))) == "18725");
  CHECK(str(checked_mul(dec("1.5"), dec("1.5"))) == "2.25");
  CHECK(str(checked_mul(dec("0.000001"), dec("0.00000001"))) == "0.00000000000001");
  CHECK(str(checked_mul(dec("0.00000000000005"), dec("0.2"))) == "0.00000000000001");
  CHECK(str(checked_mul(dec("0"), Decimal::max())) == "0");
  CHECK(str(checked_mul(Decimal::max(), dec("1"))) == "1000000000000000000000000");
  CHECK(str(checked_mul(Decimal::from_int(-2), dec("3"))) == "-6");
  CHECK(str(checked_mul(Decimal::from_int(-2), Decimal::from_int(-3))) == "6");
  CHECK(str(checked_mul(dec("0.5"), checked_sub(Decimal(), dec("0.5")).value())) == "-0.25");
  // 5^50 units * 2^40 units: the factors overflow 128 bits before 10^14 is divided out.
  Decimal::rep five50 = 1;
  for (int k = 0; k < 50; ++k) five50 *= 5;
  const Decimal a = Decimal::from_units(five50).value();
  const Decimal b = Decimal::from_units(Decimal::rep(1) << 40).value();
  CHECK(a.to_string() == "888178419700125232338.90533447265625");
  CHECK(str(checked_mul(a, b)) == "9765625000000000000");
}

TEST_CASE("decimal: multiplication out of range") {
  auto big = checked_mul(dec("1000000000000"), dec("10000000000000"));  // 1e25
  REQUIRE(!big.has_value());
  CHECK(big.error() == errc::out_of_range);
  CHECK(!checked_mul(Decimal::max(), Decimal::max()).has_value());
  CHECK(!checked_mul(Decimal::max(), dec("1.00000000000001")).has_value());
  CHECK(checked_mul(dec("1000000000000"), dec("1000000000000")).value() == Decimal::max());
  // would need 15 fractional digits: never rounded
  auto fine = checked_mul(dec("0.00000001"), dec("0.0000001"));
  REQUIRE(!fine.has_value());
  CHECK(fine.error() == errc::out_of_range);
  CHECK(!checked_mul(dec("0.00000000000001"), dec("0.5")).has_value());
}

TEST_CASE("decimal: canonical to_string") {
  CHECK(Decimal().to_string() == "0");
  CHECK(Decimal::from_int(100).to_string() == "100");
  CHECK(Decimal::from_int(-5).to_string() == "-5");
  CHECK(dec("0.50").to_string() == "0.5");
  CHECK(dec("10.10").to_string() == "10.1");
  CHECK(Decimal::from_units(1).value().to_string() == "0.00000000000001");
  CHECK(Decimal::from_units(-1).value().to_string() == "-0.00000000000001");
  CHECK(checked_sub(Decimal(), dec("12.00000001")).value().to_string() == "-12.00000001");
  CHECK(Decimal::max().to_string() == "1000000000000000000000000");
  CHECK(Decimal::from_units(-Decimal::max_units).value().to_string() ==
        "-1000000000000000000000000");
  CHECK(Decimal::from_units(Decimal::max_units - 1).value().to_string() ==
        "999999999999999999999999.99999999999999");
  for (const char* text : {"0", "1", "187.25", "0.00000001", "123456789012.345678",
                           "1000000000000000000000000", "0.10000000000001"}) {
    CHECK(dec(dec(text).to_string()) == dec(text));
    CHECK(dec(text).to_string() == text);
  }
}

TEST_CASE("decimal: checked_mul equals exact big-integer arithmetic") {
  // Every path of checked_mul (the quantity-times-price fast path either way round, and the
  // general one) against the exact product: units(a) * units(b) / 10^14 when that division is
  // exact and the result within range, else out_of_range.
  using big = boost::multiprecision::cpp_int;
  std::mt19937_64 rng(20261205);
  auto random_decimal = [&](int max_int_digits, int frac_digits) {
    std::uniform_int_distribution<int> digits(0, max_int_digits);
    std::string text;
    const int n = digits(rng);
    for (int i = 0; i < std::max(n, 1); ++i) text += static_cast<char>('0' + rng() % 10);
    if (frac_digits > 0) {
      text += '.';
      for (int i = 0; i < frac_digits; ++i) text += static_cast<char>('0' + rng() % 10);
    }
    Decimal d = dec(text);
    return rng() % 4 == 0 ? checked_sub(Decimal(), d).value() : d;
  };
  const big scale_factor = big(Decimal::one_units);
  const big limit = big(Decimal::max_units);
  auto to_big = [](Decimal d) {
    const Decimal::rep u = d.units();
    const bool negative = u < 0;
    unsigned __int128 m = negative ? 0 - static_cast<unsigned __int128>(u)
                                   : static_cast<unsigned __int128>(u);
    big b = big(static_cast<std::uint64_t>(m >> 64));
    b <<= 64;
    b += big(static_cast<std::uint64_t>(m));
    return negative ? big(-b) : b;
  };
  int checked = 0, in_range = 0;
  for (int i = 0; i < 20000; ++i) {
    const Decimal a = random_decimal(13, static_cast<int>(rng() % 15));
    const Decimal b = random_decimal(12, static_cast<int>(rng() % 15));
    const big product = to_big(a) * to_big(b);
    const auto got = checked_mul(a, b);
    INFO(a.to_string(), " * ", b.to_string());
    if (product % scale_factor != 0 || abs(product / scale_factor) > limit) {
      REQUIRE_FALSE(got.has_value());
      CHECK(got.error() == errc::out_of_range);
    } else {
      REQUIRE(got.has_value());
      CHECK(to_big(got.value()) == product / scale_factor);
      ++in_range;
    }
    ++checked;
  }
  CHECK(checked == 20000);
  CHECK(in_range > 5000);  // the generator reaches both outcomes
}
