// Embeds tradecapture from its installed package (tradecapture::core + tradecapture::memory):
// a pipeline over the in-memory store and the local lock, one batch submitted from a coroutine
// with use_awaitable, its outcomes (in event order) and the resulting position.

#include <tradecapture/event_codec.hpp>
#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/version.hpp>

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <string>
#include <vector>

namespace tc = tradecapture;
static_assert(tc::version_at_least(0, 1), "needs tradecapture 0.1 or later");

constexpr const char* lines[] = {
    R"({"trade_id": "T1", "version": 1, "type": "NEW", "account": "ACC1", "book": "BOOK1", "security": "AAPL", "side": "BUY", "quantity": "100", "price": "187.25"})",
    R"({"trade_id": "T1", "version": 1, "type": "NEW", "account": "ACC1", "book": "BOOK1", "security": "AAPL", "side": "BUY", "quantity": "100.0", "price": "187.250"})",
    R"({"trade_id": "T1", "version": 2, "type": "AMEND", "account": "ACC1", "book": "BOOK1", "security": "AAPL", "side": "SELL", "quantity": "40", "price": "188"})",
    R"({"trade_id": "T2", "version": 2, "type": "AMEND", "account": "ACC1", "book": "BOOK1", "security": "AAPL", "side": "BUY", "quantity": "1", "price": "1"})",
    R"({"trade_id": "T1", "version": 3, "type": "CANCEL", "account": "ACC1", "book": "BOOK1", "security": "AAPL"})"};

boost::asio::awaitable<int> run(tc::Pipeline& pipeline) {
  std::vector<tc::TradeEvent> events;
  // decode_event checks the JSON and the fields' form only: the pipeline validates every event
  // it is given (spec section 1), so parse_event (decode_event + validate) would do it twice.
  for (const char* line : lines) {
    auto parsed = tc::decode_event(line);
    if (!parsed.event) {
      std::fprintf(stderr, "consumer: %s\n", parsed.reason.c_str());
      co_return 1;
    }
    events.push_back(std::move(*parsed.event));
  }
  auto room = pipeline.try_reserve(events.size());  // the whole batch, or nothing
  if (!room) co_return 1;
  // One result per event, in event order, once every outcome is durable (a missing outcome
  // throws here: re-sending the batch is safe).
  auto results = co_await pipeline.async_submit_batch(events, std::move(room.value()),
                                                      boost::asio::use_awaitable);
  for (std::size_t i = 0; i < results.size(); ++i) {
    std::string out;
    tc::append_outcome_json(out, i + 1, events[i].trade_id, events[i].version, results[i].value());
    std::fputs(out.c_str(), stdout);
  }
  co_return 0;
}

int main() {
  std::fprintf(stderr, "consumer: tradecapture %s headers\n", TRADECAPTURE_VERSION_STRING);
  spdlog::set_level(spdlog::level::warn);  // keep stdout for the outcomes
  std::shared_ptr<tc::TradeStore> store = tc::make_memory_store();
  tc::Pipeline pipeline(store, tc::make_local_lock(), tc::make_position_processor());
  boost::asio::io_context io;
  int status = 1;
  boost::asio::co_spawn(io, run(pipeline), [&](std::exception_ptr e, int s) {
    status = e ? 1 : s;
  });
  io.run();
  auto rows = store->positions();  // a named result: value() refers into it
  for (const auto& row : rows.value()) {
    std::string out;
    tc::append_position_json(out, row);
    std::fputs(out.c_str(), stdout);
  }
  const auto m = pipeline.metrics();
  std::printf("accepted %llu, duplicate %llu, rejected %llu\n",
              static_cast<unsigned long long>(m.accepted),
              static_cast<unsigned long long>(m.duplicate),
              static_cast<unsigned long long>(m.rejected));
  return status;
}
