// detail::OpenTable (include/tradecapture/detail/open_table.hpp): the open-addressing table of
// the key gate and the memory store, checked against std::map under growth, erasure and hashes
// that collide on purpose.

#include <tradecapture/detail/open_table.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <map>
#include <random>
#include <vector>

namespace {

using tradecapture::detail::OpenTable;

struct Slot {
  std::size_t hash = 0;
  std::uint64_t key = 0;  ///< 0: free
  int value = 0;
};
struct Policy {
  static bool is_free(const Slot& s) noexcept { return s.key == 0; }
  static std::size_t hash_of(const Slot& s) noexcept { return s.hash; }
};
using Table = OpenTable<Slot, Policy>;

/// Hashes of the test: `bits` of the key kept, so with few bits many keys share a hash (and so
/// a home and a probe run).
struct Hasher {
  std::size_t bits;
  std::size_t operator()(std::uint64_t key) const {
    const std::size_t h = key * 0xD6E8FEB86659FD93ull;
    return bits >= 64 ? h : h & ((std::size_t{1} << bits) - 1);
  }
};

Slot* find(Table& t, const Hasher& hash, std::uint64_t key) {
  return t.find(hash(key), [key](const Slot& s) { return s.key == key; });
}

/// Every key of `model` is found with its value, every key in `absent` is not, and the table
/// holds exactly as many entries.
void check_against(Table& t, const Hasher& hash, const std::map<std::uint64_t, int>& model,
                   const std::vector<std::uint64_t>& absent) {
  REQUIRE(t.size() == model.size());
  for (const auto& [key, value] : model) {
    Slot* s = find(t, hash, key);
    REQUIRE(s != nullptr);
    CHECK(s->key == key);
    CHECK(s->value == value);
  }
  for (std::uint64_t key : absent)
    if (!model.count(key)) CHECK(find(t, hash, key) == nullptr);
  std::size_t walked = 0;
  t.for_each([&](const Slot& s) {
    ++walked;
    CHECK(model.count(s.key) == 1);
  });
  CHECK(walked == model.size());
  if (t.capacity() != 0) CHECK(t.size() * 2 <= t.capacity());
}

/// Random inserts (through find_or_insert), updates and erasures checked against std::map.
void random_run(std::size_t hash_bits, std::uint64_t seed, std::size_t key_space) {
  const Hasher hash{hash_bits};
  Table t(4);
  std::map<std::uint64_t, int> model;
  std::vector<std::uint64_t> seen;
  std::mt19937_64 rng(seed);
  for (int step = 0; step < 20000; ++step) {
    const std::uint64_t key = 1 + rng() % key_space;
    seen.push_back(key);
    const int op = static_cast<int>(rng() % 3);
    if (op < 2) {
      auto [s, inserted] = t.find_or_insert(
          hash(key), [key](const Slot& x) { return x.key == key; },
          [&] { return Slot{hash(key), key, step}; });
      REQUIRE(s != nullptr);
      CHECK(inserted == (model.count(key) == 0));
      CHECK(s->key == key);
      if (!inserted) s->value = step;
      model[key] = step;
    } else if (Slot* s = find(t, hash, key)) {
      REQUIRE(model.count(key) == 1);
      t.erase(s);
      model.erase(key);
    } else {
      CHECK(model.count(key) == 0);
    }
    if (step % 997 == 0) check_against(t, hash, model, seen);
  }
  check_against(t, hash, model, seen);
  // Empty it again: every erasure keeps the rest findable, and the table ends empty.
  while (!model.empty()) {
    const auto it = model.begin();
    Slot* s = find(t, hash, it->first);
    REQUIRE(s != nullptr);
    t.erase(s);
    model.erase(it);
    if (model.size() % 101 == 0) check_against(t, hash, model, seen);
  }
  CHECK(t.empty());
}

}  // namespace

TEST_CASE("OpenTable: grows from its first capacity, keeping every entry") {
  const Hasher hash{64};
  Table t(4);
  CHECK(t.capacity() == 0);
  CHECK(find(t, hash, 7) == nullptr);  // an empty table has no slots to probe
  std::map<std::uint64_t, int> model;
  for (std::uint64_t k = 1; k <= 5000; ++k) {
    t.insert(Slot{hash(k), k, int(k)});
    model[k] = int(k);
    CHECK(t.size() * 2 <= t.capacity());
  }
  CHECK(t.capacity() == 16384);  // 4, 8, ... doubling at half full
  check_against(t, hash, model, {0, 5001, 123456});
}

TEST_CASE("OpenTable: reserve makes room once; insert_reserved never grows") {
  const Hasher hash{64};
  Table t(1024);
  t.reserve(3000);
  CHECK(t.capacity() == 8192);
  const Slot* before = nullptr;
  std::map<std::uint64_t, int> model;
  for (std::uint64_t k = 1; k <= 3000; ++k) {
    Slot& s = t.insert_reserved(Slot{hash(k), k, 1});
    if (k == 1) before = &s;
    model[k] = 1;
  }
  CHECK(t.capacity() == 8192);
  CHECK(find(t, hash, 1) == before);  // no growth: slots did not move
  t.reserve(10);                       // never shrinks
  CHECK(t.capacity() == 8192);
  check_against(t, hash, model, {3001});
}

TEST_CASE("OpenTable: find_or_insert finds what it inserted and inserts only once") {
  const Hasher hash{64};
  Table t;
  int makes = 0;
  for (int round = 0; round < 3; ++round) {
    for (std::uint64_t k = 1; k <= 100; ++k) {
      auto [s, inserted] = t.find_or_insert(
          hash(k), [k](const Slot& x) { return x.key == k; },
          [&] { ++makes; return Slot{hash(k), k, int(k)}; });
      CHECK(inserted == (round == 0));
      CHECK(s->value == int(k));
    }
  }
  CHECK(makes == 100);
  CHECK(t.size() == 100);
}

TEST_CASE("OpenTable: erasure by backward shift, no tombstones, across the wrap-around") {
  // Every key has the same hash: one probe run holds them all, so erasing from its middle must
  // move the later ones back or they would no longer be found.
  const Hasher same{0};
  Table t(16);
  std::map<std::uint64_t, int> model;
  for (std::uint64_t k = 1; k <= 7; ++k) {
    t.insert(Slot{same(k), k, int(k)});
    model[k] = int(k);
  }
  REQUIRE(t.capacity() == 16);
  for (std::uint64_t k : {4, 1, 7, 2}) {
    t.erase(find(t, same, k));
    model.erase(k);
    check_against(t, same, model, {1, 2, 4, 7, 8});
  }
  // A hash whose home is the last slot: its run wraps to slot 0 and beyond.
  std::size_t last = 0;
  while (Table::home(last, 15) != 15) ++last;
  Table w(16);
  std::map<std::uint64_t, int> wm;
  for (std::uint64_t k = 1; k <= 6; ++k) {
    w.insert(Slot{last, k, int(k)});
    wm[k] = int(k);
  }
  auto find_w = [&](std::uint64_t k) {
    return w.find(last, [k](const Slot& s) { return s.key == k; });
  };
  CHECK(find_w(6) != nullptr);
  w.erase(find_w(1));  // the slot at the end of the array: the rest shift back across the wrap
  wm.erase(1);
  for (const auto& [k, v] : wm) {
    REQUIRE(find_w(k) != nullptr);
    CHECK(find_w(k)->value == v);
  }
  CHECK(find_w(1) == nullptr);
  CHECK(w.size() == 5);
  // Erase everything, then the table is reusable.
  for (std::uint64_t k = 2; k <= 6; ++k) w.erase(find_w(k));
  CHECK(w.empty());
  w.insert(Slot{last, 9, 9});
  CHECK(find_w(9) != nullptr);
}

TEST_CASE("OpenTable: an entry past the wrap-around whose home is past the hole stays") {
  // Slots 14, 15 and 0 of 16: A (home 14), B (home 15), C (home 15, wrapped to slot 0). Erasing
  // A must leave B and C where they are: moving C into slot 14, before its home, would lose it.
  auto hash_with_home = [](std::size_t home) {
    std::size_t h = 1;
    while (Table::home(h, 15) != home) ++h;
    return h;
  };
  const std::size_t h14 = hash_with_home(14), h15 = hash_with_home(15);
  Table t(16);
  t.insert(Slot{h14, 1, 1});
  t.insert(Slot{h15, 2, 2});
  t.insert(Slot{h15, 3, 3});
  REQUIRE(t.capacity() == 16);
  auto find_key = [&](std::size_t h, std::uint64_t k) {
    return t.find(h, [k](const Slot& s) { return s.key == k; });
  };
  t.erase(find_key(h14, 1));
  CHECK(find_key(h14, 1) == nullptr);
  REQUIRE(find_key(h15, 2) != nullptr);
  REQUIRE(find_key(h15, 3) != nullptr);
  CHECK(find_key(h15, 3)->value == 3);
  // And the other way: erasing B moves C back into slot 15 (its home), still found.
  t.erase(find_key(h15, 2));
  REQUIRE(find_key(h15, 3) != nullptr);
  CHECK(t.size() == 1);
}

TEST_CASE("OpenTable: random operations against std::map, good and bad hashes") {
  SUBCASE("a good hash") { random_run(64, 1, 5000); }
  SUBCASE("8 bits of hash: long shared probe runs") { random_run(8, 2, 3000); }
  SUBCASE("2 bits of hash: almost everything collides") { random_run(2, 3, 300); }
  SUBCASE("one hash for every key") { random_run(0, 4, 200); }
}
