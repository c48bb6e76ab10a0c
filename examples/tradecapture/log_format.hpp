#pragma once
/// \file log_format.hpp
/// The hosts' logger (one factory for every command) and its line formats: `text` (spdlog's default
/// pattern) or `json` (one JSON object per line, for log shippers: {"time", "level", "logger",
/// "msg"}, the message JSON-escaped).

#include <spdlog/logger.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

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

/// The logger of every command: "tradecapture" on stderr, at `level` (trace ... off) in `format`
/// ("text" or "json").
inline std::shared_ptr<spdlog::logger> make_logger(const std::string& level,
                                                   const std::string& format) {
  auto logger = std::make_shared<spdlog::logger>(
      "tradecapture", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  logger->set_level(spdlog::level::from_str(level));
  set_log_format(*logger, format);
  return logger;
}

}  // namespace tradecapture::host
