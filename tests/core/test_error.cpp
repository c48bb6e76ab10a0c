// The error codes' numbers are part of the ABI (a host may store or compare them), and every
// code the library produces has a message and a retry class.
#include <tradecapture/error.hpp>

#include <doctest/doctest.h>

#include <string>

using tradecapture::errc;
using tradecapture::retry_class;
using tradecapture::classify;

TEST_CASE("errc: values are stable, retired ones stay unused") {
  CHECK(static_cast<int>(errc::decimal_syntax) == 2);
  CHECK(static_cast<int>(errc::out_of_range) == 7);
  CHECK(static_cast<int>(errc::store_unavailable) == 9);
  CHECK(static_cast<int>(errc::fenced_off) == 13);
  CHECK(static_cast<int>(errc::stopped) == 19);
  CHECK(static_cast<int>(errc::internal) == 22);
  CHECK(static_cast<int>(errc::deadlock) == 23);
  CHECK(static_cast<int>(errc::predecessor_failed) == 26);
  CHECK(static_cast<int>(errc::source_abandoned) == 28);
  for (int retired : {1, 20, 21}) {
    CHECK(make_error_code(static_cast<errc>(retired)).message().find("unknown") !=
          std::string::npos);
  }
}

TEST_CASE("errc: every code has its own message and a retry class") {
  for (int v = 2; v <= static_cast<int>(errc::source_abandoned); ++v) {
    if (v == 20 || v == 21) continue;
    const auto ec = make_error_code(static_cast<errc>(v));
    INFO(v);
    CHECK(ec.message().find("unknown") == std::string::npos);
  }
  CHECK(classify(make_error_code(errc::store_unavailable)) == retry_class::retry_now);
  CHECK(classify(make_error_code(errc::fenced_off)) == retry_class::retry_higher);
  CHECK(classify(make_error_code(errc::deadline_exceeded)) == retry_class::none);
  CHECK(classify(make_error_code(errc::replayed)) == retry_class::none);
  CHECK(classify(make_error_code(errc::source_abandoned)) == retry_class::none);
}
