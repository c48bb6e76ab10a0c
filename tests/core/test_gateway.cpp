// The transport-independent gateway (spec section 5) driven directly, without a socket: every
// route and status, authentication, whole-request admission through the pipeline's own
// try_reserve, requests whose events get no outcome, and bad bodies.

#include <tradecapture/gateway.hpp>
#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>

#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>

using namespace tradecapture;
using namespace std::chrono_literals;

namespace {

constexpr const char* buy_t1 =
    R"({"trade_id": "T1", "version": 1, "type": "NEW", "account": "A", "book": "B", )"
    R"("security": "S", "side": "BUY", "quantity": "100", "price": "187.25"})";
constexpr const char* amend_t1 =
    R"({"trade_id": "T1", "version": 2, "type": "AMEND", "account": "A", "book": "B", )"
    R"("security": "S", "side": "SELL", "quantity": "40", "price": "2"})";
constexpr const char* buy_t2 =
    R"({"trade_id": "T 2/x", "version": 1, "type": "NEW", "account": "C", "book": "B", )"
    R"("security": "S", "side": "BUY", "quantity": "1", "price": "3"})";

/// A gateway over a memory store, a local lock and its own pipeline and worker pool.
struct Fixture {
  std::shared_ptr<TradeStore> store = make_memory_store();
  std::shared_ptr<PartitionLock> lock = make_local_lock();
  boost::asio::thread_pool workers{2};
  Pipeline pipeline;
  bool draining = false;
  Gateway gateway;

  explicit Fixture(GatewayOptions o = {}, std::size_t max_in_flight = 1000)
      : pipeline(store, lock, make_position_processor(), pipeline_options(max_in_flight)),
        gateway(pipeline, store, lock, with_defaults(std::move(o))) {}
  ~Fixture() {
    pipeline.stop();
    workers.join();
  }

  static PipelineOptions pipeline_options(std::size_t max_in_flight) {
    PipelineOptions p;
    p.threads = 2;
    p.max_in_flight = max_in_flight;
    return p;
  }
  GatewayOptions with_defaults(GatewayOptions o) {
    o.executor = workers.get_executor();
    if (!o.draining) o.draining = [this] { return draining; };
    return o;
  }

  GatewayResponse send(GatewayRequest r) {
    auto f = gateway.async_handle(std::move(r), boost::asio::use_future);
    REQUIRE(f.wait_for(20s) == std::future_status::ready);
    return f.get();
  }
  GatewayResponse get(std::string target, std::string auth = {}) {
    GatewayRequest r;
    r.method = "GET";
    r.target = std::move(target);
    r.authorization = std::move(auth);
    return send(std::move(r));
  }
  GatewayResponse post(std::string body, std::string content_type = "application/json") {
    return send(trades_request(std::move(body), std::move(content_type)));
  }
  static GatewayRequest trades_request(std::string body,
                                       std::string content_type = "application/json") {
    GatewayRequest r;
    r.method = "POST";
    r.target = "/v1/trades";
    r.content_type = std::move(content_type);
    r.body = std::move(body);
    return r;
  }
};

std::string outcome(int line, const char* id, int version, const char* kind, const char* reason,
                    const char* seq) {
  return std::string("{\"line\": ") + std::to_string(line) + ", \"trade_id\": \"" + id +
         "\", \"version\": " + std::to_string(version) + ", \"outcome\": \"" + kind +
         "\", \"reason\": \"" + reason + "\", \"seq\": " + seq + "}";
}

}  // namespace

TEST_CASE("gateway: POST /v1/trades answers every outcome in request order") {
  Fixture fx;
  SUBCASE("a JSON array, with a bad element and a resend") {
    auto r = fx.post(std::string("[") + buy_t1 + ", " + amend_t1 + ", {\"trade_id\": 7}, " +
                     buy_t1 + "]");
    CHECK(r.status == 200);
    CHECK(r.content_type == "application/json");
    CHECK(r.headers.empty());
    const std::string rejected = std::string("{\"line\": 3, \"trade_id\": null, \"version\": null, ") +
                                 "\"outcome\": \"REJECTED\", \"reason\": ";
    CHECK(r.body.rfind("{\"outcomes\": [" + outcome(1, "T1", 1, "ACCEPTED", "", "1") + ", " +
                           outcome(2, "T1", 2, "ACCEPTED", "", "2") + ", " + rejected,
                       0) == 0);
    CHECK(r.body.find("\"reason\": \"invalid: ") != std::string::npos);
    const std::string tail = outcome(4, "T1", 1, "DUPLICATE", "", "null") + "]}\n";
    CHECK(r.body.substr(r.body.size() - tail.size()) == tail);
    CHECK(fx.gateway.stats().rejected_at_parse == 1);
    CHECK(fx.gateway.stats().trade_requests == 1);
  }
  SUBCASE("one object; NDJSON counts physical lines and skips blank ones") {
    auto one = fx.post(buy_t1);
    CHECK(one.status == 200);
    CHECK(one.body == "{\"outcomes\": [" + outcome(1, "T1", 1, "ACCEPTED", "", "1") + "]}\n");
    auto nd = fx.post(std::string("\n") + amend_t1 + "\n\n" + buy_t2 + "\n",
                      "application/x-ndjson; charset=utf-8");
    CHECK(nd.status == 200);
    CHECK(nd.body == "{\"outcomes\": [" + outcome(2, "T1", 2, "ACCEPTED", "", "2") + ", " +
                         outcome(4, "T 2/x", 1, "ACCEPTED", "", "1") + "]}\n");
    auto empty = fx.post("[]");
    CHECK(empty.status == 200);
    CHECK(empty.body == "{\"outcomes\": []}\n");
  }
  SUBCASE("a body that is not JSON at all is 400; nothing is applied") {
    auto r = fx.post(std::string("[") + buy_t1);
    CHECK(r.status == 400);
    CHECK(r.body.rfind("{\"error\": \"invalid: not valid JSON", 0) == 0);
    CHECK(fx.pipeline.metrics().accepted == 0);
  }
}

TEST_CASE("gateway: GET /v1/positions and /v1/trades/{id}") {
  Fixture fx;
  REQUIRE(fx.post(std::string("[") + buy_t1 + ", " + buy_t2 + "]").status == 200);
  const std::string pos_a =
      R"({"account": "A", "book": "B", "security": "S", "net_quantity": "100", )"
      R"("bought_quantity": "100", "sold_quantity": "0", "bought_notional": "18725", )"
      R"("sold_notional": "0", "live_trades": 1, "seq": 1})";
  const std::string pos_c =
      R"({"account": "C", "book": "B", "security": "S", "net_quantity": "1", )"
      R"("bought_quantity": "1", "sold_quantity": "0", "bought_notional": "3", )"
      R"("sold_notional": "0", "live_trades": 1, "seq": 1})";
  auto all = fx.get("/v1/positions");
  CHECK(all.status == 200);
  CHECK(all.body == "{\"positions\": [" + pos_a + ", " + pos_c + "]}\n");
  CHECK(fx.get("/v1/positions?account=C&book=B").body == "{\"positions\": [" + pos_c + "]}\n");
  CHECK(fx.get("/v1/positions?account=%41").body == "{\"positions\": [" + pos_a + "]}\n");
  CHECK(fx.get("/v1/positions?account=nobody").body == "{\"positions\": []}\n");
  auto unknown = fx.get("/v1/positions?desk=1");
  CHECK(unknown.status == 400);
  CHECK(unknown.body ==
        "{\"error\": \"unknown query parameter 'desk' (filters: account, book, security)\"}\n");
  CHECK(fx.get("/v1/positions?account=A&account=C").status == 400);
  CHECK(fx.get("/v1/positions?account=%4").status == 400);

  auto t2 = fx.get("/v1/trades/T%202%2Fx");
  CHECK(t2.status == 200);
  CHECK(t2.body ==
        R"({"trade_id": "T 2/x", "events": [{"account": "C", "book": "B", "security": "S", )"
        R"("seq": 1, "trade_id": "T 2/x", "version": 1, "type": "NEW", "side": "BUY", )"
        R"("quantity": "1", "price": "3"}]})"
        "\n");
  auto none = fx.get("/v1/trades/T9");
  CHECK(none.status == 404);
  CHECK(none.body == "{\"error\": \"no accepted event of this trade id\"}\n");
  CHECK(fx.get("/v1/trades/%zz").status == 400);
}

TEST_CASE("gateway: unknown paths, trailing slashes, methods, media types, deadline header") {
  Fixture fx;
  auto r = fx.get("/v2/trades");
  CHECK(r.status == 404);
  CHECK(r.body == "{\"error\": \"no such resource\"}\n");
  r = fx.get("/v1/positions/?account=A");
  CHECK(r.status == 404);
  CHECK(r.body ==
        "{\"error\": \"no such resource: paths have no trailing slash; the resource is "
        "/v1/positions\", \"canonical_path\": \"/v1/positions\"}\n");
  CHECK(fx.get("/v1/trades/").body.find("\"canonical_path\": \"/v1/trades\"") !=
        std::string::npos);
  CHECK(fx.get("/v1/trades/a/b").status == 404);

  r = fx.get("/v1/trades");
  CHECK(r.status == 405);
  CHECK(r.header("Allow") == "POST");
  GatewayRequest post_positions = Fixture::trades_request("[]");
  post_positions.target = "/v1/positions";
  r = fx.send(post_positions);
  CHECK(r.status == 405);
  CHECK(r.header("Allow") == "GET, HEAD");
  GatewayRequest head;
  head.method = "HEAD";
  head.target = "/health/live";
  CHECK(fx.send(head).status == 200);

  r = fx.post("[]", "");
  CHECK(r.status == 415);
  CHECK(r.body ==
        "{\"error\": \"POST /v1/trades takes Content-Type application/json or "
        "application/x-ndjson\"}\n");
  CHECK(fx.post("[]", "text/plain").status == 415);
  CHECK(fx.post("[]", "Application/JSON").status == 200);
  GatewayRequest gz = Fixture::trades_request("[]");
  gz.content_encoding = {"identity", "gzip"};
  r = fx.send(gz);
  CHECK(r.status == 415);
  CHECK(r.header("Accept-Encoding") == "identity");
  CHECK(r.body ==
        "{\"error\": \"Content-Encoding 'identity' is not supported: send the body "
        "uncompressed (identity)\"}\n");
  gz.content_encoding = {"identity, Identity"};
  CHECK(fx.send(gz).status == 200);

  GatewayRequest bad = Fixture::trades_request("[]");
  for (auto values : {std::vector<std::string>{"0"}, {"86400001"}, {"1x"}, {"5", "5"}}) {
    bad.deadline_ms = values;
    r = fx.send(bad);
    CHECK(r.status == 400);
    CHECK(r.body ==
          "{\"error\": \"X-Request-Deadline-Ms must appear once, as a number of milliseconds "
          "from 1 to 86400000\"}\n");
    CHECK(fx.gateway.check(bad)->status == 400);  // refused before the body
  }
  bad.deadline_ms = {" 86400000 "};
  CHECK(fx.send(bad).status == 200);
  CHECK_FALSE(fx.gateway.check(bad));
}

TEST_CASE("gateway: health and metrics") {
  Fixture fx(GatewayOptions{.metrics = [] {
    GatewayResponse r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = "up 1\n";
    return r;
  }});
  auto live = fx.get("/health/live");
  CHECK(live.status == 200);
  CHECK(live.body == "{\"status\": \"live\"}\n");
  auto ready = fx.get("/health/ready");
  CHECK(ready.status == 200);
  CHECK(ready.body == "{\"status\": \"ready\"}\n");
  fx.draining = true;
  ready = fx.get("/health/ready");
  CHECK(ready.status == 503);
  CHECK(ready.body == "{\"status\": \"draining\"}\n");
  auto m = fx.get("/metrics");
  CHECK(m.status == 200);
  CHECK(m.content_type == "text/plain; version=0.0.4");
  CHECK(m.body == "up 1\n");

  Fixture bare;
  CHECK(bare.get("/metrics").status == 404);  // no exposition given
}

TEST_CASE("gateway: a bearer token guards every path but /health/*") {
  Fixture fx(GatewayOptions{.token = "s3cret"});
  for (const char* auth : {"", "Bearer s3cre", "Bearer s3cretx", "Basic s3cret", "Bearers3cret"}) {
    auto r = fx.get("/v1/positions", auth);
    CHECK(r.status == 401);
    CHECK(r.header("WWW-Authenticate") == "Bearer realm=\"tradecapture\"");
    CHECK(r.body == "{\"error\": \"missing or wrong 'Authorization: Bearer' token\"}\n");
  }
  CHECK(fx.get("/metrics").status == 401);
  CHECK(fx.get("/v1/positions", "Bearer s3cret").status == 200);
  CHECK(fx.get("/v1/positions", "bearer \t s3cret ").status == 200);
  CHECK(fx.get("/health/live").status == 200);
  CHECK(fx.get("/health/ready").status == 200);
  GatewayRequest post = Fixture::trades_request(buy_t1);
  CHECK(fx.send(post).status == 401);
  CHECK(fx.pipeline.metrics().accepted == 0);
  post.authorization = "Bearer s3cret";
  CHECK(fx.send(post).status == 200);
}

TEST_CASE("gateway: a request that does not fit under max_in_flight is refused whole (503)") {
  Fixture fx({}, 3);
  // Room held elsewhere (another request's events, say): 2 of 3 slots.
  auto held = fx.pipeline.try_reserve(2);
  REQUIRE(held);
  auto r = fx.post(std::string("[") + buy_t1 + ", " + buy_t2 + "]");
  CHECK(r.status == 503);
  CHECK(r.header("Retry-After") == "1");
  CHECK(r.body ==
        "{\"error\": \"overloaded: 2 events in flight, at most 3 (the pipeline's max_in_flight); "
        "retry later\"}\n");
  CHECK(fx.gateway.stats().overload_refusals == 1);
  CHECK(fx.pipeline.metrics().accepted == 0);  // nothing of it was applied
  CHECK(fx.pipeline.in_flight() == 2);         // and it holds no room
  // One event fits; a bad element takes no room.
  CHECK(fx.post(std::string("[") + buy_t1 + ", 5]").status == 200);
  held.value().release();
  // An answer may come before the pipeline counts its events' slots free: wait for that.
  fx.pipeline.drain();
  // Larger than the limit: admitted when nothing else is in flight.
  r = fx.post(std::string("[") + amend_t1 + ", " + buy_t2 + ", " + buy_t1 + ", " + buy_t2 + "]");
  CHECK(r.status == 200);
  fx.pipeline.drain();
  CHECK(fx.pipeline.in_flight() == 0);
}

TEST_CASE("gateway: events without an outcome make the request 503") {
  Fixture fx;
  SUBCASE("the request deadline passed: withdrawn") {
    GatewayRequest late = Fixture::trades_request(std::string("[") + buy_t1 + ", " + buy_t2 + "]");
    late.arrival = std::chrono::steady_clock::now() - 10s;
    late.deadline_ms = {"1000"};
    auto r = fx.send(late);
    CHECK(r.status == 503);
    CHECK(r.header("Retry-After") == "1");
    CHECK(r.body.rfind("{\"error\": \"2 of 2 events have no outcome (", 0) == 0);
    CHECK(r.body.find("); re-sending the whole request is safe\"}\n") != std::string::npos);
    CHECK(fx.gateway.stats().deadline_failures == 1);
    CHECK(fx.pipeline.metrics().accepted == 0);
  }
  SUBCASE("the pipeline stopped") {
    fx.pipeline.stop();
    auto r = fx.post(std::string("[") + buy_t1 + ", 5]");
    CHECK(r.status == 503);
    CHECK(r.body.rfind("{\"error\": \"1 of 2 events have no outcome (", 0) == 0);
    CHECK(fx.gateway.stats().deadline_failures == 0);
    CHECK(fx.gateway.stats().overload_refusals == 0);
  }
}

TEST_CASE("gateway: async_handle with use_awaitable") {
  Fixture fx;
  boost::asio::io_context io;
  GatewayResponse got;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        got = co_await fx.gateway.async_handle(Fixture::trades_request(buy_t1),
                                               boost::asio::use_awaitable);
      },
      boost::asio::detached);
  io.run();
  CHECK(got.status == 200);
  CHECK(got.body == "{\"outcomes\": [" + outcome(1, "T1", 1, "ACCEPTED", "", "1") + "]}\n");
}

TEST_CASE("gateway: a small POST is parsed on the caller's thread and answered by the pipeline; "
          "a large one goes through the executor") {
  // The executor is an io_context nobody runs yet: what needs it waits, what does not answers.
  boost::asio::io_context idle;
  auto store = make_memory_store();
  auto lock = make_local_lock();
  Pipeline pipeline(store, lock, make_position_processor(), Fixture::pipeline_options(1000));
  GatewayOptions o;
  o.executor = idle.get_executor();
  Gateway gateway(pipeline, store, lock, std::move(o));
  auto event = [](int i) {
    return R"({"trade_id": "L)" + std::to_string(i) +
           R"(", "version": 1, "type": "NEW", "account": "A", "book": "B", "security": "S", )"
           R"("side": "BUY", "quantity": "1", "price": "2"})";
  };
  auto array = [&](int from, int n) {
    std::string body = "[";
    for (int i = from; i < from + n; ++i) body += (i == from ? "" : ", ") + event(i);
    return body + "]";
  };
  // One event: parsed here, answered on the pipeline thread.
  auto one = gateway.async_handle(Fixture::trades_request(buy_t1), boost::asio::use_future);
  REQUIRE(one.wait_for(20s) == std::future_status::ready);
  CHECK(one.get().body == "{\"outcomes\": [" + outcome(1, "T1", 1, "ACCEPTED", "", "1") + "]}\n");
  // 16 events in under 4 KiB: the same.
  const std::string sixteen = array(0, 16);
  REQUIRE(sixteen.size() <= 4096);
  auto small = gateway.async_handle(Fixture::trades_request(sixteen), boost::asio::use_future);
  REQUIRE(small.wait_for(20s) == std::future_status::ready);
  CHECK(small.get().body.find("REJECTED") == std::string::npos);
  // 17 events, still under 4 KiB: parsed here, but the answer is built on the executor.
  const std::string seventeen = array(100, 17);
  REQUIRE(seventeen.size() <= 4096);
  auto answer_waits =
      gateway.async_handle(Fixture::trades_request(seventeen), boost::asio::use_future);
  // Over 4 KiB: parsed on the executor.
  const std::string large = array(200, 40);
  REQUIRE(large.size() > 4096);
  auto parse_waits = gateway.async_handle(Fixture::trades_request(large), boost::asio::use_future);
  CHECK(answer_waits.wait_for(300ms) == std::future_status::timeout);
  CHECK(parse_waits.wait_for(1ms) == std::future_status::timeout);
  // The 17 were submitted (and decided) without the executor; the 40 were not.
  for (int i = 0; i < 2000 && pipeline.metrics().accepted < 1 + 16 + 17; ++i)
    std::this_thread::sleep_for(5ms);
  CHECK(pipeline.metrics().accepted == 1 + 16 + 17);
  // Now run the executor until both answers are out.
  for (int i = 0; i < 2000; ++i) {
    idle.restart();
    idle.run_for(10ms);
    if (answer_waits.wait_for(0s) == std::future_status::ready &&
        parse_waits.wait_for(0s) == std::future_status::ready)
      break;
  }
  REQUIRE(answer_waits.wait_for(0s) == std::future_status::ready);
  REQUIRE(parse_waits.wait_for(0s) == std::future_status::ready);
  const auto a = answer_waits.get(), p = parse_waits.get();
  CHECK(a.status == 200);
  CHECK(p.status == 200);
  CHECK(a.body.find("REJECTED") == std::string::npos);
  CHECK(p.body.find("REJECTED") == std::string::npos);
  CHECK(pipeline.metrics().accepted == 1 + 16 + 17 + 40);
  pipeline.stop();
}
