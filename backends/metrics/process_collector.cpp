// process_* metrics from /proc (the names and help texts of the Prometheus client libraries).

#include <tradecapture/prometheus_metrics.hpp>

#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace tradecapture::metrics {
namespace {

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::optional<std::uint64_t> to_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

/// The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses):
/// fields[0] is field 3 of proc(5) (state), so field n is fields[n - 3].
std::vector<std::string_view> stat_fields(std::string_view stat) {
  std::vector<std::string_view> fields;
  const auto close = stat.rfind(')');
  if (close == std::string_view::npos) return fields;
  stat.remove_prefix(close + 1);
  while (!stat.empty()) {
    const auto start = stat.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    stat.remove_prefix(start);
    const auto end = stat.find_first_of(" \n");
    fields.push_back(stat.substr(0, end));
    if (end == std::string_view::npos) break;
    stat.remove_prefix(end);
  }
  return fields;
}

/// `btime` of /proc/stat: the boot time, seconds since the Unix epoch.
std::optional<std::uint64_t> boot_time(const std::string& proc_stat) {
  std::ifstream in(proc_stat);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("btime ", 0) == 0) return to_u64(std::string_view(line).substr(6));
  }
  return std::nullopt;
}

/// The soft "Max open files" limit of /proc/PID/limits; +Inf when unlimited.
std::optional<double> max_open_files(const std::string& limits) {
  std::ifstream in(limits);
  constexpr std::string_view key = "Max open files";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) != 0) continue;
    std::istringstream fields(line.substr(key.size()));
    std::string soft;
    fields >> soft;
    if (soft == "unlimited") return std::numeric_limits<double>::infinity();
    if (auto v = to_u64(soft)) return static_cast<double>(*v);
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<double> open_fds(const std::string& fd_dir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(fd_dir, ec), end;
  if (ec) return std::nullopt;
  std::uint64_t n = 0;
  for (; it != end; it.increment(ec)) {
    if (ec) return std::nullopt;
    ++n;
  }
  return static_cast<double>(n);
}

}  // namespace

ProcessCollector::ProcessCollector(prometheus::Labels labels, std::string proc_dir)
    : labels_(std::move(labels)), proc_dir_(std::move(proc_dir)) {}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  std::vector<prometheus::MetricFamily> out;
  const long ticks = ::sysconf(_SC_CLK_TCK);
  const long page = ::sysconf(_SC_PAGESIZE);
  if (auto stat = read_text(proc_dir_ + "/stat"); stat && ticks > 0 && page > 0) {
    const auto f = stat_fields(*stat);
    auto field = [&f](std::size_t n) -> std::optional<std::uint64_t> {
      if (n < 3 || n - 3 >= f.size()) return std::nullopt;
      return to_u64(f[n - 3]);
    };
    const auto utime = field(14), stime = field(15), start = field(22), vsize = field(23),
               rss = field(24);
    if (utime && stime) {
      out.push_back(counter_family(
          "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
          static_cast<double>(*utime + *stime) / static_cast<double>(ticks), labels_));
    }
    if (rss) {
      out.push_back(gauge_family("process_resident_memory_bytes", "Resident memory size in bytes.",
                                 static_cast<double>(*rss) * static_cast<double>(page), labels_));
    }
    if (vsize) {
      out.push_back(gauge_family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                                 static_cast<double>(*vsize), labels_));
    }
    const std::filesystem::path proc_root = std::filesystem::path(proc_dir_).parent_path();
    if (auto btime = boot_time((proc_root / "stat").string()); start && btime) {
      out.push_back(gauge_family(
          "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
          static_cast<double>(*btime) + static_cast<double>(*start) / static_cast<double>(ticks),
          labels_));
    }
  }
  if (auto n = open_fds(proc_dir_ + "/fd")) {
    out.push_back(
        gauge_family("process_open_fds", "Number of open file descriptors.", *n, labels_));
  }
  if (auto n = max_open_files(proc_dir_ + "/limits")) {
    out.push_back(
        gauge_family("process_max_fds", "Maximum number of open file descriptors.", *n, labels_));
  }
  return out;
}

}  // namespace tradecapture::metrics
