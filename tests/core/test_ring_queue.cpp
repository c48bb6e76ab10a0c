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

TEST_CASE("RingQueue: queues of one pool pass their buffers on; FIFO across pooled growth") {
  tradecapture::detail::RingPool<int> pool;
  RingQueue<int> a, b;
  a.use_pool(&pool);
  b.use_pool(&pool);
  // a grows to 32 slots (its 8- and 16-slot buffers go to the pool as it grows), empties and
  // gives the 32 back: b, filling as far, grows through the same three buffers, no new one.
  std::deque<int> model;
  for (int i = 0; i < 20; ++i) {
    a.push_back(i);
    model.push_back(i);
  }
  check_same(a, model);
  CHECK(a.capacity() == 32);
  const int* a_buffer = &a.front();
  while (!a.empty()) a.pop_front();
  a.release();
  CHECK(a.capacity() == 0);
  model.clear();
  for (int i = 0; i < 20; ++i) {
    b.push_front(i);  // through the wrap and two growths
    model.push_front(i);
  }
  check_same(b, model);
  CHECK(b.capacity() == 32);
  while (b.size() > 1) b.pop_front();
  b.push_back(7);  // the front moves; the buffer stays
  model.assign({0, 7});
  check_same(b, model);
  for (int i = 0; i < 20; ++i) a.push_back(i);  // a takes the 8 and 16 back, then a new 32
  CHECK(a.capacity() == 32);
  CHECK(&a.front() != a_buffer);  // b holds a's old 32-slot buffer
  // A release while not empty does nothing; without a pool, neither does an empty one.
  b.release();
  CHECK(b.capacity() == 32);
  RingQueue<int> own;
  own.push_back(1);
  own.pop_front();
  own.release();
  CHECK(own.capacity() == 8);
}
