#pragma once
// Internal, not installed (CMakeLists.txt excludes it): the one open-addressing table of the
// core and the backends (the key gate's stripes, the shard core's cached partitions, the local
// lock's holders, the memory store's key index and trade index).
//
// Linear probing over a power-of-two array of slots kept at most half full; erasure by backward
// shift, so there are no tombstones and a probe always ends at the first free slot. The table
// stores the caller's slots as they are and never hashes or compares keys itself: the caller
// passes the hash it computed once (and keeps in the slot, for growth and erasure) and a
// predicate that recognises its key, so a key can be compared through what the slot refers to
// without being copied into the table. Pointers to slots are valid until the next insertion
// that grows the table, or the next erasure.
//
// A Policy gives two static functions:
//   static bool is_free(const Slot&) noexcept;        // a value-initialised Slot is free
//   static std::size_t hash_of(const Slot&) noexcept; // the hash the slot was inserted with
// Not thread-safe: the owner synchronises.

#include <cstddef>
#include <utility>
#include <vector>

namespace tradecapture::detail {

template <class Slot, class Policy>
class OpenTable {
 public:
  /// `first_capacity` (a power of two) is the number of slots allocated by the first insertion.
  explicit OpenTable(std::size_t first_capacity = 16) noexcept
      : first_capacity_(first_capacity < 2 ? 2 : first_capacity) {}

  /// Entries held.
  std::size_t size() const noexcept { return used_; }
  bool empty() const noexcept { return used_ == 0; }
  /// Slots allocated (0 or a power of two); at most half of them are used.
  std::size_t capacity() const noexcept { return slots_.size(); }

  /// The slot of `hash` for which `match(slot)` holds, or null.
  template <class Match>
  Slot* find(std::size_t hash, Match&& match) noexcept {
    if (slots_.empty()) return nullptr;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = home(hash, mask);; i = (i + 1) & mask) {
      Slot& s = slots_[i];
      if (Policy::is_free(s)) return nullptr;
      if (match(static_cast<const Slot&>(s))) return &s;
    }
  }
  template <class Match>
  const Slot* find(std::size_t hash, Match&& match) const noexcept {
    return const_cast<OpenTable*>(this)->find(hash, std::forward<Match>(match));
  }

  /// The slot of `hash` for which `match(slot)` holds, and false; else a new slot set to
  /// `make()` (whose hash_of must be `hash`), and true. May grow the table first.
  template <class Match, class Make>
  std::pair<Slot*, bool> find_or_insert(std::size_t hash, Match&& match, Make&& make) {
    reserve(used_ + 1);
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = home(hash, mask);; i = (i + 1) & mask) {
      Slot& s = slots_[i];
      if (Policy::is_free(s)) {
        s = make();
        ++used_;
        return {&s, true};
      }
      if (match(static_cast<const Slot&>(s))) return {&s, false};
    }
  }

  /// Inserts `slot`, whose key must not be in the table. May grow the table first.
  Slot& insert(const Slot& slot) {
    reserve(used_ + 1);
    return insert_reserved(slot);
  }

  /// Inserts `slot`, whose key must not be in the table, into room made by `reserve`.
  Slot& insert_reserved(const Slot& slot) noexcept {
    Slot& s = slots_[free_slot(Policy::hash_of(slot))];
    s = slot;
    ++used_;
    return s;
  }

  /// Room for `n` entries in all without growing (the table never shrinks).
  void reserve(std::size_t n) {
    if (n * 2 <= slots_.size()) return;
    std::size_t size = slots_.empty() ? first_capacity_ : slots_.size();
    while (n * 2 > size) size *= 2;
    std::vector<Slot> old(size);
    old.swap(slots_);
    for (const Slot& s : old)
      if (!Policy::is_free(s)) slots_[free_slot(Policy::hash_of(s))] = s;
  }

  /// Removes the entry at `slot` (from `find` or `find_or_insert`): the later entries of its
  /// probe run move back into the hole unless their home lies between the hole and them.
  void erase(Slot* slot) noexcept {
    const std::size_t mask = slots_.size() - 1;
    std::size_t hole = static_cast<std::size_t>(slot - slots_.data());
    for (std::size_t j = hole;;) {
      j = (j + 1) & mask;
      Slot& next = slots_[j];
      if (Policy::is_free(next)) break;
      const std::size_t h = home(Policy::hash_of(next), mask);
      const bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
      if (stays) continue;
      slots_[hole] = next;
      hole = j;
    }
    slots_[hole] = Slot{};
    --used_;
  }

  /// Every used slot, in table order (for walking all entries).
  template <class Fn>
  void for_each(Fn&& fn) const {
    for (const Slot& s : slots_)
      if (!Policy::is_free(s)) fn(s);
  }

  /// The home index of `hash` in a table of `mask + 1` slots (multiplicative mixing, so that
  /// hashes differing only in high or only in low bits spread).
  static std::size_t home(std::size_t hash, std::size_t mask) noexcept {
    return static_cast<std::size_t>((hash * 0x9E3779B97F4A7C15ull) >> 17) & mask;
  }

 private:
  std::size_t free_slot(std::size_t hash) const noexcept {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = home(hash, mask);
    while (!Policy::is_free(slots_[i])) i = (i + 1) & mask;
    return i;
  }

  std::vector<Slot> slots_;
  std::size_t used_ = 0;
  std::size_t first_capacity_;
};

/// The usual slot: the hash a key was inserted with and a pointer to what holds the key (null:
/// free), with its Policy. The key is compared through `ref`.
template <class T>
struct HashedRef {
  std::size_t hash = 0;
  T* ref = nullptr;

  struct Policy {
    static bool is_free(const HashedRef& r) noexcept { return r.ref == nullptr; }
    static std::size_t hash_of(const HashedRef& r) noexcept { return r.hash; }
  };
};

/// An OpenTable of HashedRef<T>.
template <class T>
using RefTable = OpenTable<HashedRef<T>, typename HashedRef<T>::Policy>;

}  // namespace tradecapture::detail
