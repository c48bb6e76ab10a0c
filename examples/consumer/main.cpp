// Embeds tradecapture from its installed package: a pipeline over the in-memory store and the
// local lock, a few events, their outcomes and the resulting position.

#include <tradecapture/decimal.hpp>
#include <tradecapture/event_codec.hpp>
#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/processor.hpp>
#include <tradecapture/version.hpp>

#include <spdlog/spdlog.h>

#include <cstdio>
#include <string>
#include <vector>

namespace tc = tradecapture;

namespace {

tc::TradeEvent make_event(std::string id, std::int64_t version, tc::TradeType type, tc::Side side,
                          const char* quantity, const char* price) {
  tc::TradeEvent e;
  e.trade_id = std::move(id);
  e.version = version;
  e.type = type;
  e.partition = {"ACC1", "BOOK1", "AAPL"};
  e.side = side;
  e.quantity = tc::Decimal::parse(quantity, 6).value();
  e.price = tc::Decimal::parse(price, 8).value();
  return e;
}

}  // namespace

static_assert(tradecapture::version_at_least(0, 1), "needs tradecapture 0.1 or later");

int main() {
  std::fprintf(stderr, "consumer: tradecapture %s headers\n", TRADECAPTURE_VERSION_STRING);
  spdlog::set_level(spdlog::level::warn);  // keep stdout for the outcomes
  std::shared_ptr<tc::TradeStore> store = tc::make_memory_store();
  tc::Pipeline pipeline(store, tc::make_local_lock(), tc::make_position_processor());

  std::vector<tc::TradeEvent> events = {
      make_event("T1", 1, tc::TradeType::New, tc::Side::Buy, "100", "187.25"),
      make_event("T1", 1, tc::TradeType::New, tc::Side::Buy, "100.0", "187.250"),  // resend
      make_event("T1", 2, tc::TradeType::Amend, tc::Side::Sell, "40", "188"),
      make_event("T2", 2, tc::TradeType::Amend, tc::Side::Buy, "1", "1"),  // unknown trade
  };
  // A line in the JSON format, parsed by the library's codec.
  auto parsed = tc::parse_event(
      R"({"trade_id": "T1", "version": 3, "type": "CANCEL", "account": "ACC1", "book": "BOOK1", )"
      R"("security": "AAPL"})");
  if (!parsed.event) {
    std::fprintf(stderr, "consumer: unexpected parse failure: %s\n", parsed.reason.c_str());
    return 1;
  }
  events.push_back(*parsed.event);

  int line = 0;
  for (auto& e : events) {
    ++line;
    const std::string id = e.trade_id;
    const std::int64_t version = e.version;
    auto outcome = pipeline.submit(std::move(e));
    if (!outcome) {
      std::fprintf(stderr, "consumer: submit failed: %s\n", outcome.error().message().c_str());
      return 1;
    }
    std::string out;
    tc::append_outcome_json(out, static_cast<std::uint64_t>(line), id, version, outcome.value());
    std::fputs(out.c_str(), stdout);
  }
  pipeline.stop();
  auto rows = store->positions();
  if (!rows) {
    std::fprintf(stderr, "consumer: positions failed: %s\n", rows.error().message().c_str());
    return 1;
  }
  for (const auto& row : rows.value()) {
    std::string out;
    tc::append_position_json(out, row);
    std::fputs(out.c_str(), stdout);
  }
  const auto m = pipeline.metrics();
  std::printf(
      "accepted %llu, duplicate %llu, rejected %llu\n", static_cast<unsigned long long>(m.accepted),
      static_cast<unsigned long long>(m.duplicate), static_cast<unsigned long long>(m.rejected));
  return 0;
}
