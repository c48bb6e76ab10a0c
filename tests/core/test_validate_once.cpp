// Validate once (issue #12): `tradecapture replay` decodes a line with `decode_event` (the JSON
// and the fields' form) and leaves the rules of spec section 1 to the pipeline, which checks
// every submission itself. The outcome must be the one `parse_event` gives the same line.
// The gateway keeps `parse_event` and skips the pipeline's check instead (below); the Kafka
// source likewise (tests/kafka/test_kafka.cpp).
#include <tradecapture/detail/validate_once.hpp>
#include <tradecapture/event_codec.hpp>
#include <tradecapture/gateway.hpp>
#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/processor.hpp>
#include <tradecapture/request_body.hpp>

#include "support/validation_cases.hpp"

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <doctest/doctest.h>

#include <chrono>
#include <future>
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

// ---- the gateway ------------------------------------------------------------------------------
// The gateway needs `validate`'s verdict before it submits (an invalid event is answered by the
// gateway itself, counted in `rejected_at_parse`, and left out of the request's reservation), so
// it keeps `parse_event` and submits the valid events through the pipeline's internal entry that
// skips the second `validate` (detail/validate_once.hpp). The answers must be byte for byte those
// of `parse_event` + the pipeline's public path, and each event validated once.

namespace {

/// A gateway whose blocking work runs on one thread of its own, so that the validations of a
/// request (in `parse_event` and, before issue #12, again in the pipeline's batch submission)
/// all happen on that thread and can be counted there.
struct OneThreadGateway {
  std::shared_ptr<TradeStore> store = make_memory_store();
  std::shared_ptr<PartitionLock> lock = make_local_lock();
  boost::asio::thread_pool worker{1};
  Pipeline pipeline{store, lock, make_position_processor(), options()};
  Gateway gateway{pipeline, store, lock, gateway_options()};

  ~OneThreadGateway() {
    pipeline.stop();
    worker.join();
  }
  static PipelineOptions options() {
    PipelineOptions o;
    o.threads = 2;
    return o;
  }
  GatewayOptions gateway_options() {
    GatewayOptions o;
    o.executor = worker.get_executor();
    return o;
  }
  GatewayResponse post(std::string body, std::string content_type) {
    GatewayRequest r;
    r.method = "POST";
    r.target = "/v1/trades";
    r.content_type = std::move(content_type);
    r.body = std::move(body);
    // Handed to the gateway from its worker thread, as a transport's thread would: a small body
    // is parsed on the caller's thread, a large one on the executor, both this one thread.
    auto f = boost::asio::post(worker, boost::asio::use_future([this, r = std::move(r)]() mutable {
                                 return gateway.async_handle(std::move(r),
                                                             boost::asio::use_future);
                               }))
                 .get();
    REQUIRE(f.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    return f.get();
  }
  /// `validate` calls so far on the gateway's thread.
  std::uint64_t validations() {
    return boost::asio::post(
               worker, boost::asio::use_future([] { return detail::validations_on_this_thread(); }))
        .get();
  }
};

/// The reference: what the gateway answered before issue #12, rebuilt from its parts. Each event
/// text through `parse_event`; an invalid one REJECTED with its reason, a valid one submitted to
/// a pipeline of its own through the public API (which validates it again).
struct Reference {
  std::shared_ptr<TradeStore> store = make_memory_store();
  Pipeline pipeline{store, make_local_lock(), make_position_processor(), PipelineOptions{}};
  std::uint64_t rejected_at_parse = 0;

  /// The 200 body for `events` (line, text) in request order.
  std::string body(const std::vector<std::pair<std::uint64_t, std::string>>& events) {
    std::string out = "{\"outcomes\": [";
    for (std::size_t i = 0; i < events.size(); ++i) {
      if (i != 0) out += ", ";
      ParsedEvent p = parse_event(events[i].second);
      Outcome o;
      if (!p.event) {
        ++rejected_at_parse;
        o = Outcome::rejected(p.reason);
      } else {
        auto r = pipeline.submit(*p.event);
        REQUIRE(r.has_value());
        o = r.value();
      }
      append_outcome_json(out, events[i].first, p.echo_trade_id, p.echo_version, o);
      out.pop_back();
    }
    return out + "]}\n";
  }
};

/// How many of `texts` get as far as `validate` (the JSON and the fields' form are right).
std::uint64_t decodable(const std::vector<std::string>& texts) {
  std::uint64_t n = 0;
  for (const auto& t : texts) n += decode_event(t).event.has_value() ? 1 : 0;
  return n;
}

void check_same_counters(const PipelineMetrics& got, const PipelineMetrics& want) {
  CHECK(got.accepted == want.accepted);
  CHECK(got.duplicate == want.duplicate);
  CHECK(got.stale == want.stale);
  CHECK(got.rejected == want.rejected);
  CHECK(got.failed == want.failed);
}

}  // namespace

TEST_CASE(
    "gateway: every kind of invalid event gets parse_event's answer; each event validated "
    "once") {
  const auto cases = tctest::validation_cases();
  std::vector<std::string> json_texts, all_texts;
  for (const auto& c : cases) {
    INFO("event: " << c.text);
    const ParsedEvent full = parse_event(c.text);
    const bool decoded = decode_event(c.text).event.has_value();
    CHECK(full.event.has_value() == (c.kind == tctest::ValidationCase::valid));
    CHECK(decoded ==
          (c.kind == tctest::ValidationCase::valid || c.kind == tctest::ValidationCase::rule));
    all_texts.push_back(c.text);
    if (c.json()) json_texts.push_back(c.text);
  }
  OneThreadGateway gw;
  Reference ref;
  const std::uint64_t before = gw.validations();

  SUBCASE("one application/json array mixing them") {
    std::string body = "[";
    std::vector<std::pair<std::uint64_t, std::string>> events;
    for (std::size_t i = 0; i < json_texts.size(); ++i) {
      body += (i == 0 ? "" : ",\n ") + json_texts[i];
      events.emplace_back(i + 1, json_texts[i]);
    }
    body += "]";
    const GatewayResponse r = gw.post(body, "application/json");
    CHECK(r.status == 200);
    CHECK(r.body == ref.body(events));
    CHECK(gw.validations() - before == decodable(json_texts));
  }
  SUBCASE("application/x-ndjson, with blank lines and lines that are not JSON") {
    std::string body;
    std::vector<std::pair<std::uint64_t, std::string>> events;
    std::uint64_t line = 0;
    for (std::size_t i = 0; i < all_texts.size(); ++i) {
      if (i % 7 == 3) {
        body += i % 2 ? " \t\r\n" : "\n";  // blank: no outcome, but counted as a line
        ++line;
      }
      body += all_texts[i] + (i % 5 == 0 ? "\r\n" : "\n");
      events.emplace_back(++line, all_texts[i] + (i % 5 == 0 ? "\r" : ""));
    }
    const GatewayResponse r = gw.post(body, "application/x-ndjson");
    CHECK(r.status == 200);
    CHECK(r.body == ref.body(events));
    CHECK(gw.validations() - before == decodable(all_texts));
  }
  SUBCASE("one event per request, in sequence") {
    std::vector<std::string> singles;  // a top-level array is a batch of its elements, not one
    for (const auto& t : json_texts)
      if (t.front() != '[') singles.push_back(t);
    for (const auto& t : singles) {
      INFO("event: " << t);
      const GatewayResponse r = gw.post(t, "application/json");
      CHECK(r.status == 200);
      CHECK(r.body == ref.body({{1, t}}));
    }
    CHECK(gw.validations() - before == decodable(singles));
  }
  SUBCASE("bodies that are not JSON at all are 400, as before, and validate nothing") {
    for (const std::string body :
         {std::string(), std::string("["), std::string("[") + json_texts[0] + ",",
          json_texts[0] + " x", std::string("[{\"trade_id\": \"\\uD800\"}]"),
          std::string("[\"\xC3\"]"), std::string("[1,]")}) {
      INFO("body: " << body);
      const GatewayResponse r = gw.post(body, "application/json");
      const ParsedBody parsed = parse_request_body(body, BodyFormat::json);
      REQUIRE(!parsed.error.empty());
      CHECK(r.status == 400);
      CHECK(r.body == gateway_error(400, parsed.error).body);
    }
    CHECK(gw.validations() == before);
  }
  // The gateway's own counters and the pipeline's are those of the old path: invalid events are
  // answered by the gateway (rejected_at_parse), only valid ones reach the pipeline.
  CHECK(gw.gateway.stats().rejected_at_parse == ref.rejected_at_parse);
  check_same_counters(gw.pipeline.metrics(), ref.pipeline.metrics());
  CHECK(gw.store->positions().value() == ref.store->positions().value());
}

TEST_CASE("gateway: invalid events are still answered by the gateway itself, not the pipeline") {
  // Once the pipeline stops, every submitted event completes `stopped` (a 503); a request whose
  // events are all invalid submits nothing and is still answered 200 with parse_event's reasons,
  // which would not hold if the pipeline were left to reject them.
  OneThreadGateway gw;
  gw.pipeline.stop();
  const std::string bad1 = R"({"trade_id": "", "version": 1, "type": "CANCEL", "account": "A", )"
                           R"("book": "B", "security": "S"})";
  const std::string bad2 = R"({"trade_id": "T", "version": 1, "type": "CANCEL", "account": "A", )"
                           R"("book": "B", "security": "S"})";
  const GatewayResponse r = gw.post("[" + bad1 + ", " + bad2 + "]", "application/json");
  CHECK(r.status == 200);
  std::string want = "{\"outcomes\": [";
  append_outcome_json(want, 1, std::string(), 1, Outcome::rejected(parse_event(bad1).reason));
  want.pop_back();
  want += ", ";
  append_outcome_json(want, 2, std::string("T"), 1, Outcome::rejected(parse_event(bad2).reason));
  want.pop_back();
  CHECK(r.body == want + "]}\n");
  CHECK(gw.gateway.stats().rejected_at_parse == 2);
  CHECK(gw.pipeline.metrics().rejected == 0);
}

TEST_CASE("pipeline: the public entry points validate every event, batches included") {
  // What detail::PrevalidatedSubmit skips stays in force for every host.
  auto store = make_memory_store();
  Pipeline pl(store, make_local_lock(), make_position_processor(), PipelineOptions{});
  TradeEvent bad = *decode_event(R"({"trade_id": "T", "version": 1, "type": "CANCEL", )"
                                 R"("account": "A", "book": "B", "security": "S"})")
                        .event;
  const std::string reason = validate(bad);
  REQUIRE(!reason.empty());
  auto room = pl.try_reserve(2);
  REQUIRE(room.has_value());
  auto f = pl.async_submit_batch({bad, bad}, std::move(room.value()), boost::asio::use_future);
  const auto results = f.get();
  REQUIRE(results.size() == 2);
  for (const auto& r : results) CHECK(r.value() == Outcome::rejected(reason));
  CHECK(pl.async_submit(bad, boost::asio::use_future).get() == Outcome::rejected(reason));
  CHECK(pl.metrics().rejected == 3);
  CHECK(pl.in_flight() == 0);
}
