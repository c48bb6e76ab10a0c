// detail::RingQueue (src/ring_queue.hpp), the shard core's per-partition op queue, against
// std::deque: growth with the front anywhere in the ring, push_front, iteration, swap, clear.

#include "../src/ring_queue.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <random>
#include <vector>

namespace {

using tradecapture::detail::RingQueue;

void check_same(const RingQueue<int>& q, const std::deque<int>& model) {
  REQUIRE(q.size() == model.size());
  CHECK(q.empty() == model.empty());
  CHECK(std::equal(q.begin(), q.end(), model.begin(), model.end()));
  if (q.capacity() != 0) {
    CHECK(q.size() <= q.capacity());
    CHECK((q.capacity() & (q.capacity() - 1)) == 0);  // a power of two
  }
}

}  // namespace

TEST_CASE("RingQueue: FIFO through growth while the front is in the middle of the ring") {
  RingQueue<int> q;
  std::deque<int> model;
  CHECK(q.empty());
  CHECK(q.begin() == q.end());
  // Move the front round the ring before filling it, so that growth has to unwrap it.
  for (int i = 0; i < 5; ++i) q.push_back(i), model.push_back(i);
  for (int i = 0; i < 4; ++i) q.pop_front(), model.pop_front();
  for (int i = 5; i < 100; ++i) {
    q.push_back(i);
    model.push_back(i);
    check_same(q, model);
  }
  CHECK(q.capacity() == 128);
  while (!model.empty()) {
    CHECK(q.front() == model.front());
    q.pop_front();
    model.pop_front();
  }
  CHECK(q.empty());
  // The capacity stays: a steady stream through it does not grow it.
  for (int i = 0; i < 10000; ++i) {
    q.push_back(i);
    if (q.size() > 50) q.pop_front();
  }
  CHECK(q.capacity() == 128);
}

TEST_CASE("RingQueue: push_front puts ops back in front, in order, across the wrap") {
  RingQueue<int> q;
  std::deque<int> model;
  for (int i = 10; i < 16; ++i) q.push_back(i), model.push_back(i);
  // As the shard core requeues a batch: its ops pushed to the front in reverse order.
  for (int i = 9; i >= 0; --i) {
    q.push_front(i);
    model.push_front(i);
    check_same(q, model);
  }
  std::vector<int> all(q.begin(), q.end());
  for (int i = 0; i < 16; ++i) CHECK(all[std::size_t(i)] == i);
  CHECK(std::find(q.begin(), q.end(), 12) != q.end());
  CHECK(std::find(q.begin(), q.end(), 99) == q.end());
}

TEST_CASE("RingQueue: random operations against std::deque; swap and clear") {
  std::mt19937 rng(7);
  RingQueue<int> q;
  std::deque<int> model;
  for (int step = 0; step < 20000; ++step) {
    const unsigned op = rng() % 5;
    if (op < 2) {
      q.push_back(step);
      model.push_back(step);
    } else if (op == 2) {
      q.push_front(-step);
      model.push_front(-step);
    } else if (!model.empty()) {
      CHECK(q.front() == model.front());
      q.pop_front();
      model.pop_front();
    }
    if (step % 500 == 0) check_same(q, model);
  }
  check_same(q, model);
  RingQueue<int> other;
  other.push_back(42);
  q.swap(other);
  check_same(other, model);
  check_same(q, std::deque<int>{42});
  const std::size_t cap = other.capacity();
  other.clear();
  CHECK(other.empty());
  CHECK(other.capacity() == cap);
  other.push_front(1);
  other.push_back(2);
  check_same(other, std::deque<int>{1, 2});
}
