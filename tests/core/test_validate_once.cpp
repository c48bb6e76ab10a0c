// Validate once (issue #12): `tradecapture replay` decodes a line with `decode_event` (the JSON
// and the fields' form) and leaves the rules of spec section 1 to the pipeline, which checks
// every submission itself. The outcome must be the one `parse_event` gives the same line.
#include <tradecapture/event_codec.hpp>
#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/processor.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace tradecapture;

TEST_CASE("pipeline: an event from decode_event is validated once, with parse_event's reason") {
  auto store = make_memory_store();
  PipelineOptions o;
  o.threads = 1;
  Pipeline pl(store, make_local_lock(), make_position_processor(), o);

  const std::string part = R"("account":"A","book":"B","security":"S")";
  auto line = [&](const std::string& head, const std::string& tail) {
    return "{" + head + "," + part + tail + "}";
  };
  const std::string buy = R"(,"side":"BUY","quantity":"100","price":"187.25")";
  const std::vector<std::string> lines = {
      line(R"("trade_id":"T1","version":1,"type":"NEW")", buy),
      line(R"("trade_id":"T2","version":0,"type":"NEW")", buy),
      line(R"("trade_id":"T2","version":2,"type":"NEW")", buy),
      line(R"("trade_id":"T2","version":1,"type":"CANCEL")", ""),
      line(R"("trade_id":"","version":1,"type":"NEW")", buy),
      line(R"("trade_id":")" + std::string(65, 'x') + R"(","version":1,"type":"NEW")", buy),
      line(R"("trade_id":"a\u0001","version":1,"type":"NEW")", buy),
      line(R"("trade_id":"T3","version":1,"type":"NEW")",
           R"(,"side":"SELL","quantity":"0","price":"1")"),
      line(R"("trade_id":"T3","version":1,"type":"NEW")",
           R"(,"side":"SELL","quantity":"1000000000001","price":"1")"),
      line(R"("trade_id":"T3","version":1,"type":"NEW")",
           R"(,"side":"SELL","quantity":"1","price":"1000000000.5")"),
      line(R"("trade_id":"T1","version":2,"type":"AMEND")",
           R"(,"side":"SELL","quantity":"5","price":"0")"),
  };
  int rejected = 0;
  for (const std::string& l : lines) {
    INFO("line: " << l);
    const ParsedEvent full = parse_event(l);
    const ParsedEvent form = decode_event(l);
    REQUIRE(form.event.has_value());  // every line here is well formed
    auto r = pl.submit(*form.event);
    REQUIRE(r.has_value());
    if (full.event) {
      CHECK(r.value().kind == OutcomeKind::Accepted);
    } else {
      ++rejected;
      CHECK(r.value() == Outcome::rejected(full.reason));
    }
  }
  CHECK(rejected == 9);
  // The invalid events changed nothing: T1's NEW and AMEND are the partition's only events.
  auto rows = store->positions();
  REQUIRE(rows.has_value());
  REQUIRE(rows.value().size() == 1);
  CHECK(rows.value()[0].seq == 2);
  CHECK(rows.value()[0].position.live_trades == 1);
}
