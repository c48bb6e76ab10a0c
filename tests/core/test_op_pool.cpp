// The SubmitOp pool (detail::OpPool, src/op_pool.cpp) and the submissions that use it.

#include <tradecapture/detail/submit_op.hpp>
#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <future>
#include <memory>
#include <set>
#include <thread>
#include <vector>

namespace {

using namespace tradecapture;

struct PoolDeleter {
  void operator()(detail::OpPool* p) const noexcept { detail::destroy_op_pool(p); }
};
using PoolPtr = std::unique_ptr<detail::OpPool, PoolDeleter>;

TradeEvent event_of(int i) {
  TradeEvent e;
  e.trade_id = "T" + std::to_string(i);
  e.version = 1;
  e.type = TradeType::New;
  e.partition = PartitionKey{"ACC", "B", "S" + std::to_string(i % 7)};
  e.side = Side::Buy;
  e.quantity = Decimal::parse("10").value();
  e.price = Decimal::parse("1.5").value();
  return e;
}

}  // namespace

TEST_CASE("OpPool: distinct aligned blocks, reused once given back") {
  PoolPtr pool(detail::make_op_pool());
  std::vector<void*> blocks;
  std::set<void*> seen;
  for (int i = 0; i < 300; ++i) {  // several chunks
    void* b = detail::op_pool_allocate(*pool);
    REQUIRE(b != nullptr);
    CHECK(reinterpret_cast<std::uintptr_t>(b) % detail::op_block_align == 0);
    CHECK(seen.insert(b).second);
    std::memset(b, i & 0xff, detail::op_block_size);  // the whole block is ours (ASan checks)
    blocks.push_back(b);
  }
  // No two blocks overlap: each is at least op_block_size away from the next.
  std::vector<std::uintptr_t> at;
  for (void* b : blocks) at.push_back(reinterpret_cast<std::uintptr_t>(b));
  std::sort(at.begin(), at.end());
  for (std::size_t i = 1; i < at.size(); ++i) CHECK(at[i] - at[i - 1] >= detail::op_block_size);
  for (void* b : blocks) detail::op_pool_free(*pool, b);
  // Blocks given back are handed out again: 100 rounds of 300 live blocks stay within the
  // memory of the first round plus a little (a pool that never reused a block would hand out
  // 30,000 distinct ones).
  for (int round = 0; round < 100; ++round) {
    blocks.clear();
    for (int i = 0; i < 300; ++i) {
      blocks.push_back(detail::op_pool_allocate(*pool));
      seen.insert(blocks.back());
    }
    for (void* b : blocks) detail::op_pool_free(*pool, b);
  }
  CHECK(seen.size() < 600);
}

TEST_CASE("OpPool: threads allocating and freeing each other's blocks") {
  PoolPtr pool(detail::make_op_pool());
  constexpr int kThreads = 4, kRounds = 20000;
  // Each thread allocates, stamps the block with its id, checks the stamp, and hands the block
  // to the next thread to free: a block handed out twice at once would be stamped over.
  std::array<std::atomic<void*>, kThreads> mailbox{};
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        auto* b = static_cast<std::uint64_t*>(detail::op_pool_allocate(*pool));
        const std::uint64_t stamp = (std::uint64_t(t) << 32) | std::uint64_t(r);
        for (std::size_t i = 0; i < detail::op_block_size / 8; ++i) b[i] = stamp;
        std::this_thread::yield();
        for (std::size_t i = 0; i < detail::op_block_size / 8; ++i)
          if (b[i] != stamp) errors.fetch_add(1);
        if (void* prev = mailbox[(t + 1) % kThreads].exchange(b)) detail::op_pool_free(*pool, prev);
      }
    });
  }
  for (auto& th : ts) th.join();
  for (auto& m : mailbox)
    if (void* b = m.exchange(nullptr)) detail::op_pool_free(*pool, b);
  CHECK(errors.load() == 0);
}

TEST_CASE("Pipeline: submissions whose handler fits a pool block and ones too large for it") {
  Pipeline pipe(make_memory_store(), make_local_lock(), make_position_processor());
  // A handler larger than a block: its op comes from the heap, and completes the same way.
  std::array<char, detail::op_block_size> ballast{};
  ballast[0] = 'x';
  std::promise<Outcome> big;
  pipe.async_submit(event_of(1), [&big, ballast](boost::system::error_code ec, Outcome o) {
    CHECK(!ec);
    CHECK(ballast[0] == 'x');
    big.set_value(std::move(o));
  });
  CHECK(big.get_future().get().kind == OutcomeKind::Accepted);
  // Many small ones, completing on the shards while more are submitted: every block goes back.
  constexpr int kEvents = 5000;
  std::atomic<int> accepted{0};
  std::promise<void> all;
  std::atomic<int> done{0};
  for (int i = 2; i < 2 + kEvents; ++i) {
    pipe.async_submit(event_of(i), [&](boost::system::error_code ec, Outcome o) {
      if (!ec && o.kind == OutcomeKind::Accepted) accepted.fetch_add(1);
      if (done.fetch_add(1) + 1 == kEvents) all.set_value();
    });
  }
  all.get_future().wait();
  CHECK(accepted.load() == kEvents);
  // Invalid and duplicate submissions complete at once or later, through the same ops.
  TradeEvent bad = event_of(1);
  bad.trade_id.clear();
  auto r = pipe.submit(bad);
  REQUIRE(r);
  CHECK(r.value().kind == OutcomeKind::Rejected);
  auto dup = pipe.submit(event_of(1));
  REQUIRE(dup);
  CHECK(dup.value().kind == OutcomeKind::Duplicate);
}
