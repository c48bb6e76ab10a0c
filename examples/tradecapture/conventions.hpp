#pragma once
/// \file conventions.hpp
/// Command-line conventions shared by the example binaries (`tradecapture`, `tradecapture-load`,
/// `tradecapture-kafka-mock`): sysexits-style exit codes, port and number parsing, `--version`
/// text.
/// Header-only: the load generator and the Kafka mock include it without the host's sources.

#include <sysexits.h>

#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#ifndef TRADECAPTURE_VERSION
#define TRADECAPTURE_VERSION "unknown"
#endif

namespace tradecapture::cli {

// Exit codes (sysexits.h). Interrupted by a signal N: 128 + N.
inline constexpr int exit_ok = 0;
inline constexpr int exit_usage = EX_USAGE;              ///< 64: bad flags, values, URIs
inline constexpr int exit_noinput = EX_NOINPUT;          ///< 66: an input file is missing/unreadable
inline constexpr int exit_unavailable = EX_UNAVAILABLE;  ///< 69: store, lock, broker, listen failed
inline constexpr int exit_cantcreat = EX_CANTCREAT;      ///< 73: an output file cannot be created
inline constexpr int exit_ioerr = EX_IOERR;              ///< 74: an output cannot be written

/// The exit codes of the `tradecapture` commands, for `--help` footers.
inline constexpr std::string_view exit_codes_help =
    "Exit codes (sysexits.h): 0 done (replay: every line has its durable outcome, rejected\n"
    "lines included); 64 usage error (bad flag, value, URI or port); 66 an input file (replay\n"
    "INPUT, --auth-token-file, the sqlite:PATH of positions/events) is missing or unreadable;\n"
    "69 infrastructure failure: the store, lock or broker is unreachable at start or failed\n"
    "past the retry budget, or the address cannot be bound (outcomes written stay true;\n"
    "re-running is safe); 73 an output file cannot be created; 74 an output cannot be\n"
    "written; 128+N stopped by signal N before the end (replay: resume where it says).";

/// A TCP port: decimal digits only, 1..65535, or 0 when `allow_zero` (0: pick a free port).
inline std::optional<unsigned> parse_port(std::string_view s, bool allow_zero) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  unsigned n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<unsigned>(c - '0');
  }
  if (n > 65535 || (n == 0 && !allow_zero)) return std::nullopt;
  return n;
}

/// `text` as a whole number (`int` by std::stoi, `double` by std::stod): nothing when it does
/// not start with one, has anything after it, or is out of range.
template <class Number>
std::optional<Number> parse_number(const std::string& text) {
  std::size_t used = 0;
  Number n{};
  try {
    if constexpr (std::is_same_v<Number, int>) {
      n = std::stoi(text, &used);
    } else {
      static_assert(std::is_same_v<Number, double>, "parse_number: int or double");
      n = std::stod(text, &used);
    }
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used != text.size()) return std::nullopt;
  return n;
}

/// The first line of every `--version`: "PROGRAM VERSION (tradecapture)".
inline std::string version_line(std::string_view program) {
  std::string s(program);
  s += ' ';
  s += TRADECAPTURE_VERSION;
  if (program != "tradecapture") s += " (tradecapture)";
  return s;
}

}  // namespace tradecapture::cli
