// Pipeline behaviour: ordering, the model-based randomized test, back-pressure, drain/stop,
// retries, fencing, poisoned events and the completion-token forms.

#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/store_wrapper.hpp>
#ifdef TRADECAPTURE_HAVE_SOCI
#include <tradecapture/soci_store.hpp>
#endif
#ifdef TRADECAPTURE_HAVE_POSTGRES_TESTS
#include "support/stores.hpp"  // make_postgres_store: a fresh database on the shared server
#endif
#include "support/events.hpp"
#include "support/held_store.hpp"
#include "support/trace.hpp"

#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <thread>

using namespace tradecapture;
using namespace std::chrono_literals;

namespace {

using tctest::dec;
using tctest::ev;
using tctest::pk;

PipelineOptions quiet_options(std::size_t threads = 2) {
  PipelineOptions o;
  o.threads = threads;
  o.retry.initial_backoff = 1ms;
  o.retry.max_backoff = 5ms;
  return o;
}

/// A temporary directory removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("tc-pipeline-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  static std::atomic<int>& counter() {
    static std::atomic<int> c{0};
    return c;
  }
};

struct StoreFactory {
  std::string name;
  std::function<std::shared_ptr<TradeStore>(TempDir&)> make;
};

std::vector<StoreFactory> stores() {
  std::vector<StoreFactory> f;
  f.push_back({"memory", [](TempDir&) { return make_memory_store(); }});
#ifdef TRADECAPTURE_HAVE_SOCI
  f.push_back({"sqlite", [](TempDir& d) {
                 auto s = open_soci_store("sqlite:" + (d.path / "t.db").string());
                 REQUIRE(s);
                 return s.value();
               }});
#endif
#ifdef TRADECAPTURE_HAVE_POSTGRES_TESTS
  f.push_back({"postgresql", [](TempDir&) { return tctest::make_postgres_store().store; }});
#endif
  return f;
}

// ---- An independent sequential model of spec sections 2-3 ---------------------------------

struct ModelTrade {
  std::int64_t version;
  Side side;
  Decimal q, p;
  bool cancelled;
};
struct ModelPartition {
  std::map<std::string, ModelTrade> trades;
  Decimal net, bq, sq, bn, sn;
  std::int64_t live = 0;
  std::uint64_t seq = 0;
};

struct Model {
  std::map<std::pair<std::string, std::int64_t>, TradeEvent> accepted;
  std::map<PartitionKey, ModelPartition> parts;
  std::vector<StoredEvent> log;

  static void effect(ModelPartition& m, Side side, Decimal q, Decimal p, bool reverse) {
    Decimal n = checked_mul(q, p).value();
    auto add = [&](Decimal& t, Decimal v) {
      t = reverse ? checked_sub(t, v).value() : checked_add(t, v).value();
    };
    auto sub = [&](Decimal& t, Decimal v) {
      t = reverse ? checked_add(t, v).value() : checked_sub(t, v).value();
    };
    if (side == Side::Buy) {
      add(m.bq, q);
      add(m.net, q);
      add(m.bn, n);
    } else {
      add(m.sq, q);
      add(m.sn, n);
      sub(m.net, q);
    }
  }

  Outcome apply(const TradeEvent& e) {
    if (!validate(e).empty()) return Outcome::rejected(validate(e));
    auto key = std::make_pair(e.trade_id, e.version);
    if (auto it = accepted.find(key); it != accepted.end()) {
      const TradeEvent& a = it->second;
      bool same = a.type == e.type && a.partition == e.partition &&
                  (e.type == TradeType::Cancel ||
                   (a.side == e.side && a.quantity == e.quantity && a.price == e.price));
      return same ? Outcome::duplicate() : Outcome::rejected("conflict: ");
    }
    ModelPartition& m = parts[e.partition];
    auto t = m.trades.find(e.trade_id);
    if (e.type == TradeType::New) {
      m.trades[e.trade_id] = ModelTrade{1, e.side, e.quantity, e.price, false};
      effect(m, e.side, e.quantity, e.price, false);
      ++m.live;
    } else {
      if (t == m.trades.end()) return Outcome::rejected("unknown trade");
      if (e.version <= t->second.version) return Outcome::stale();
      if (t->second.cancelled) return Outcome::rejected("trade cancelled");
      effect(m, t->second.side, t->second.q, t->second.p, true);
      t->second.version = e.version;
      if (e.type == TradeType::Amend) {
        t->second.side = e.side;
        t->second.q = e.quantity;
        t->second.p = e.price;
        effect(m, e.side, e.quantity, e.price, false);
      } else {
        t->second.cancelled = true;
        --m.live;
      }
    }
    accepted[key] = e;
    log.push_back(StoredEvent{e, ++m.seq});
    return Outcome::accepted(m.seq);
  }
};

/// Random events (tests/support/trace.hpp, the adversarial mix): exact and conflicting resends,
/// also across partitions (trade ids reused in other partitions), amends, cancels, stale
/// versions, version gaps, amends before their NEW, unknown trades, invalid events and edge
/// amounts, over partitions whose names need escaping.
std::vector<TradeEvent> random_trace(std::uint32_t seed, int n) {
  tctest::TraceOptions o;
  o.seed = seed;
  o.events = static_cast<std::size_t>(n);
  o.keys = {pk("A_B", "C"), pk("A", "B_C"), pk("acct1", "bk", "IBM"), pk("acct1", "bk", "MSFT"),
            pk("acct2", "b2", "IBM"), pk("\xC3\xA9t\xC3\xA9", "b", "s")};
  for (int i = 0; i < 10; ++i) o.keys.push_back(pk("p" + std::to_string(i)));
  o.mix = tctest::adversarial_mix();
  o.mix.cross_partition = true;
  o.mix.edge_amounts = true;
  return tctest::events_of(tctest::make_trace(o));
}

/// Submits every event from one thread (in order) and collects the outcomes by index.
std::vector<Outcome> run_all(Pipeline& pl, const std::vector<TradeEvent>& events) {
  std::vector<Outcome> outcomes(events.size());
  std::vector<boost::system::error_code> errors(events.size());
  std::atomic<std::size_t> done{0};
  for (std::size_t i = 0; i < events.size(); ++i) {
    pl.async_submit(events[i], [&, i](boost::system::error_code ec, Outcome o) {
      errors[i] = ec;
      outcomes[i] = std::move(o);
      done.fetch_add(1);
    });
  }
  pl.drain();
  REQUIRE(done.load() == events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    INFO("event " << i);
    REQUIRE_FALSE(errors[i]);
  }
  return outcomes;
}

void check_against_model(TradeStore& store, const std::vector<TradeEvent>& events,
                         const std::vector<Outcome>& got) {
  Model m;
  for (std::size_t i = 0; i < events.size(); ++i) {
    Outcome want = m.apply(events[i]);
    INFO("event " << i << " trade " << events[i].trade_id << " v" << events[i].version);
    CHECK(got[i].kind == want.kind);
    CHECK(got[i].seq == want.seq);
    if (want.kind == OutcomeKind::Rejected) {
      // Reasons with a ':' are compared up to it ("conflict:", "invalid:"), others exactly.
      const auto colon = want.reason.find(':');
      if (colon == std::string::npos) {
        CHECK(got[i].reason == want.reason);
      } else {
        CHECK(got[i].reason.substr(0, colon + 1) == want.reason.substr(0, colon + 1));
      }
    }
  }
  auto positions = store.positions();
  REQUIRE(positions);
  std::size_t with_events = 0;
  for (auto& [k, mp] : m.parts) with_events += mp.seq > 0;
  REQUIRE(positions.value().size() == with_events);
  for (const auto& row : positions.value()) {
    const ModelPartition& mp = m.parts.at(row.partition);
    CHECK(row.seq == mp.seq);
    CHECK(row.position.net_quantity == mp.net);
    CHECK(row.position.bought_quantity == mp.bq);
    CHECK(row.position.sold_quantity == mp.sq);
    CHECK(row.position.bought_notional == mp.bn);
    CHECK(row.position.sold_notional == mp.sn);
    CHECK(row.position.live_trades == mp.live);
  }
  std::vector<StoredEvent> stored;
  REQUIRE(store.scan_events([&](const StoredEvent& e) {
    stored.push_back(e);
    return true;
  }));
  auto expected = m.log;
  std::stable_sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) {
    return a.event.partition < b.event.partition;
  });
  REQUIRE(stored.size() == expected.size());
  for (std::size_t i = 0; i < stored.size(); ++i) {
    CHECK(stored[i].seq == expected[i].seq);
    CHECK(stored[i].event.trade_id == expected[i].event.trade_id);
    CHECK(stored[i].event.version == expected[i].event.version);
    CHECK(stored[i].event.same_content(expected[i].event));
  }
}

/// Submits `e`, which must be ACCEPTED with sequence number `seq`.
void require_accepted(Pipeline& pl, TradeEvent e, std::uint64_t seq) {
  auto r = pl.submit(std::move(e));
  REQUIRE(r);
  CHECK(r.value() == Outcome::accepted(seq));
}

/// A store whose commits can be held, failed or counted (fault injection).
class ControlledStore final : public tctest::HeldStore {
 public:
  using HeldStore::HeldStore;
  std::atomic<int> fail_next{0};
  boost::system::error_code fail_with = errc::store_busy;
  std::atomic<int> commits{0};

 protected:
  result<void> do_commit_(const CommitBatch& b) override {
    wait_while_held();
    if (fail_next.load() > 0) {
      fail_next.fetch_sub(1);
      return fail_with;
    }
    ++commits;
    return TradeStoreWrapper::do_commit_(b);
  }
};

/// A processor that throws on one trade id and otherwise defers to the reference one.
class ThrowingProcessor final : public Processor {
 public:
  Decision decide(const TradeEvent& e, const PartitionState& s) const override {
    if (e.trade_id == "POISON") throw std::runtime_error("boom");
    return inner_->decide(e, s);
  }

 private:
  std::shared_ptr<const Processor> inner_ = make_position_processor();
};

}  // namespace

TEST_CASE("model-based randomized trace through the pipeline matches a sequential model") {
  for (const auto& factory : stores()) {
    for (std::size_t threads : {1u, 4u}) {
      SUBCASE((factory.name + " threads=" + std::to_string(threads)).c_str()) {
        for (std::uint32_t seed : {1u, 2u, 3u}) {
          TempDir dir;
          auto store = factory.make(dir);
          auto events = random_trace(seed * 7919 + static_cast<std::uint32_t>(threads), 3000);
          PipelineOptions o = quiet_options(threads);
          o.max_batch = 97;  // many batches, partitions cut mid-run
          o.max_batch_per_partition = 13;
          Pipeline pl(store, make_local_lock(), make_position_processor(), o);
          auto got = run_all(pl, events);
          check_against_model(*store, events, got);
        }
      }
    }
  }
}

TEST_CASE("a store decorator that overrides only find_events sees the pipeline's key lookups") {
  // The pipeline looks keys up with find_events_into. TradeStoreWrapper leaves that to
  // TradeStore's default, which calls the decorator's find_events: a decorator (metrics, fault
  // injection) that overrides find_events alone is not bypassed.
  class Counting final : public TradeStoreWrapper {
   public:
    using TradeStoreWrapper::TradeStoreWrapper;
    std::atomic<int> lookups{0};
    result<std::vector<std::optional<StoredEvent>>> find_events(
        std::span<const IdempotencyKey> keys) override {
      ++lookups;
      return TradeStoreWrapper::find_events(keys);
    }
  };
  auto store = std::make_shared<Counting>(make_memory_store());
  Pipeline pl(store, make_local_lock(), make_position_processor(), PipelineOptions{});
  auto r = pl.submit(ev("T1", 1, TradeType::New, pk("A")));
  REQUIRE(r);
  CHECK(r.value() == Outcome::accepted(1));
  // A re-send: its partition holds the trade, so its key is looked up (a fresh one is not).
  r = pl.submit(ev("T1", 1, TradeType::New, pk("A")));
  REQUIRE(r);
  CHECK(r.value() == Outcome::duplicate());
  CHECK(store->lookups.load() >= 1);
}

TEST_CASE("cross-partition idempotency keys are decided in submission order") {
  // T/1 first goes to a partition with a long queue, then to an idle one: the first wins.
  auto store = make_memory_store();
  PipelineOptions o = quiet_options(4);
  o.max_batch = 8;
  Pipeline pl(store, make_local_lock(), make_position_processor(), o);
  std::vector<TradeEvent> events;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 20; ++i)
      events.push_back(ev("busy" + std::to_string(round) + "-" + std::to_string(i), 1,
                          TradeType::New, pk("busy")));
    std::string id = "K" + std::to_string(round);
    events.push_back(ev(id, 1, TradeType::New, pk("busy")));
    events.push_back(ev(id, 1, TradeType::New, pk("idle" + std::to_string(round % 5))));
  }
  auto got = run_all(pl, events);
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i].partition.account.rfind("idle", 0) == 0) {
      CHECK(got[i].kind == OutcomeKind::Rejected);
      CHECK(got[i].reason.rfind("conflict:", 0) == 0);
      CHECK(got[i - 1].kind == OutcomeKind::Accepted);
    }
  }
}

TEST_CASE("per-partition order holds under many submitting threads") {
  auto store = make_memory_store();
  Pipeline pl(store, make_local_lock(), make_position_processor(), quiet_options(3));
  constexpr int kThreads = 6, kPerThread = 2000;
  std::vector<std::vector<std::uint64_t>> seqs(kThreads, std::vector<std::uint64_t>(kPerThread));
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      // Each thread owns two partitions and alternates between them.
      for (int i = 0; i < kPerThread; ++i) {
        auto p = pk("t" + std::to_string(t), std::to_string(i % 2));
        pl.async_submit(ev("t" + std::to_string(t) + "-" + std::to_string(i), 1, TradeType::New, p),
                        [&, t, i](boost::system::error_code ec, Outcome o) {
                          REQUIRE_FALSE(ec);
                          seqs[t][i] = o.seq;
                        });
      }
    });
  }
  for (auto& t : ts) t.join();
  pl.drain();
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      // The i-th event of a partition (i/2 + 1 in its own sequence) got exactly that number.
      CHECK(seqs[t][i] == static_cast<std::uint64_t>(i / 2 + 1));
    }
  }
}

TEST_CASE("back-pressure: fail-fast refuses past the in-flight limit, wait blocks") {
  auto inner = make_memory_store();
  auto store = std::make_shared<ControlledStore>(inner);
  SUBCASE("fail fast") {
    PipelineOptions o = quiet_options(1);
    o.max_in_flight = 8;
    o.on_overload = OverloadPolicy::fail_fast;
    Pipeline pl(store, make_local_lock(), make_position_processor(), o);
    store->hold();
    std::atomic<int> overloaded{0}, ok{0};
    for (int i = 0; i < 20; ++i) {
      pl.async_submit(ev("F" + std::to_string(i), 1, TradeType::New, pk("bp")),
                      [&](boost::system::error_code ec, Outcome) {
                        if (ec == errc::overloaded) {
                          ++overloaded;
                        } else if (!ec) {
                          ++ok;
                        }
                      });
    }
    CHECK(overloaded.load() == 12);
    CHECK(pl.metrics().in_flight == 8);
    store->release();
    pl.drain();
    CHECK(ok.load() == 8);
  }
  SUBCASE("wait") {
    PipelineOptions o = quiet_options(1);
    o.max_in_flight = 4;
    Pipeline pl(store, make_local_lock(), make_position_processor(), o);
    store->hold();
    std::atomic<int> submitted{0}, completed{0};
    std::thread submitter([&] {
      for (int i = 0; i < 50; ++i) {
        pl.async_submit(ev("W" + std::to_string(i), 1, TradeType::New, pk("bp")),
                        [&](boost::system::error_code ec, Outcome) {
                          CHECK_FALSE(ec);
                          ++completed;
                        });
        ++submitted;
      }
    });
    // While the store is held nothing completes, so the submitter cannot pass the limit.
    for (int i = 0; i < 50; ++i) {
      std::this_thread::sleep_for(2ms);
      CHECK(pl.metrics().in_flight <= 4);
      CHECK(submitted.load() <= 4);
    }
    store->release();
    submitter.join();
    pl.drain();
    CHECK(completed.load() == 50);
  }
}

TEST_CASE("stop finishes every accepted submission and refuses new ones") {
  auto store = make_memory_store();
  std::atomic<int> completed{0}, failed{0};
  auto pl = std::make_unique<Pipeline>(store, make_local_lock(), make_position_processor(),
                                       quiet_options(2));
  for (int i = 0; i < 20000; ++i) {
    pl->async_submit(ev("S" + std::to_string(i), 1, TradeType::New, pk("s" + std::to_string(i % 37))),
                     [&](boost::system::error_code ec, Outcome o) {
                       if (ec) {
                         ++failed;
                       } else {
                         CHECK(o.kind == OutcomeKind::Accepted);
                         ++completed;
                       }
                     });
  }
  pl->stop();
  CHECK(completed.load() == 20000);
  CHECK(failed.load() == 0);
  auto r = pl->submit(ev("late", 1, TradeType::New, pk("s")));
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::stopped);
  pl.reset();  // destruction after stop is fine
  auto positions = store->positions();
  REQUIRE(positions);
  std::uint64_t total = 0;
  for (auto& row : positions.value()) total += row.seq;
  CHECK(total == 20000);
}

TEST_CASE("destruction with work in flight loses no completion") {
  auto store = make_memory_store();
  std::atomic<int> completed{0};
  {
    Pipeline pl(store, make_local_lock(), make_position_processor(), quiet_options(2));
    for (int i = 0; i < 5000; ++i)
      pl.async_submit(ev("D" + std::to_string(i), 1, TradeType::New, pk("d")),
                      [&](boost::system::error_code, Outcome) { ++completed; });
  }
  CHECK(completed.load() == 5000);
}

TEST_CASE("a processor that throws rejects that event only; the partition goes on") {
  auto store = make_memory_store();
  Pipeline pl(store, make_local_lock(), std::make_shared<ThrowingProcessor>(), quiet_options(2));
  auto a = pl.submit(ev("A", 1, TradeType::New, pk("poison")));
  auto b = pl.submit(ev("POISON", 1, TradeType::New, pk("poison")));
  auto c = pl.submit(ev("C", 1, TradeType::New, pk("poison")));
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(c);
  CHECK(a.value().seq == 1);
  CHECK(b.value().kind == OutcomeKind::Rejected);
  CHECK(b.value().reason.rfind("processor error: boom", 0) == 0);
  CHECK(c.value() == Outcome::accepted(2));
}

TEST_CASE("invalid events are rejected at once with a reason and never block the partition") {
  auto store = make_memory_store();
  Pipeline pl(store, make_local_lock(), make_position_processor(), quiet_options(1));
  auto bad = ev("X", 2, TradeType::New, pk("inv"));
  auto r = pl.submit(bad);
  REQUIRE(r);
  CHECK(r.value().kind == OutcomeKind::Rejected);
  CHECK(r.value().reason.rfind("invalid:", 0) == 0);
  require_accepted(pl, ev("X", 1, TradeType::New, pk("inv")), 1);
}

TEST_CASE("transient commit failures are retried, then succeed; persistent ones are reported") {
  auto inner = make_memory_store();
  auto store = std::make_shared<ControlledStore>(inner);
  PipelineOptions o = quiet_options(1);
  o.retry.max_attempts = 5;
  Pipeline pl(store, make_local_lock(), make_position_processor(), o);
  store->fail_next = 3;
  require_accepted(pl, ev("R1", 1, TradeType::New, pk("retry")), 1);
  CHECK(pl.metrics().retries >= 3);

  store->fail_next = 100;
  auto failed = pl.submit(ev("R2", 1, TradeType::New, pk("retry")));
  REQUIRE_FALSE(failed);
  CHECK(failed.error() == errc::store_busy);
  CHECK(classify(failed.error()) == retry_class::retry_now);
  CHECK(pl.metrics().failed == 1);

  // The store recovers: the failed event is not lost state-wise, a resend is accepted with the
  // next sequence number and nothing was half-written.
  store->fail_next = 0;
  require_accepted(pl, ev("R2", 1, TradeType::New, pk("retry")), 2);
}

TEST_CASE("a fenced-off or conflicting commit is decided again on fresh state") {
  auto inner = make_memory_store();
  auto store = std::make_shared<ControlledStore>(inner);
  Pipeline pl(store, make_local_lock(), make_position_processor(), quiet_options(1));
  REQUIRE(pl.submit(ev("F", 1, TradeType::New, pk("fence"))));
  std::int64_t version = 2;
  for (auto code : {errc::fenced_off, errc::sequence_conflict, errc::key_conflict}) {
    store->fail_with = code;
    store->fail_next = 1;
    auto r = pl.submit(ev("F", version++, TradeType::Amend, pk("fence")));
    REQUIRE(r);
    CHECK(r.value().kind == OutcomeKind::Accepted);
  }
  CHECK(pl.metrics().retries >= 3);
  auto rows = store->positions();
  REQUIRE(rows);
  CHECK(rows.value().at(0).seq == 4);
}

TEST_CASE("completion tokens: use_future and use_awaitable") {
  auto store = make_memory_store();
  boost::asio::io_context io;
  PipelineOptions o = quiet_options(1);
  Pipeline pl(store, make_local_lock(), make_position_processor(), o);
  auto fut = pl.async_submit(ev("U1", 1, TradeType::New, pk("tok")), boost::asio::use_future);
  CHECK(fut.get() == Outcome::accepted(1));

  Outcome got;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        got = co_await pl.async_submit(ev("U2", 1, TradeType::New, pk("tok")),
                                       boost::asio::use_awaitable);
      },
      boost::asio::detached);
  io.run();
  CHECK(got == Outcome::accepted(2));
}

TEST_CASE("the pipeline runs on a host's io_context") {
  auto store = make_memory_store();
  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  std::thread t([&] { io.run(); });
  {
    PipelineOptions o = quiet_options(3);
    o.executor = io.get_executor();
    Pipeline pl(store, make_local_lock(), make_position_processor(), o);
    auto events = random_trace(99, 500);
    auto got = run_all(pl, events);
    check_against_model(*store, events, got);
  }
  guard.reset();
  t.join();
}

TEST_CASE("retries are counted by cause; lock wait, leases held and store stats are reported") {
  auto inner = make_memory_store();
  auto store = std::make_shared<ControlledStore>(inner);
  PipelineOptions o = quiet_options(1);
  Pipeline pl(store, make_local_lock(), make_position_processor(), o);
  std::int64_t version = 1;
  const std::pair<errc, RetryCause> cases[] = {
      {errc::deadlock, RetryCause::deadlock},
      {errc::serialization_failure, RetryCause::serialization},
      {errc::store_unavailable, RetryCause::connection},
      {errc::store_busy, RetryCause::busy},
      {errc::fenced_off, RetryCause::fenced_off},
      {errc::sequence_conflict, RetryCause::conflict},
  };
  for (auto [code, cause] : cases) {
    CAPTURE(to_string(cause));
    const auto before = pl.metrics().retries_by_cause[static_cast<std::size_t>(cause)];
    store->fail_with = code;
    store->fail_next = 2;
    auto r = pl.submit(ev("C", version, version == 1 ? TradeType::New : TradeType::Amend,
                          pk("cause")));
    ++version;
    REQUIRE(r);
    CHECK(r.value().kind == OutcomeKind::Accepted);
    CHECK(pl.metrics().retries_by_cause[static_cast<std::size_t>(cause)] >= before + 2);
  }
  auto m = pl.metrics();
  std::uint64_t sum = 0;
  for (auto n : m.retries_by_cause) sum += n;
  CHECK(sum == m.retries);
  CHECK(m.lock_wait_us.count == m.lock_grants);
  CHECK(m.lock_grants >= 1);
  // The memory store has no connection pool.
  CHECK(m.store.pool_size == 0);
  CHECK(to_string(RetryCause::fenced_off) == "fenced_off");
}

#ifdef TRADECAPTURE_HAVE_SOCI
TEST_CASE("the SQL store reports its connection pool in the pipeline metrics") {
  auto dir = std::filesystem::temp_directory_path() /
             ("tc-pool-" + std::to_string(std::random_device{}()));
  std::filesystem::create_directories(dir);
  SociStoreOptions so;
  so.pool_size = 3;
  auto store = open_soci_store("sqlite:" + (dir / "s.db").string(), so);
  REQUIRE(store);
  {
    Pipeline pl(store.value(), make_local_lock(), make_position_processor(), quiet_options(1));
    REQUIRE(pl.submit(ev("P", 1, TradeType::New, pk("pool"))));
    auto m = pl.metrics();
    CHECK(m.store.pool_size == 3);
    CHECK(m.store.connections_open >= 1);
    CHECK(m.store.connections_in_use <= m.store.connections_open);
  }
  std::filesystem::remove_all(dir);
}
#endif

namespace {

/// A source that records the events the pipeline hands to `before_commit` and adds one row per
/// stream to each commit: consumer "g", topic "t", partition = the stream, next offset = after
/// the stream's last event in the batch.
class RecordingSource final : public SourceHook {
 public:
  std::string mark_id(std::uint32_t stream) const override {
    return "rec/" + std::to_string(stream);
  }
  void before_commit(std::span<const SourceEvent> events, CommitBatch& batch) override {
    std::lock_guard lk(mu);
    std::map<std::int32_t, std::int64_t> next;
    for (const auto& e : events) {
      seen.push_back(e);
      auto& n = next[static_cast<std::int32_t>(e.stream)];
      n = std::max(n, e.position + 1);
    }
    for (const auto& [p, n] : next) batch.sources.push_back(SourceOffset{"g", "t", p, n, 0});
  }
  std::mutex mu;
  std::vector<SourceEvent> seen;
};

}  // namespace

TEST_CASE("a SourceHook sees every event of its own the batch decided; its rows commit with them") {
  auto store = make_memory_store();
  RecordingSource src;
  Pipeline pl(store, make_local_lock(), make_position_processor(), quiet_options(2));
  auto from = [&](std::int64_t position) {
    SubmitOptions so;
    so.source = SourceRef{&src, 0, position};
    return so;
  };
  std::vector<std::future<Outcome>> fs;
  fs.push_back(pl.async_submit(ev("S1", 1, TradeType::New, pk("src")), from(0),
                               boost::asio::use_future));
  fs.push_back(pl.async_submit(ev("S2", 1, TradeType::New, pk("src")), from(1),
                               boost::asio::use_future));
  for (auto& f : fs) CHECK(f.get().kind == OutcomeKind::Accepted);
  // Any outcome is the source's to cover, a rejection too (not written).
  CHECK(pl.async_submit(ev("S9", 2, TradeType::Amend, pk("src")), from(2),
                        boost::asio::use_future)
            .get()
            .kind == OutcomeKind::Rejected);
  CHECK(pl.async_submit(ev("S3", 1, TradeType::New, pk("src")), from(3), boost::asio::use_future)
            .get()
            .kind == OutcomeKind::Accepted);
  // An event without a source is no source's.
  REQUIRE(pl.submit(ev("S4", 1, TradeType::New, pk("src"))));
  pl.drain();
  {
    std::lock_guard lk(src.mu);
    std::sort(src.seen.begin(), src.seen.end(),
              [](const SourceEvent& a, const SourceEvent& b) { return a.position < b.position; });
    std::vector<std::int64_t> positions;
    std::vector<bool> written;
    for (const auto& e : src.seen) {
      CHECK(e.stream == 0);
      positions.push_back(e.position);
      written.push_back(e.written);
    }
    CHECK(positions == std::vector<std::int64_t>{0, 1, 2, 3});
    CHECK(written == std::vector<bool>{true, true, false, true});
  }
  auto offsets = store->source_offsets("g");
  REQUIRE(offsets);
  REQUIRE(offsets.value().size() == 1);
  CHECK(offsets.value()[0].next_offset == 4);
  // The stream's mark in the partition: its last accepted event.
  const auto st = store->load_partitions(std::vector<PartitionKey>{pk("src")}).value().at(0);
  CHECK(st.source_marks == std::map<std::string, std::int64_t, std::less<>>{{"rec/0", 3}});
}

// ---- whole-batch admission: try_reserve and async_submit_batch ------------------------------

namespace {

/// Waits for `f` at most 10 s (a hang fails the check instead of the whole run).
template <class T>
bool ready_soon(std::future<T>& f) {
  return f.wait_for(10s) == std::future_status::ready;
}

using BatchResults = std::vector<result<Outcome>>;

/// Submits a batch; the future holds the completion's error code and results.
std::future<std::pair<boost::system::error_code, BatchResults>> submit_batch(
    Pipeline& pl, std::vector<TradeEvent> events, Pipeline::Reservation r,
    SubmitOptions options = {}) {
  auto p = std::make_shared<std::promise<std::pair<boost::system::error_code, BatchResults>>>();
  auto f = p->get_future();
  pl.async_submit_batch(std::move(events), std::move(r), options,
                        [p](boost::system::error_code ec, BatchResults results) {
                          p->set_value({ec, std::move(results)});
                        });
  return f;
}

}  // namespace

TEST_CASE("try_reserve: a batch fits whole next to what is in flight, or runs alone") {
  PipelineOptions o = quiet_options(1);
  o.max_in_flight = 10;
  o.on_overload = OverloadPolicy::fail_fast;
  Pipeline pl(make_memory_store(), make_local_lock(), make_position_processor(), o);
  CHECK(pl.max_in_flight() == 10);
  auto a = pl.try_reserve(6);
  REQUIRE(a);
  CHECK(a.value().size() == 6);
  CHECK(pl.in_flight() == 6);
  auto refused = pl.try_reserve(5);
  REQUIRE_FALSE(refused);
  CHECK(refused.error() == errc::overloaded);
  CHECK(pl.in_flight() == 6);  // a refusal takes nothing
  auto b = pl.try_reserve(4);
  REQUIRE(b);
  CHECK(pl.in_flight() == 10);
  CHECK(pl.metrics().reserved == 10);
  // The reservations hold room against every other submitter: fail-fast single submits too.
  auto single = pl.async_submit(ev("R0", 1, TradeType::New, pk("res")), boost::asio::use_future);
  CHECK_THROWS(single.get());
  a.value().release();
  CHECK(a.value().size() == 0);
  CHECK(pl.in_flight() == 4);
  {
    Pipeline::Reservation moved = std::move(b.value());
    CHECK(b.value().size() == 0);
    CHECK(moved.size() == 4);
    CHECK(pl.in_flight() == 4);
  }  // destroyed: released
  CHECK(pl.in_flight() == 0);
  // Larger than the limit: only when nothing is in flight, and then nothing else fits.
  auto big = pl.try_reserve(50);
  REQUIRE(big);
  CHECK(pl.in_flight() == 50);
  CHECK_FALSE(pl.try_reserve(1));
  big.value() = Pipeline::Reservation{};  // assignment releases what it held
  CHECK(pl.in_flight() == 0);
  auto empty = pl.try_reserve(0);
  REQUIRE(empty);
  CHECK(empty.value().size() == 0);
}

TEST_CASE("admission: a completion handler finds its own slot free (a resend at the limit fits)") {
  // A client answered at the in-flight limit that sends again at once must not be refused:
  // the handlers here run inline on the shard, the earliest moment anyone can react.
  PipelineOptions o = quiet_options(1);
  o.max_in_flight = 1;
  o.on_overload = OverloadPolicy::fail_fast;
  Pipeline pl(make_memory_store(), make_local_lock(), make_position_processor(), o);
  std::promise<std::pair<bool, std::size_t>> single;
  pl.async_submit(ev("F1", 1, TradeType::New, pk("f")),
                  [&](boost::system::error_code ec, Outcome) {
                    CHECK_FALSE(ec);
                    auto again = pl.try_reserve(1);
                    const std::size_t held = pl.in_flight();
                    const bool fits = bool(again);
                    again = Pipeline::Reservation{};  // released before the test goes on
                    single.set_value({fits, held});
                  });
  auto [fits, in_flight] = single.get_future().get();
  CHECK(fits);
  CHECK(in_flight == 1);  // the new reservation only
  auto r = pl.try_reserve(1);
  REQUIRE(r);
  std::promise<bool> batch;
  pl.async_submit_batch({ev("F2", 1, TradeType::New, pk("f"))}, std::move(r.value()),
                        [&](boost::system::error_code ec, BatchResults) {
                          CHECK_FALSE(ec);
                          batch.set_value(bool(pl.try_reserve(1)));
                        });
  CHECK(batch.get_future().get());
  pl.drain();  // waits for completions under way too, and nothing is left
  CHECK(pl.in_flight() == 0);
}

TEST_CASE("async_submit_batch: outcomes in event order; slots freed as events complete") {
  auto store = std::make_shared<ControlledStore>(make_memory_store());
  PipelineOptions o = quiet_options(2);
  o.max_in_flight = 8;
  Pipeline pl(store, make_local_lock(), make_position_processor(), o);
  store->hold();
  std::vector<TradeEvent> events = {
      ev("B1", 1, TradeType::New, pk("b1")),
      ev("B2", 1, TradeType::New, pk("b2")),
      ev("B1", 2, TradeType::Amend, pk("b1"), Side::Sell, "3", "4"),
      ev("BX", 0, TradeType::New, pk("b1")),  // invalid: completes at once
      ev("B1", 1, TradeType::New, pk("b1")),  // a resend: DUPLICATE
      ev("B1", 3, TradeType::Cancel, pk("b1")),
  };
  auto r = pl.try_reserve(events.size());
  REQUIRE(r);
  auto done = submit_batch(pl, std::move(events), std::move(r.value()));
  // Held by the store: the invalid event's slot is free already, the others are in flight.
  CHECK(pl.in_flight() == 5);
  CHECK(pl.metrics().reserved == 0);
  CHECK(done.wait_for(50ms) == std::future_status::timeout);
  store->release();
  REQUIRE(ready_soon(done));
  auto [ec, results] = done.get();
  CHECK_FALSE(ec);
  REQUIRE(results.size() == 6);
  for (auto& x : results) REQUIRE(x);
  CHECK(results[0].value() == Outcome::accepted(1));
  CHECK(results[1].value() == Outcome::accepted(1));
  CHECK(results[2].value() == Outcome::accepted(2));
  CHECK(results[3].value().kind == OutcomeKind::Rejected);
  CHECK(results[3].value().reason.rfind("invalid:", 0) == 0);
  CHECK(results[4].value() == Outcome::duplicate());
  CHECK(results[5].value() == Outcome::accepted(3));
  pl.drain();
  CHECK(pl.in_flight() == 0);
}

TEST_CASE("async_submit_batch: left-over slots are released, events beyond are admitted singly") {
  auto store = std::make_shared<ControlledStore>(make_memory_store());
  PipelineOptions o = quiet_options(1);
  o.max_in_flight = 4;
  o.on_overload = OverloadPolicy::fail_fast;
  Pipeline pl(store, make_local_lock(), make_position_processor(), o);
  store->hold();
  SUBCASE("more slots than events") {
    auto r = pl.try_reserve(4);
    REQUIRE(r);
    auto done = submit_batch(pl, {ev("L1", 1, TradeType::New, pk("l")),
                                  ev("L2", 1, TradeType::New, pk("l"))},
                             std::move(r.value()));
    CHECK(pl.in_flight() == 2);  // the two unused slots went back at submission
    CHECK(pl.try_reserve(2));
    store->release();
    REQUIRE(ready_soon(done));
    CHECK_FALSE(done.get().first);
  }
  SUBCASE("fewer slots than events: the rest as async_submit (fail-fast: overloaded)") {
    auto r = pl.try_reserve(4);
    REQUIRE(r);
    r.value().release();
    auto two = pl.try_reserve(2);
    REQUIRE(two);
    auto other = pl.try_reserve(2);  // the rest of the room, held elsewhere
    REQUIRE(other);
    auto done = submit_batch(pl, {ev("M1", 1, TradeType::New, pk("m")),
                                  ev("M2", 1, TradeType::New, pk("m")),
                                  ev("M3", 1, TradeType::New, pk("m"))},
                             std::move(two.value()));
    store->release();
    REQUIRE(ready_soon(done));
    auto [ec, results] = done.get();
    CHECK(ec == errc::overloaded);
    REQUIRE(results.size() == 3);
    CHECK(results[0].value() == Outcome::accepted(1));
    CHECK(results[1].value() == Outcome::accepted(2));
    REQUIRE_FALSE(results[2]);
    CHECK(results[2].error() == errc::overloaded);
  }
  pl.drain();
  CHECK(pl.metrics().in_flight == pl.metrics().reserved);
}

TEST_CASE("async_submit_batch: a reservation of another pipeline gives no room") {
  PipelineOptions o = quiet_options(1);
  o.max_in_flight = 2;
  o.on_overload = OverloadPolicy::fail_fast;
  Pipeline a(make_memory_store(), make_local_lock(), make_position_processor(), o);
  Pipeline b(make_memory_store(), make_local_lock(), make_position_processor(), o);
  auto room_a = a.try_reserve(2);
  REQUIRE(room_a);
  auto room_b = b.try_reserve(2);  // b is full: its own events cannot be admitted
  REQUIRE(room_b);
  auto done = submit_batch(b, {ev("X1", 1, TradeType::New, pk("x"))}, std::move(room_a.value()));
  REQUIRE(ready_soon(done));
  CHECK(done.get().first == errc::overloaded);
  CHECK(a.in_flight() == 0);  // a's reservation was released, not used by b
  CHECK(b.in_flight() == 2);
}

TEST_CASE("drain and stop do not wait for unused reservations; a batch after stop is refused") {
  PipelineOptions o = quiet_options(1);
  o.max_in_flight = 4;
  Pipeline pl(make_memory_store(), make_local_lock(), make_position_processor(), o);
  auto kept = pl.try_reserve(3);
  REQUIRE(kept);
  auto drained = std::async(std::launch::async, [&] { pl.drain(); });
  REQUIRE(ready_soon(drained));
  auto stopped = std::async(std::launch::async, [&] { pl.stop(); });
  REQUIRE(ready_soon(stopped));
  auto late = pl.try_reserve(1);
  REQUIRE_FALSE(late);
  CHECK(late.error() == errc::stopped);
  auto done = submit_batch(pl, {ev("S1", 1, TradeType::New, pk("s")),
                                ev("S2", 1, TradeType::New, pk("s"))},
                           std::move(kept.value()));
  REQUIRE(ready_soon(done));
  auto [ec, results] = done.get();
  CHECK(ec == errc::stopped);
  REQUIRE(results.size() == 2);
  CHECK(results[1].error() == errc::stopped);
  CHECK(pl.in_flight() == 0);
}

TEST_CASE("async_submit_batch: a deadline withdraws the batch's events; an empty batch completes") {
  PipelineOptions o = quiet_options(1);
  Pipeline pl(make_memory_store(), make_local_lock(), make_position_processor(), o);
  SubmitOptions past;
  past.deadline = std::chrono::steady_clock::now() - 1ms;
  auto r = pl.try_reserve(2);
  REQUIRE(r);
  auto done = submit_batch(pl, {ev("D1", 1, TradeType::New, pk("d")),
                                ev("D2", 1, TradeType::New, pk("d"))},
                           std::move(r.value()), past);
  REQUIRE(ready_soon(done));
  auto [ec, results] = done.get();
  CHECK(ec == errc::deadline_exceeded);
  CHECK(results.at(0).error() == errc::deadline_exceeded);
  CHECK(results.at(1).error() == errc::deadline_exceeded);
  auto none = submit_batch(pl, {}, Pipeline::Reservation{});
  REQUIRE(ready_soon(none));
  auto [ec2, empty] = none.get();
  CHECK_FALSE(ec2);
  CHECK(empty.empty());
  pl.drain();  // a completion may run before its slot is counted free
  CHECK(pl.in_flight() == 0);
}

TEST_CASE("async_submit_batch with use_awaitable") {
  boost::asio::io_context io;
  Pipeline pl(make_memory_store(), make_local_lock(), make_position_processor(), quiet_options(2));
  BatchResults got;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        auto room = pl.try_reserve(3);
        REQUIRE(room);
        std::vector<TradeEvent> events = {ev("A1", 1, TradeType::New, pk("aw")),
                                          ev("A2", 1, TradeType::New, pk("aw")),
                                          ev("A1", 2, TradeType::Amend, pk("aw"))};
        got = co_await pl.async_submit_batch(std::move(events), std::move(room.value()),
                                             boost::asio::use_awaitable);
      },
      boost::asio::detached);
  io.run();
  REQUIRE(got.size() == 3);
  CHECK(got[0].value() == Outcome::accepted(1));
  CHECK(got[1].value() == Outcome::accepted(2));
  CHECK(got[2].value() == Outcome::accepted(3));
}
