#pragma once
/// \file log_capture.hpp
/// A logger whose lines a test reads back, and text split into lines.

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace tctest {

/// The lines of `text`, without their '\n'.
inline std::vector<std::string> text_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

/// A logger that writes into a string, every level, as "LEVEL MESSAGE" lines.
struct CapturedLog {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> logger;
  CapturedLog() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    sink->set_pattern("%l %v");
    logger = std::make_shared<spdlog::logger>("captured", sink);
    logger->set_level(spdlog::level::trace);
  }
  std::vector<std::string> lines() { return text_lines(text()); }
  std::string text() {
    logger->flush();
    return out.str();
  }
};

}  // namespace tctest
