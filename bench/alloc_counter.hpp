#pragma once
/// \file alloc_counter.hpp
/// Counts the heap allocations of the whole process by replacing the global `operator new`
/// (every other form, arrays and nothrow included, forwards to these in libstdc++). Include it
/// in exactly one translation unit of a benchmark program; bench_common.hpp then reports
/// `allocs_per_trade` (allocations between a run's first submission and its last completion,
/// divided by its events: the pipeline's, the submitter's and the completion callbacks').

#include "bench_common.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

namespace tcbench::detail {

inline std::atomic<std::uint64_t> process_allocations{0};

/// Points bench_common.hpp's counter at this program's count before main runs.
inline const bool alloc_counter_installed = [] {
  allocation_counter() = &process_allocations;
  return true;
}();

inline void* counted_alloc(std::size_t n, std::size_t align) {
  process_allocations.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = align <= alignof(std::max_align_t)
                ? std::malloc(n)
                : std::aligned_alloc(align, (n + align - 1) / align * align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace tcbench::detail

void* operator new(std::size_t n) { return tcbench::detail::counted_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  return tcbench::detail::counted_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
