// The gateway's POST /v1/trades path without a socket (issue #12, validate once): a `Gateway`
// over a memory store, a local lock and a one-shard pipeline, fed R requests of B valid NEW
// events each (a JSON array), one request at a time. Only the public API, so the same source
// builds against an older core for an A/B comparison.
//
//   build/bin/gateway_path [R] [B]          (default 200 requests of 500 events)
//   valgrind --tool=callgrind --instr-atstart=no build/bin/gateway_path 40 500
//       instructions of the requests alone (every thread): Collected / (R * B) per event
//   perf stat -e instructions:u build/bin/gateway_path 400 500

#include <tradecapture/event_codec.hpp>
#include <tradecapture/gateway.hpp>
#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <spdlog/spdlog.h>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>  // no-ops unless run under valgrind --tool=callgrind
#else
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace tradecapture;

int main(int argc, char** argv) {
  const std::string first = argc > 1 ? argv[1] : "";
  if (first == "--help" || first == "-h") {
    std::printf(
        "usage: gateway_path [REQUESTS [EVENTS_PER_REQUEST]]   (default 200 500)\n"
        "Feeds REQUESTS POST /v1/trades bodies of EVENTS_PER_REQUEST valid NEW events each to a\n"
        "Gateway over a memory store (no socket), one at a time; for callgrind and perf A/B\n"
        "runs.\n");
    return 0;
  }
  const std::size_t requests = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 200;
  const std::size_t batch = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 500;
  if (requests == 0 || batch == 0) {
    std::fprintf(stderr, "gateway_path: REQUESTS and EVENTS_PER_REQUEST must be positive numbers"
                         " (--help)\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);

  // The bodies, built before anything is measured: NEW events over 100 partitions, each
  // accepted (unique trade ids).
  std::vector<std::string> bodies;
  std::size_t n = 0;
  for (std::size_t r = 0; r < requests; ++r) {
    std::string body = "[";
    for (std::size_t i = 0; i < batch; ++i, ++n) {
      TradeEvent e;
      e.trade_id = "TRADE-" + std::to_string(n);
      e.version = 1;
      e.type = TradeType::New;
      e.partition = {"ACC" + std::to_string(n % 10), "BOOK-EQ", "SEC" + std::to_string(n % 100)};
      e.side = n % 3 ? Side::Buy : Side::Sell;
      e.quantity = Decimal::from_int(static_cast<std::int64_t>(100 + n % 900));
      e.price = Decimal::parse("187.25").value();
      if (i != 0) body += ",";
      append_input_event_json(body, e);
    }
    bodies.push_back(body + "]");
  }

  auto store = make_memory_store();
  auto lock = make_local_lock();
  boost::asio::thread_pool worker{1};
  PipelineOptions po;
  po.threads = 1;
  Pipeline pipeline(store, lock, make_position_processor(), po);
  GatewayOptions go;
  go.executor = worker.get_executor();
  Gateway gateway(pipeline, store, lock, go);

  std::size_t ok = 0;
  const auto t0 = std::chrono::steady_clock::now();
  CALLGRIND_START_INSTRUMENTATION;
  for (auto& body : bodies) {
    GatewayRequest req;
    req.method = "POST";
    req.target = "/v1/trades";
    req.content_type = "application/json";
    req.body = std::move(body);
    const GatewayResponse resp =
        gateway.async_handle(std::move(req), boost::asio::use_future).get();
    if (resp.status == 200) ++ok;
  }
  CALLGRIND_STOP_INSTRUMENTATION;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  pipeline.stop();
  worker.join();
  const auto m = pipeline.metrics();
  std::printf("requests %zu ok %zu events %zu accepted %llu  %.3f s  %.0f events/s\n", requests,
              ok, n, static_cast<unsigned long long>(m.accepted), secs,
              static_cast<double>(n) / secs);
  return ok == requests && m.accepted == n ? 0 : 1;
}
