// The Prometheus text exposition (format 0.0.4) of the pipeline's metrics: every family has one
// HELP and one TYPE line before its samples, histograms are cumulative with +Inf, _sum and
// _count, latencies are in seconds, label values are escaped. (tests/cli/prometheus.sh also
// runs `promtool check metrics` and a real Prometheus server against the gateway.)

#include <tradecapture/prometheus.hpp>

#include <doctest/doctest.h>

#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace tradecapture;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

/// The value of the sample line that starts with `series` + ' ', or "" when absent.
std::string value_of(const std::string& text, const std::string& series) {
  for (const auto& line : lines_of(text)) {
    if (line.rfind(series + " ", 0) == 0) return line.substr(series.size() + 1);
  }
  return "";
}

Histogram::Snapshot snapshot_of(std::initializer_list<std::uint64_t> values) {
  Histogram h;
  for (auto v : values) h.record(v);
  return h.snapshot();
}

}  // namespace

TEST_CASE("prometheus: pipeline counters, gauges and labels") {
  PipelineMetrics m;
  m.accepted = 7;
  m.duplicate = 2;
  m.stale = 1;
  m.rejected = 3;
  m.failed = 4;
  m.retries_by_cause[static_cast<std::size_t>(RetryCause::deadlock)] = 5;
  m.retries_by_cause[static_cast<std::size_t>(RetryCause::fenced_off)] = 6;
  m.lock_grants = 11;
  m.lock_busy = 12;
  m.lease_losses = 13;
  m.leases_held = 14;
  m.queue_depth = 15;
  m.in_flight = 16;
  m.partitions_active = 17;
  m.partitions_cached = 18;
  m.store = {8, 3, 1};
  const std::string t = format_prometheus(m, {.version = "1.2.3", .rejected_before_submit = 10});

  CHECK(value_of(t, "tradecapture_trades_total{outcome=\"accepted\"}") == "7");
  CHECK(value_of(t, "tradecapture_trades_total{outcome=\"duplicate\"}") == "2");
  CHECK(value_of(t, "tradecapture_trades_total{outcome=\"stale\"}") == "1");
  CHECK(value_of(t, "tradecapture_trades_total{outcome=\"rejected\"}") == "13");
  CHECK(value_of(t, "tradecapture_trades_total{outcome=\"failed\"}") == "4");
  CHECK(value_of(t, "tradecapture_retries_total{cause=\"deadlock\"}") == "5");
  CHECK(value_of(t, "tradecapture_retries_total{cause=\"fenced_off\"}") == "6");
  CHECK(value_of(t, "tradecapture_retries_total{cause=\"busy\"}") == "0");
  CHECK(value_of(t, "tradecapture_lock_grants_total") == "11");
  CHECK(value_of(t, "tradecapture_lock_busy_total") == "12");
  CHECK(value_of(t, "tradecapture_lease_losses_total") == "13");
  CHECK(value_of(t, "tradecapture_leases_held") == "14");
  CHECK(value_of(t, "tradecapture_queue_depth") == "15");
  CHECK(value_of(t, "tradecapture_in_flight") == "16");
  CHECK(value_of(t, "tradecapture_partitions_active") == "17");
  CHECK(value_of(t, "tradecapture_partitions_cached") == "18");
  CHECK(value_of(t, "tradecapture_store_pool_size") == "8");
  CHECK(value_of(t, "tradecapture_store_connections_open") == "3");
  CHECK(value_of(t, "tradecapture_store_connections_in_use") == "1");
  CHECK(value_of(t, "tradecapture_build_info{version=\"1.2.3\"}") == "1");
  // Every retry cause has its sample.
  for (std::size_t i = 0; i < retry_cause_count; ++i) {
    const std::string cause(to_string(static_cast<RetryCause>(i)));
    CHECK(!value_of(t, "tradecapture_retries_total{cause=\"" + cause + "\"}").empty());
  }
}

TEST_CASE("prometheus: every family is announced once, before its samples") {
  PipelineMetrics m;
  m.latency_us = snapshot_of({3, 900});
  const std::string t = format_prometheus(m);
  std::map<std::string, std::string> type_of;
  std::set<std::string> helped;
  std::string current;
  for (const auto& line : lines_of(t)) {
    REQUIRE(!line.empty());
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      CHECK(helped.insert(name).second);
      current = name;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const std::string rest = line.substr(7);
      const std::string name = rest.substr(0, rest.find(' '));
      CHECK(name == current);
      CHECK(type_of.emplace(name, rest.substr(rest.find(' ') + 1)).second);
      continue;
    }
    REQUIRE(line[0] != '#');
    // A sample belongs to the family announced last (histograms add suffixes).
    std::string series = line.substr(0, line.find_first_of("{ "));
    const std::string& type = type_of.at(current);
    if (type == "histogram") {
      CHECK((series == current + "_bucket" || series == current + "_sum" ||
             series == current + "_count"));
    } else {
      CHECK(series == current);
    }
    if (type == "counter") CHECK(series.size() > 6);
    if (type == "counter") CHECK(series.substr(series.size() - 6) == "_total");
    CHECK(series.rfind("tradecapture_", 0) == 0);
  }
  CHECK(type_of.at("tradecapture_trades_total") == "counter");
  CHECK(type_of.at("tradecapture_submit_latency_seconds") == "histogram");
  CHECK(type_of.at("tradecapture_batch_size_events") == "histogram");
  CHECK(type_of.at("tradecapture_commit_latency_seconds") == "histogram");
  CHECK(type_of.at("tradecapture_lock_wait_seconds") == "histogram");
  CHECK(type_of.at("tradecapture_in_flight") == "gauge");
  CHECK(type_of.at("tradecapture_build_info") == "gauge");
  CHECK(helped.size() == type_of.size());
}

TEST_CASE("prometheus: histograms are cumulative, in seconds, with +Inf, _sum and _count") {
  PrometheusWriter w;
  // 1 us, 3 us (bucket le=4us), 1000 us (le=1024us), and one value past the last bound.
  Histogram::Snapshot s = snapshot_of({1, 3, 1000, std::uint64_t{1} << 45});
  w.histogram("x_seconds", "help", s, HistogramUnit::microseconds_as_seconds);
  const std::string t = w.text();
  CHECK(lines_of(t).size() == 2 + (Histogram::buckets - 1) + 1 + 2);
  CHECK(value_of(t, "x_seconds_bucket{le=\"0.000001\"}") == "1");
  CHECK(value_of(t, "x_seconds_bucket{le=\"0.000002\"}") == "1");
  CHECK(value_of(t, "x_seconds_bucket{le=\"0.000004\"}") == "2");
  CHECK(value_of(t, "x_seconds_bucket{le=\"0.000512\"}") == "2");
  CHECK(value_of(t, "x_seconds_bucket{le=\"0.001024\"}") == "3");
  CHECK(value_of(t, "x_seconds_bucket{le=\"1.048576\"}") == "3");
  // 2^38 us, the last finite bound; the value 2^45 is only in +Inf.
  CHECK(value_of(t, "x_seconds_bucket{le=\"274877.906944\"}") == "3");
  CHECK(value_of(t, "x_seconds_bucket{le=\"+Inf\"}") == "4");
  CHECK(value_of(t, "x_seconds_count") == "4");
  // 1 + 3 + 1000 + 2^45 microseconds, exactly.
  CHECK(value_of(t, "x_seconds_sum") == "35184372.089836");
  // Cumulative: never decreasing.
  std::uint64_t last = 0;
  for (const auto& line : lines_of(t)) {
    if (line.rfind("x_seconds_bucket", 0) != 0) continue;
    const std::uint64_t v = std::stoull(line.substr(line.rfind(' ') + 1));
    CHECK(v >= last);
    last = v;
  }

  PrometheusWriter sizes;
  sizes.histogram("b_events", "batch sizes", snapshot_of({1, 5, 5, 4096}), HistogramUnit::plain);
  const std::string u = sizes.text();
  CHECK(value_of(u, "b_events_bucket{le=\"1\"}") == "1");
  CHECK(value_of(u, "b_events_bucket{le=\"4\"}") == "1");
  CHECK(value_of(u, "b_events_bucket{le=\"8\"}") == "3");
  CHECK(value_of(u, "b_events_bucket{le=\"4096\"}") == "4");
  CHECK(value_of(u, "b_events_sum") == "4107");
  CHECK(value_of(u, "b_events_count") == "4");

  PrometheusWriter empty;
  empty.histogram("e_seconds", "nothing yet", Histogram::Snapshot{},
                  HistogramUnit::microseconds_as_seconds);
  CHECK(value_of(empty.text(), "e_seconds_bucket{le=\"+Inf\"}") == "0");
  CHECK(value_of(empty.text(), "e_seconds_sum") == "0");
  CHECK(value_of(empty.text(), "e_seconds_count") == "0");
}

TEST_CASE("prometheus: label values and help texts are escaped") {
  PrometheusWriter w;
  w.family("odd_total", "counter", "a \\ backslash\nand a line feed");
  w.sample("odd_total", {{"path", "a\"b\\c\nd"}, {"code", "200"}}, 3);
  CHECK(w.text() ==
        "# HELP odd_total a \\\\ backslash\\nand a line feed\n"
        "# TYPE odd_total counter\n"
        "odd_total{path=\"a\\\"b\\\\c\\nd\",code=\"200\"} 3\n");
  CHECK(format_prometheus(PipelineMetrics{}, {.version = "v\"1"})
            .find("tradecapture_build_info{version=\"v\\\"1\"} 1\n") != std::string::npos);
}
