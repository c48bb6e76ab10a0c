// The JSON input parsers alone (issue #12): `parse_event` over realistic event lines, and
// `parse_request_body` over gateway bodies (a JSON array of events, and NDJSON). No pipeline,
// no store. Lines are built before the clock starts.
//
//   build/bin/bench_parse                         Google Benchmark (lines/s, bytes/s)
//   TC_PARSE_LINES=FILE build/bin/bench_parse     the same over the lines of FILE (for example
//                                                 bench/gen_trades.py output, what replay reads)
//   TC_PARSE_CALLGRIND=N valgrind --tool=callgrind --instr-atstart=no build/bin/bench_parse
//                                                 parses N lines once with instrumentation on
//                                                 (instructions per line = Collected / N)

#include <tradecapture/event_codec.hpp>
#include <tradecapture/request_body.hpp>

#include <benchmark/benchmark.h>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>  // no-ops unless run under valgrind --tool=callgrind
#else
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "support/trace.hpp"

namespace {

using namespace tradecapture;

/// One event as bench/gen_trades.py writes it: compact, quantity a JSON string, price a plain
/// JSON number on even lines and a string on odd ones; a CANCEL without amounts.
std::string compact_line(const TradeEvent& e, std::size_t n) {
  std::string out = "{\"trade_id\":";
  append_json_string(out, e.trade_id);
  out += ",\"version\":" + std::to_string(e.version) + ",\"type\":";
  append_json_string(out, to_string(e.type));
  out += ",\"account\":";
  append_json_string(out, e.partition.account);
  out += ",\"book\":";
  append_json_string(out, e.partition.book);
  out += ",\"security\":";
  append_json_string(out, e.partition.security);
  if (e.type != TradeType::Cancel) {
    out += ",\"side\":";
    append_json_string(out, to_string(e.side));
    out += ",\"quantity\":";
    append_json_string(out, e.quantity.to_string());
    out += ",\"price\":";
    if (n % 2 == 0) {
      out += e.price.to_string();
    } else {
      append_json_string(out, e.price.to_string());
    }
  }
  out += '}';
  return out;
}

/// The lines every benchmark parses: TC_PARSE_LINES's file, or 10,000 realistic events.
const std::vector<std::string>& lines() {
  static const std::vector<std::string> all = [] {
    std::vector<std::string> v;
    if (const char* path = std::getenv("TC_PARSE_LINES")) {
      std::ifstream in(path);
      for (std::string l; std::getline(in, l);) {
        if (!is_blank_line(l)) v.push_back(std::move(l));
      }
      if (v.empty()) {
        std::fprintf(stderr, "bench_parse: no lines in %s\n", path);
        std::exit(2);
      }
      return v;
    }
    tctest::TraceOptions o;
    o.events = 10'000;
    o.skewed = true;
    std::size_t n = 0;
    for (const auto& te : tctest::make_trace(o)) v.push_back(compact_line(te.event, n++));
    return v;
  }();
  return all;
}

std::size_t total_bytes(const std::vector<std::string>& v) {
  std::size_t b = 0;
  for (const auto& l : v) b += l.size();
  return b;
}

void BM_ParseEvent(benchmark::State& state) {
  const auto& v = lines();
  std::size_t k = 0;
  std::size_t bytes = 0;
  std::size_t bad = 0;
  for (auto _ : state) {
    const std::string& l = v[k];
    ParsedEvent p = parse_event(l);
    bad += p.event ? 0 : 1;
    bytes += l.size();
    benchmark::DoNotOptimize(p);
    if (++k == v.size()) k = 0;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["rejected"] = static_cast<double>(bad);
}
BENCHMARK(BM_ParseEvent);

/// Bodies of `state.range(0)` events: a JSON array, or NDJSON.
std::vector<std::string> bodies(std::size_t per_body, BodyFormat format) {
  const auto& v = lines();
  std::vector<std::string> out;
  for (std::size_t from = 0; from + per_body <= v.size(); from += per_body) {
    std::string b = format == BodyFormat::json ? "[" : "";
    for (std::size_t k = from; k < from + per_body; ++k) {
      if (k != from) b += format == BodyFormat::json ? ",\n" : "\n";
      b += v[k];
    }
    b += format == BodyFormat::json ? "]" : "\n";
    out.push_back(std::move(b));
  }
  return out;
}

void parse_bodies(benchmark::State& state, BodyFormat format) {
  const std::size_t per_body = static_cast<std::size_t>(state.range(0));
  const auto bs = bodies(per_body, format);
  std::size_t k = 0;
  std::size_t bytes = 0;
  for (auto _ : state) {
    ParsedBody p = parse_request_body(bs[k], format);
    if (p.events.size() != per_body) state.SkipWithError("wrong number of events");
    bytes += bs[k].size();
    benchmark::DoNotOptimize(p);
    if (++k == bs.size()) k = 0;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * per_body));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}

void BM_ParseBodyArray(benchmark::State& state) { parse_bodies(state, BodyFormat::json); }
void BM_ParseBodyNdjson(benchmark::State& state) { parse_bodies(state, BodyFormat::ndjson); }
BENCHMARK(BM_ParseBodyArray)->Arg(1)->Arg(100);
BENCHMARK(BM_ParseBodyNdjson)->Arg(100);

/// TC_PARSE_CALLGRIND=N: parse N lines (cycling) with callgrind's instrumentation on, then exit.
int callgrind_run(std::size_t n) {
  const auto& v = lines();
  std::size_t accepted = 0;
  std::size_t bytes = 0;
  parse_event(v[0]);  // thread-local set-up outside the measurement
  CALLGRIND_START_INSTRUMENTATION;
  for (std::size_t k = 0; k < n; ++k) {
    const std::string& l = v[k % v.size()];
    bytes += l.size();
    accepted += parse_event(l).event ? 1 : 0;
  }
  CALLGRIND_STOP_INSTRUMENTATION;
  std::printf("parsed %zu lines (%zu bytes, %zu accepted, %zu distinct lines of %zu bytes)\n", n,
              bytes, accepted, v.size(), total_bytes(v));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* n = std::getenv("TC_PARSE_CALLGRIND")) {
    return callgrind_run(static_cast<std::size_t>(std::strtoull(n, nullptr, 10)));
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
