#pragma once
/// \file core_driver.hpp
/// One shard core driven by hand on one thread and a simulated clock, over a memory store and
/// the local lock, the way the pipeline's shell drives it: each action is executed at once and
/// its result fed back, and completions are handed to their ops. With a key gate, ops enter it
/// when stamped and leave it when they complete, waking the core as the pipeline does; without
/// one, every op leads its key.

#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>

#include "../../src/key_gate.hpp"
#include "../../src/op_state.hpp"
#include "../../src/shard_core.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace tctest {

/// A submission whose completion the test reads.
struct DrivenOp final : tradecapture::detail::SubmitOp {
  using SubmitOp::SubmitOp;
  bool added = false;  ///< given to the core
  bool done = false;
  boost::system::error_code ec;
  tradecapture::Outcome outcome;
  void complete(boost::system::error_code e, tradecapture::Outcome o) override {
    done = true;
    ec = e;
    outcome = std::move(o);
  }
};

/// A shard core, its store, its lock and (optionally) the key gate, stepped by hand.
struct CoreDriver {
  using Clock = std::chrono::steady_clock;
  using Kind = tradecapture::detail::Action::Kind;

  tradecapture::detail::ShardConfig config;
  tradecapture::detail::Counters counters;
  std::unique_ptr<tradecapture::detail::ShardCore> core;
  std::unique_ptr<tradecapture::detail::KeyGate> gate;  ///< null: every op leads its key
  std::shared_ptr<tradecapture::TradeStore> store = tradecapture::make_memory_store();
  std::shared_ptr<tradecapture::PartitionLock> lock;
  Clock::time_point now{std::chrono::hours(1000)};
  std::uint64_t next_stamp = 1;
  std::vector<std::unique_ptr<DrivenOp>> ops;
  int commits = 0;  ///< commit actions executed
  std::vector<tradecapture::IdempotencyKey> looked_up;  ///< every key of every find action
  /// Called with every batch before the store commits it (none: nothing).
  std::function<void(const tradecapture::CommitBatch&)> on_commit;

  CoreDriver(tradecapture::detail::ShardConfig c, bool with_gate) : config(std::move(c)) {
    lock = tradecapture::make_local_lock(config.lease);
    core = std::make_unique<tradecapture::detail::ShardCore>(
        config, tradecapture::make_position_processor(), counters, nullptr);
    if (with_gate) gate = std::make_unique<tradecapture::detail::KeyGate>();
  }

  /// A new op of `e`, stamped now (submitted: through the gate, if any) but not added to the
  /// core yet.
  DrivenOp* stamp(tradecapture::TradeEvent e) {
    ops.push_back(std::make_unique<DrivenOp>(std::move(e)));
    DrivenOp* op = ops.back().get();
    auto& st = tradecapture::detail::state_of(op);
    st.stamp = next_stamp++;
    if (gate) {
      st.key_hash = tradecapture::detail::key_hash_of(op->event);
      gate->enter(op);
    } else {
      st.gate_head = true;
    }
    core->set_stamp_now(next_stamp);
    return op;
  }

  void add(DrivenOp* op) {
    op->added = true;
    core->add(op, now);
  }

  /// `stamp` and `add`.
  DrivenOp* submit(tradecapture::TradeEvent e) {
    DrivenOp* op = stamp(std::move(e));
    add(op);
    return op;
  }

  bool all_done() const {
    for (const auto& op : ops)
      if (op->added && !op->done) return false;
    return true;
  }

  /// Steps the core, 1 ms a step (or to the end of a wait), until it idles or every op added
  /// is done.
  void run() {
    bool more = true;
    for (int i = 0; more && i < 100000; ++i) {
      now += std::chrono::milliseconds(1);
      auto act = core->next(now);
      switch (act.kind) {
        case Kind::idle: more = false; break;
        case Kind::wait:
          more = !all_done();
          if (act.until > now) now = act.until - std::chrono::milliseconds(1);
          break;
        case Kind::acquire: core->on_acquired(lock->try_acquire(act.keys), now); break;
        case Kind::renew: {
          auto r = lock->renew(act.grants);
          core->on_renewed(std::move(act.grants), std::move(r), now);
          break;
        }
        case Kind::release: lock->release(act.grants); break;
        case Kind::claim: core->on_claimed(store->claim_partitions(act.keys), now); break;
        case Kind::find:
          looked_up.insert(looked_up.end(), act.idem_keys->begin(), act.idem_keys->end());
          core->on_found(store->find_events(*act.idem_keys), now);
          break;
        case Kind::commit: {
          ++commits;
          if (on_commit) on_commit(*act.batch);
          auto batch = std::move(act.batch);
          auto r = store->commit(*batch);
          batch.reset();
          core->on_committed(std::move(r), now);
          break;
        }
        default: FAIL("unexpected action");
      }
      for (auto& c : core->take_completions()) {
        if (gate) {
          if (auto next = gate->leave(c.op)) core->wake(*next);
        }
        c.op->complete(c.ec, c.outcome);
      }
    }
  }

  /// Lets the clock run `d` with nothing arriving: idle leases are released and, over the cache
  /// limit, quiet partitions evicted.
  void idle_for(std::chrono::milliseconds d) {
    const Clock::time_point until = now + d;
    while (now < until) {
      now += std::chrono::milliseconds(50);
      auto act = core->next(now);
      if (act.kind == Kind::release) lock->release(act.grants);
      REQUIRE((act.kind == Kind::idle || act.kind == Kind::wait || act.kind == Kind::release));
    }
  }
};

}  // namespace tctest
