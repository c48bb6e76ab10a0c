// The shard core lists the trades a batch writes first in their partition as new
// (PartitionUpdate::new_trades), ahead of the others: a store may insert those rows without
// looking for a stored one (the PostgreSQL store COPYs them). Stepped by hand on one thread
// (support/core_driver.hpp), over the memory store, which refuses a wrong list.

#include "support/core_driver.hpp"
#include "support/events.hpp"

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

using namespace tradecapture;

namespace {

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
  tctest::CoreDriver d(config, false);
  std::map<std::string, Written> written;  // by partition account, of the last batch
  d.on_commit = [&](const CommitBatch& b) {
    for (const auto& u : b.partitions) {
      Written& w = written[u.partition.account];
      for (const auto& [id, record] : u.trades) w.ids.push_back(id);
      w.new_trades = u.new_trades;
    }
  };
  const PartitionKey p1{"P1", "B", "S"}, p2{"P2", "B", "S"};
  // Submits `events` as one batch and runs the core until they complete, all ACCEPTED (the
  // memory store refuses a commit whose list names a stored trade).
  const auto run_batch = [&](std::vector<TradeEvent> events) {
    written.clear();
    std::vector<tctest::DrivenOp*> ops;
    for (auto& e : events) ops.push_back(d.stamp(std::move(e)));
    for (auto* op : ops) d.add(op);
    const int commits = d.commits;
    d.run();
    REQUIRE(d.all_done());
    CHECK(d.commits == commits + 1);  // one batch, committed at the first attempt
    for (auto* op : ops) CHECK(op->outcome.kind == OutcomeKind::Accepted);
  };
  using tctest::ev;

  // A first write: every trade is new, by id.
  run_batch({ev("T2", 1, TradeType::New, p1), ev("T1", 1, TradeType::New, p1),
             ev("U1", 1, TradeType::New, p2)});
  CHECK(written["P1"].ids == std::vector<std::string>{"T1", "T2"});
  CHECK(written["P1"].new_trades == 2);
  CHECK(written["P2"].ids == std::vector<std::string>{"U1"});
  CHECK(written["P2"].new_trades == 1);

  // The new trades (by id) ahead of those the partition held; a trade created and amended in
  // the same batch is new and listed once; a partition with no new trade lists none.
  run_batch({ev("T1", 2, TradeType::Amend, p1), ev("T3", 1, TradeType::New, p1),
             ev("T0", 1, TradeType::New, p1), ev("T4", 1, TradeType::New, p1),
             ev("T4", 2, TradeType::Amend, p1), ev("T2", 2, TradeType::Cancel, p1),
             ev("U1", 2, TradeType::Amend, p2)});
  CHECK(written["P1"].ids == std::vector<std::string>{"T0", "T3", "T4", "T1", "T2"});
  CHECK(written["P1"].new_trades == 3);
  CHECK(written["P2"].ids == std::vector<std::string>{"U1"});
  CHECK(written["P2"].new_trades == 0);

  // What the store holds matches the batches.
  auto st = d.store->load_partitions(std::vector<PartitionKey>{p1});
  REQUIRE(st.has_value());
  CHECK(st.value()[0].trades.size() == 5);
  CHECK(st.value()[0].trades.at("T4").version == 2);
  CHECK(st.value()[0].trades.at("T2").cancelled);
}
