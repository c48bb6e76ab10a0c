#pragma once
/// \file log_format.hpp
/// The hosts' log line formats: `text` (spdlog's default pattern) or `json` (one JSON object per
/// line, for log shippers: {"time", "level", "logger", "msg"}, the message JSON-escaped).

#include <spdlog/logger.h>
#include <spdlog/pattern_formatter.h>

#include <memory>
#include <string>

namespace tradecapture::host {

/// The `%*` flag: the message as the body of a JSON string (quotes, backslashes and control
/// characters escaped; bytes >= 0x80 are copied, so valid UTF-8 stays valid).
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr char hex[] = "0123456789abcdef";
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        dest.push_back('\\');
        dest.push_back(c);
      } else if (c == '\n') {
        dest.append(std::string_view("\\n"));
      } else if (u < 0x20 || u == 0x7f) {
        const char esc[] = {'\\', 'u', '0', '0', hex[u >> 4], hex[u & 15]};
        dest.append(esc, esc + sizeof esc);
      } else {
        dest.push_back(c);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

/// Applies `format` ("text" or "json") to `logger`.
inline void set_log_format(spdlog::logger& logger, const std::string& format) {
  if (format != "json") return;
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<JsonMessageFlag>('*').set_pattern(
      R"({"time": "%Y-%m-%dT%H:%M:%S.%e%z", "level": "%l", "logger": "%n", "msg": "%*"})");
  logger.set_formatter(std::move(f));
}

}  // namespace tradecapture::host
