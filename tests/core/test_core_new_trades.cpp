// The shard core lists the trades a batch writes first in their partition as new
// (PartitionUpdate::new_trades), ahead of the others: a store may insert those rows without
// looking for a stored one (the PostgreSQL store COPYs them). Stepped by hand on one thread.

#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>

#include "../src/op_state.hpp"
#include "../src/shard_core.hpp"
#include "support/events.hpp"

#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace tradecapture;
using Clock = std::chrono::steady_clock;
using Kind = detail::Action::Kind;

namespace {

struct NewTradesOp final : detail::SubmitOp {
  using SubmitOp::SubmitOp;
  bool done = false;
  Outcome outcome;
  void complete(boost::system::error_code, Outcome o) override {
    done = true;
    outcome = std::move(o);
  }
};

/// One partition's update as committed: its trade ids in order, and how many were new.
struct Written {
  std::vector<std::string> ids;
  std::size_t new_trades = 0;
};

}  // namespace

TEST_CASE("shard core: a batch lists the trades new to their partition first "
          "(PartitionUpdate::new_trades)") {
  detail::ShardConfig config;
  config.lease = std::chrono::hours(1);
  detail::Counters counters;
  detail::ShardCore core{config, make_position_processor(), counters, nullptr};
  auto store = make_memory_store();
  auto lock = make_local_lock(config.lease);
  const Clock::time_point t0{std::chrono::hours(1000)};
  const PartitionKey p1{"P1", "B", "S"}, p2{"P2", "B", "S"};
  std::uint64_t stamp = 1;
  int step = 0;

  // Submits `events` as one batch and steps the core until they complete; returns each
  // committed update (by partition account) and checks every event was ACCEPTED.
  const auto run_batch = [&](std::vector<TradeEvent> events) {
    std::vector<std::unique_ptr<NewTradesOp>> ops;
    for (auto& e : events) {
      ops.push_back(std::make_unique<NewTradesOp>(std::move(e)));
      detail::state_of(ops.back().get()).gate_head = true;
      detail::state_of(ops.back().get()).stamp = stamp++;
    }
    core.set_stamp_now(stamp);
    for (auto& op : ops) core.add(op.get(), t0 + std::chrono::milliseconds(step));
    std::map<std::string, Written> written;
    const auto all_done = [&] {
      for (auto& op : ops)
        if (!op->done) return false;
      return true;
    };
    for (int i = 0; i < 60 && !all_done(); ++i) {
      const auto now = t0 + std::chrono::milliseconds(++step);
      auto act = core.next(now);
      if (act.kind == Kind::idle) break;
      switch (act.kind) {
        case Kind::acquire: core.on_acquired(lock->try_acquire(act.keys), now); break;
        case Kind::renew: {
          auto r = lock->renew(act.grants);
          core.on_renewed(std::move(act.grants), std::move(r), now);
          break;
        }
        case Kind::release: lock->release(act.grants); break;
        case Kind::claim: core.on_claimed(store->claim_partitions(act.keys), now); break;
        case Kind::find: {
          auto found = core.take_found_buffer();
          REQUIRE(store->find_events_into(*act.idem_keys, found));
          act.idem_keys.reset();
          core.on_found(std::move(found), now);
          break;
        }
        case Kind::commit: {
          for (const auto& u : act.batch->partitions) {
            Written& w = written[u.partition.account];
            for (const auto& [id, record] : u.trades) w.ids.push_back(id);
            w.new_trades = u.new_trades;
          }
          auto batch = std::move(act.batch);
          auto r = store->commit(*batch);  // the memory store checks the listed ones
          REQUIRE(r.has_value());
          batch.reset();
          core.on_committed(std::move(r), now);
          break;
        }
        case Kind::wait: break;
        default: FAIL("unexpected action");
      }
      for (auto& c : core.take_completions()) c.op->complete(c.ec, c.outcome);
    }
    REQUIRE(all_done());
    for (auto& op : ops) CHECK(op->outcome.kind == OutcomeKind::Accepted);
    return written;
  };
  using tctest::ev;

  // A first write: every trade is new, by id.
  auto w = run_batch({ev("T2", 1, TradeType::New, p1), ev("T1", 1, TradeType::New, p1),
                      ev("U1", 1, TradeType::New, p2)});
  CHECK(w["P1"].ids == std::vector<std::string>{"T1", "T2"});
  CHECK(w["P1"].new_trades == 2);
  CHECK(w["P2"].ids == std::vector<std::string>{"U1"});
  CHECK(w["P2"].new_trades == 1);

  // The new trades (by id) ahead of those the partition held; a trade created and amended in
  // the same batch is new and listed once; a partition with no new trade lists none.
  w = run_batch({ev("T1", 2, TradeType::Amend, p1), ev("T3", 1, TradeType::New, p1),
                 ev("T0", 1, TradeType::New, p1), ev("T4", 1, TradeType::New, p1),
                 ev("T4", 2, TradeType::Amend, p1), ev("T2", 2, TradeType::Cancel, p1),
                 ev("U1", 2, TradeType::Amend, p2)});
  CHECK(w["P1"].ids == std::vector<std::string>{"T0", "T3", "T4", "T1", "T2"});
  CHECK(w["P1"].new_trades == 3);
  CHECK(w["P2"].ids == std::vector<std::string>{"U1"});
  CHECK(w["P2"].new_trades == 0);

  // What the store holds matches the batches.
  auto st = store->load_partitions(std::vector<PartitionKey>{p1});
  REQUIRE(st.has_value());
  CHECK(st.value()[0].trades.size() == 5);
  CHECK(st.value()[0].trades.at("T4").version == 2);
  CHECK(st.value()[0].trades.at("T2").cancelled);
}
