// Re-sends in the batch of their original (issue #12): an event whose idempotency key an earlier,
// not yet completed event of the same partition carries is decided in that event's batch, right
// after it, instead of waiting for its commit (which made a trace with 0.4% re-sends commit 1.6
// times as often). A key shared with another partition still waits in the key gate. Stepped by
// hand on one thread: one shard core, the real key gate, a memory store and the local lock.

#include "support/core_driver.hpp"
#include "support/events.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace tradecapture;
using namespace std::chrono_literals;
using ResendOp = tctest::DrivenOp;

namespace {

/// A core behind the key gate, with leases of 3.2 s; `run` ends with every op done.
struct Driver : tctest::CoreDriver {
  Driver() : CoreDriver(config_(), true) {}

  void run() {
    CoreDriver::run();
    REQUIRE(all_done());
  }

 private:
  static detail::ShardConfig config_() {
    detail::ShardConfig c;
    c.lease = 3200ms;
    return c;
  }
};

TradeEvent trade(std::string id, std::int64_t version, TradeType type, const PartitionKey& p,
                 std::string_view quantity = "10") {
  return tctest::ev(std::move(id), version, type, p, Side::Buy, quantity);
}

}  // namespace

TEST_CASE("shard core: a re-send is decided in its original's batch, after it") {
  Driver d;
  const PartitionKey p = tctest::pk("A");
  ResendOp* original = d.submit(trade("T1", 1, TradeType::New, p));
  ResendOp* resend = d.submit(trade("T1", 1, TradeType::New, p));
  ResendOp* altered = d.submit(trade("T1", 1, TradeType::New, p, "11"));
  ResendOp* amend = d.submit(trade("T1", 2, TradeType::Amend, p, "12"));
  ResendOp* amend_again = d.submit(trade("T1", 2, TradeType::Amend, p, "12"));
  ResendOp* next = d.submit(trade("T2", 1, TradeType::New, p));
  d.run();
  // One commit for all six: none of them waited for another's commit.
  CHECK(d.commits == 1);
  CHECK(original->outcome == Outcome::accepted(1));
  CHECK(resend->outcome == Outcome::duplicate());
  CHECK(altered->outcome.kind == OutcomeKind::Rejected);
  CHECK(altered->outcome.reason.rfind("conflict:", 0) == 0);
  CHECK(amend->outcome == Outcome::accepted(2));
  CHECK(amend_again->outcome == Outcome::duplicate());
  CHECK(next->outcome == Outcome::accepted(3));
  for (ResendOp* op : {original, resend, altered, amend, amend_again, next}) CHECK_FALSE(op->ec);

  // The store agrees: three events, and a re-send now is a DUPLICATE of the stored one.
  auto stored = d.store->find_events(std::vector<IdempotencyKey>{{"T1", 1}, {"T1", 2}, {"T2", 1}});
  REQUIRE(stored);
  for (const auto& e : stored.value()) CHECK(e.has_value());
  ResendOp* later = d.submit(trade("T1", 2, TradeType::Amend, p, "12"));
  d.run();
  CHECK(later->outcome == Outcome::duplicate());
}

TEST_CASE("shard core: a re-send of an event that was not accepted is decided afresh") {
  Driver d;
  const PartitionKey p = tctest::pk("A");
  // An AMEND before its NEW is REJECTED (nothing remembered), and so is its re-send; after the
  // NEW, a third copy is ACCEPTED. All in one batch.
  ResendOp* early = d.submit(trade("T1", 2, TradeType::Amend, p));
  ResendOp* early_again = d.submit(trade("T1", 2, TradeType::Amend, p));
  ResendOp* fresh = d.submit(trade("T1", 1, TradeType::New, p));
  ResendOp* amend = d.submit(trade("T1", 2, TradeType::Amend, p));
  d.run();
  CHECK(d.commits == 1);
  CHECK(early->outcome == Outcome::rejected("unknown trade"));
  CHECK(early_again->outcome == Outcome::rejected("unknown trade"));
  CHECK(fresh->outcome == Outcome::accepted(1));
  CHECK(amend->outcome == Outcome::accepted(2));
}

TEST_CASE("shard core: a key shared with another partition still waits for its commit") {
  Driver d;
  ResendOp* first = d.submit(trade("X1", 1, TradeType::New, tctest::pk("A")));
  ResendOp* other = d.submit(trade("X1", 1, TradeType::New, tctest::pk("B")));
  // Behind `other` in the gate; when it entered, A's event was ahead of it too, so it waits for
  // `other` as well (the gate decides this once, on entry).
  ResendOp* other_again = d.submit(trade("X1", 1, TradeType::New, tctest::pk("B")));
  d.run();
  CHECK(d.commits == 3);
  CHECK(first->outcome == Outcome::accepted(1));
  CHECK(other->outcome.kind == OutcomeKind::Rejected);
  CHECK(other->outcome.reason.rfind("conflict:", 0) == 0);
  CHECK(other_again->outcome.reason.rfind("conflict:", 0) == 0);
}

namespace {

/// A source whose every event is checked by SourceHook's default rule; it stores no offsets.
struct StubSource final : SourceHook {
  std::string mark_id(std::uint32_t stream) const override {
    return "stub-" + std::to_string(stream);
  }
  void before_commit(std::span<const SourceEvent>, CommitBatch&) override {}
};

}  // namespace

TEST_CASE("shard core: a message read again while its first reading commits is not decided again") {
  // A source's check reads the stream's mark as of the batch's start: were the second reading
  // decided in the first one's batch, it would pass the check and be reported a second time
  // (DUPLICATE). It waits for the first reading's commit instead, and is found replayed.
  Driver d;
  StubSource source;
  const PartitionKey p = tctest::pk("A");
  ResendOp* first = d.stamp(trade("T1", 1, TradeType::New, p));
  first->source = SourceRef{&source, 0, 5};
  ResendOp* again = d.stamp(trade("T1", 1, TradeType::New, p));
  again->source = SourceRef{&source, 0, 5};
  d.add(first);
  d.add(again);
  d.run();
  CHECK_FALSE(first->ec);
  CHECK(first->outcome == Outcome::accepted(1));
  CHECK(again->ec == errc::replayed);
  CHECK(d.commits == 2);
}

TEST_CASE("shard core: only keys that may be stored are looked up; the commit checks the rest") {
  // A key (trade_id, version) whose partition holds no record of the trade, or one of a lower
  // version, cannot be stored in that partition: it is not looked up, and the commit refuses
  // the batch (key_conflict) if another partition stored it; then every key of the batch is
  // looked up and the batch decided again.
  Driver d;
  const PartitionKey a = tctest::pk("A"), b = tctest::pk("B");
  using Key = IdempotencyKey;
  ResendOp* fresh = d.submit(trade("T1", 1, TradeType::New, a));
  ResendOp* amend = d.submit(trade("T2", 2, TradeType::Amend, a));  // unknown trade
  d.run();
  CHECK(fresh->outcome == Outcome::accepted(1));
  CHECK(amend->outcome == Outcome::rejected("unknown trade"));
  CHECK(d.looked_up.empty());
  CHECK(d.commits == 1);

  // A holds T1 at version 1: its re-send is looked up (DUPLICATE), its AMEND v2 is not.
  ResendOp* resend = d.submit(trade("T1", 1, TradeType::New, a));
  ResendOp* next = d.submit(trade("T1", 2, TradeType::Amend, a, "5"));
  d.run();
  CHECK(resend->outcome == Outcome::duplicate());
  CHECK(next->outcome == Outcome::accepted(2));
  CHECK(d.looked_up == std::vector<Key>{{"T1", 1}});
  CHECK(d.commits == 2);

  // (T1, 2) is stored in A; submitted to B long after (nothing of A's in the key gate), it is not
  // looked up at first: B's commit refuses it, and then it is, with the rest of its batch.
  d.looked_up.clear();
  ResendOp* elsewhere = d.submit(trade("T1", 2, TradeType::Amend, b, "5"));
  ResendOp* other = d.submit(trade("T3", 1, TradeType::New, b));
  d.run();
  CHECK(elsewhere->outcome.kind == OutcomeKind::Rejected);
  CHECK(elsewhere->outcome.reason.rfind("conflict:", 0) == 0);
  CHECK(other->outcome == Outcome::accepted(1));
  CHECK(d.looked_up == std::vector<Key>{{"T1", 2}, {"T3", 1}});
  CHECK(d.commits == 4);  // refused, then committed
}
