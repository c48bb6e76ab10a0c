// tradecapture::metrics (prometheus-cpp): the pipeline's families as a prometheus::Collectable,
// written by prometheus::TextSerializer next to a host's own prometheus::Registry; the process_*
// metrics from /proc. (tests/cli/prometheus.sh also runs `promtool check metrics` and a real
// Prometheus server against the gateway's /metrics.)


#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/prometheus_metrics.hpp>
#include <tradecapture/version.hpp>

#include "support/events.hpp"
#include "support/log_capture.hpp"

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <doctest/doctest.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <cmath>
#include <future>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace tradecapture;

namespace {

using tctest::ev;
using tctest::pk;
using tctest::text_lines;

/// The value of the sample line that starts with `series` + ' ', or "" when absent.
std::string sample(const std::string& text, const std::string& series) {
  for (const auto& line : text_lines(text)) {
    if (line.rfind(series + " ", 0) == 0) return line.substr(series.size() + 1);
  }
  return "";
}

double number(const std::string& text, const std::string& series) {
  const std::string v = sample(text, series);
  REQUIRE_MESSAGE(!v.empty(), "no sample " << series);
  return std::stod(v);
}

/// Checks what `promtool check metrics` checks first: every family has one HELP and one TYPE
/// line before its samples and every sample belongs to the family announced last. Returns the
/// type of every family.
std::map<std::string, std::string> check_exposition(const std::string& t) {
  std::map<std::string, std::string> type_of;
  std::set<std::string> helped;
  std::string current;
  for (const auto& line : text_lines(t)) {
    REQUIRE(!line.empty());
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      CHECK_MESSAGE(helped.insert(name).second, "HELP twice: " << name);
      current = name;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const std::string rest = line.substr(7);
      const std::string name = rest.substr(0, rest.find(' '));
      CHECK(name == current);
      CHECK_MESSAGE(type_of.emplace(name, rest.substr(rest.find(' ') + 1)).second,
                    "TYPE twice: " << name);
      continue;
    }
    REQUIRE(line[0] != '#');
    const std::string series = line.substr(0, line.find_first_of("{ "));
    const std::string& type = type_of.at(current);
    if (type == "histogram") {
      CHECK((series == current + "_bucket" || series == current + "_sum" ||
             series == current + "_count"));
    } else {
      CHECK(series == current);
    }
    if (type == "counter") CHECK(series.size() > 6);
    if (type == "counter") CHECK(series.substr(series.size() - 6) == "_total");
  }
  CHECK(helped.size() == type_of.size());
  return type_of;
}

/// A snapshot's counters and gauges, each with the series (no labels of its own) it is exposed as.
const std::pair<std::uint64_t PipelineMetrics::*, const char*> scalar_series[] = {
    {&PipelineMetrics::accepted, "tradecapture_trades_total{outcome=\"accepted\"}"},
    {&PipelineMetrics::duplicate, "tradecapture_trades_total{outcome=\"duplicate\"}"},
    {&PipelineMetrics::stale, "tradecapture_trades_total{outcome=\"stale\"}"},
    {&PipelineMetrics::rejected, "tradecapture_trades_total{outcome=\"rejected\"}"},
    {&PipelineMetrics::failed, "tradecapture_trades_total{outcome=\"failed\"}"},
    {&PipelineMetrics::replayed, "tradecapture_trades_total{outcome=\"replayed\"}"},
    {&PipelineMetrics::lock_grants, "tradecapture_lock_grants_total"},
    {&PipelineMetrics::lock_busy, "tradecapture_lock_busy_total"},
    {&PipelineMetrics::lease_losses, "tradecapture_lease_losses_total"},
    {&PipelineMetrics::leases_held, "tradecapture_leases_held"},
    {&PipelineMetrics::queue_depth, "tradecapture_queue_depth"},
    {&PipelineMetrics::in_flight, "tradecapture_in_flight"},
    {&PipelineMetrics::partitions_active, "tradecapture_partitions_active"},
    {&PipelineMetrics::partitions_cached, "tradecapture_partitions_cached"},
};

Histogram::Snapshot snapshot_of(std::initializer_list<std::uint64_t> values) {
  Histogram h;
  for (auto v : values) h.record(v);
  return h.snapshot();
}

}  // namespace

TEST_CASE("metrics: a pipeline registered next to a host's registry, serialised once") {
  PipelineOptions o;
  o.threads = 2;
  Pipeline pl(make_memory_store(), make_local_lock(), make_position_processor(), o);

  // The host's own registry with one of its own counters, and the library's collectors.
  prometheus::Registry registry;
  auto& host_requests = prometheus::BuildCounter()
                            .Name("gateway_fix_sessions_total")
                            .Help("The host's own counter.")
                            .Register(registry)
                            .Add({{"venue", "XLON"}});
  host_requests.Increment(2);
  metrics::PipelineCollector pipeline_metrics(pl, {.labels = {{"pipeline", "eq"}}});
  metrics::ProcessCollector process_metrics;

  // 3 accepted, 2 duplicates (the same NEW again, the same AMEND again).
  std::vector<TradeEvent> events = {
      ev("T1", 1, TradeType::New, pk("A1")),
      ev("T2", 1, TradeType::New, pk("A2")),
      ev("T1", 1, TradeType::New, pk("A1")),
      ev("T1", 2, TradeType::Amend, pk("A1")),
  };
  for (auto& e : events) {
    auto fut = pl.async_submit(std::move(e), boost::asio::use_future);
    CHECK(fut.get().kind != OutcomeKind::Rejected);
  }
  auto last = pl.async_submit(ev("T1", 2, TradeType::Amend, pk("A1")), boost::asio::use_future);
  (void)last.get();
  // A completion may run before its latency is recorded: stop, so that every count is final.
  CHECK(pl.stop(std::chrono::seconds(10)));

  const std::string t = metrics::serialize({&registry, &pipeline_metrics, &process_metrics});
  const auto type_of = check_exposition(t);

  CHECK(sample(t, "gateway_fix_sessions_total{venue=\"XLON\"}") == "2");
  CHECK(sample(t, "tradecapture_trades_total{outcome=\"accepted\",pipeline=\"eq\"}") == "3");
  CHECK(sample(t, "tradecapture_trades_total{outcome=\"duplicate\",pipeline=\"eq\"}") == "2");
  CHECK(sample(t, "tradecapture_trades_total{outcome=\"failed\",pipeline=\"eq\"}") == "0");
  double outcomes = 0;
  for (const char* k : {"accepted", "duplicate", "stale", "rejected", "failed"}) {
    outcomes +=
        number(t, std::string("tradecapture_trades_total{outcome=\"") + k + "\",pipeline=\"eq\"}");
  }
  CHECK(outcomes == 5);
  CHECK(sample(t, "tradecapture_submit_latency_seconds_count{pipeline=\"eq\"}") == "5");
  CHECK(sample(t, "tradecapture_submit_latency_seconds_bucket{pipeline=\"eq\",le=\"+Inf\"}") ==
        "5");
  CHECK(number(t, "tradecapture_submit_latency_seconds_sum{pipeline=\"eq\"}") > 0);
  CHECK(number(t, "tradecapture_batch_size_events_count{pipeline=\"eq\"}") >= 1);
  CHECK(number(t, "tradecapture_commits_total{pipeline=\"eq\"}") >= 1);
  CHECK(number(t, "tradecapture_lock_grants_total{pipeline=\"eq\"}") >= 2);
  CHECK(sample(t, "tradecapture_in_flight{pipeline=\"eq\"}") == "0");
  CHECK(sample(t, "tradecapture_retries_total{cause=\"deadlock\",pipeline=\"eq\"}") == "0");
  CHECK(sample(t, "tradecapture_build_info{pipeline=\"eq\",version=\"" +
                      std::string(version_string()) + "\"}") == "1");

  CHECK(type_of.at("gateway_fix_sessions_total") == "counter");
  CHECK(type_of.at("tradecapture_trades_total") == "counter");
  CHECK(type_of.at("tradecapture_retries_total") == "counter");
  CHECK(type_of.at("tradecapture_submit_latency_seconds") == "histogram");
  CHECK(type_of.at("tradecapture_batch_size_events") == "histogram");
  CHECK(type_of.at("tradecapture_commit_latency_seconds") == "histogram");
  CHECK(type_of.at("tradecapture_lock_wait_seconds") == "histogram");
  CHECK(type_of.at("tradecapture_in_flight") == "gauge");
  CHECK(type_of.at("tradecapture_build_info") == "gauge");
  CHECK(type_of.at("process_cpu_seconds_total") == "counter");
  for (const char* g : {"process_resident_memory_bytes", "process_virtual_memory_bytes",
                        "process_open_fds", "process_max_fds", "process_start_time_seconds"}) {
    CHECK_MESSAGE(type_of.count(g) == 1, g);
    CHECK_MESSAGE(type_of.at(g) == "gauge", g);
  }
  // Every family of the pipeline, as format_prometheus wrote them before prometheus-cpp.
  for (const char* f :
       {"tradecapture_batches_total", "tradecapture_commit_failures_total",
        "tradecapture_lock_busy_total", "tradecapture_lease_losses_total",
        "tradecapture_leases_held", "tradecapture_queue_depth", "tradecapture_partitions_active",
        "tradecapture_partitions_cached", "tradecapture_store_pool_size",
        "tradecapture_store_connections_open", "tradecapture_store_connections_in_use"}) {
    CHECK_MESSAGE(type_of.count(f) == 1, f);
  }
  CHECK(type_of.size() == 1 + 21 + 6);
}

TEST_CASE("metrics: process metrics are present and plausible") {
  metrics::ProcessCollector collector(prometheus::Labels{{"instance", "test"}});
  const std::string t = metrics::serialize({&collector});
  check_exposition(t);
  const double cpu = number(t, "process_cpu_seconds_total{instance=\"test\"}");
  const double rss = number(t, "process_resident_memory_bytes{instance=\"test\"}");
  const double vm = number(t, "process_virtual_memory_bytes{instance=\"test\"}");
  const double fds = number(t, "process_open_fds{instance=\"test\"}");
  const double max_fds = number(t, "process_max_fds{instance=\"test\"}");
  const double start = number(t, "process_start_time_seconds{instance=\"test\"}");
  CHECK(cpu >= 0);
  CHECK(rss > 1024 * 1024);  // a C++ test binary with its libraries
  CHECK(vm >= rss);
  CHECK(fds >= 3);  // stdin, stdout, stderr
  CHECK(max_fds >= fds);
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(start > now - 86400 * 365);  // started this year (tests never run that long)
  CHECK(start <= now + 1);

  // Burning some CPU shows in the counter (clock ticks of 10 ms).
  volatile std::uint64_t x = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(60);
  while (std::chrono::steady_clock::now() < until) x = x + 1;
  CHECK(number(metrics::serialize({&collector}), "process_cpu_seconds_total{instance=\"test\"}") >
        cpu);

  // Without /proc (another OS, a sandbox): no family rather than made-up values.
  metrics::ProcessCollector nowhere({}, "/nonexistent/self");
  CHECK(nowhere.Collect().empty());
}

TEST_CASE("metrics: pipeline families from a snapshot, with the exact values") {
  PipelineMetrics m;
  std::uint64_t value = 1;  // a value of its own for each field
  for (const auto& [field, series] : scalar_series) m.*field = value++;
  m.retries_by_cause[static_cast<std::size_t>(RetryCause::deadlock)] = 5;
  m.retries_by_cause[static_cast<std::size_t>(RetryCause::fenced_off)] = 6;
  m.store = {8, 3, 1};
  // 1 us, 3 us (le=4us), 1000 us (le=1024us), and one value past the last bound.
  m.latency_us = snapshot_of({1, 3, 1000, std::uint64_t{1} << 45});
  m.batch_size = snapshot_of({1, 5, 5, 4096});
  // A host adds the events it answered itself through its source.
  metrics::PipelineCollector c(
      [m] {
        PipelineMetrics copy = m;
        copy.rejected += 10;
        return copy;
      },
      {.version = "1.2.3"});
  const std::string t = metrics::serialize({&c});
  check_exposition(t);

  for (const auto& [field, series] : scalar_series) {
    // The source added 10 REJECTED.
    const std::uint64_t want = m.*field + (field == &PipelineMetrics::rejected ? 10 : 0);
    CHECK_MESSAGE(sample(t, series) == std::to_string(want), series);
  }
  CHECK(sample(t, "tradecapture_retries_total{cause=\"deadlock\"}") == "5");
  CHECK(sample(t, "tradecapture_retries_total{cause=\"fenced_off\"}") == "6");
  CHECK(sample(t, "tradecapture_retries_total{cause=\"busy\"}") == "0");
  for (std::size_t i = 0; i < retry_cause_count; ++i) {
    const std::string cause(to_string(static_cast<RetryCause>(i)));
    CHECK(!sample(t, "tradecapture_retries_total{cause=\"" + cause + "\"}").empty());
  }
  CHECK(sample(t, "tradecapture_store_pool_size") == "8");
  CHECK(sample(t, "tradecapture_store_connections_open") == "3");
  CHECK(sample(t, "tradecapture_store_connections_in_use") == "1");
  CHECK(sample(t, "tradecapture_build_info{version=\"1.2.3\"}") == "1");

  // Histograms: cumulative, bounds 2^i microseconds in seconds, the last bucket only in +Inf.
  std::vector<std::pair<double, double>> buckets;  // (le, count)
  for (const auto& line : text_lines(t)) {
    const std::string prefix = "tradecapture_submit_latency_seconds_bucket{le=\"";
    if (line.rfind(prefix, 0) != 0) continue;
    const std::string le =
        line.substr(prefix.size(), line.find('"', prefix.size()) - prefix.size());
    const double count = std::stod(line.substr(line.rfind(' ') + 1));
    buckets.emplace_back(le == "+Inf" ? INFINITY : std::stod(le), count);
  }
  REQUIRE(buckets.size() == Histogram::buckets);
  for (int i = 0; i + 1 < Histogram::buckets; ++i) {
    const double bound = std::ldexp(1.0, i) / 1e6;
    CHECK(std::abs(buckets[static_cast<std::size_t>(i)].first - bound) <= bound * 1e-12);
    if (i > 0) CHECK(buckets[static_cast<std::size_t>(i)].second >= buckets[i - 1u].second);
  }
  CHECK(buckets[0].second == 1);                       // le 1us
  CHECK(buckets[2].second == 2);                       // le 4us
  CHECK(buckets[10].second == 3);                      // le 1024us
  CHECK(buckets[Histogram::buckets - 2].second == 3);  // le 2^38 us: not the 2^45 one
  CHECK(std::isinf(buckets.back().first));
  CHECK(buckets.back().second == 4);
  CHECK(sample(t, "tradecapture_submit_latency_seconds_count") == "4");
  CHECK(std::abs(number(t, "tradecapture_submit_latency_seconds_sum") - 35184372.089836) < 1e-6);

  CHECK(sample(t, "tradecapture_batch_size_events_bucket{le=\"1\"}") == "1");
  CHECK(sample(t, "tradecapture_batch_size_events_bucket{le=\"4\"}") == "1");
  CHECK(sample(t, "tradecapture_batch_size_events_bucket{le=\"8\"}") == "3");
  CHECK(sample(t, "tradecapture_batch_size_events_bucket{le=\"4096\"}") == "4");
  CHECK(sample(t, "tradecapture_batch_size_events_sum") == "4107");
  CHECK(sample(t, "tradecapture_batch_size_events_count") == "4");
  CHECK(sample(t, "tradecapture_commit_latency_seconds_bucket{le=\"+Inf\"}") == "0");
  CHECK(sample(t, "tradecapture_commit_latency_seconds_sum") == "0");
}

TEST_CASE("metrics: two pipelines, one family each, label values escaped") {
  metrics::PipelineCollector a(
      [] {
        PipelineMetrics m;
        m.accepted = 1;
        return m;
      },
      {.labels = {{"pipeline", "a"}}, .version = "v\"1"});
  metrics::PipelineCollector b(
      [] {
        PipelineMetrics m;
        m.accepted = 2;
        return m;
      },
      {.labels = {{"pipeline", "b\\\n"}}});
  const std::string t = metrics::serialize({&a, nullptr, &b});
  check_exposition(t);  // each family announced once although both collectors have it
  CHECK(sample(t, "tradecapture_trades_total{outcome=\"accepted\",pipeline=\"a\"}") == "1");
  CHECK(sample(t, "tradecapture_trades_total{outcome=\"accepted\",pipeline=\"b\\\\\\n\"}") == "2");
  CHECK(sample(t, "tradecapture_build_info{pipeline=\"a\",version=\"v\\\"1\"}") == "1");
}
