#pragma once
/// \file alloc_counter.hpp
/// Counts the heap allocations of the whole process by replacing the global `operator new`
/// (every other form, arrays and nothrow included, forwards to these in libstdc++). Include it
/// in exactly one translation unit of a benchmark program; bench_common.hpp then reports
/// `allocs_per_trade` (allocations between a run's first submission and its last completion,
/// divided by its events: the pipeline's, the submitter's and the completion callbacks').

#include "bench_common.hpp"

#include <execinfo.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <new>
#include <vector>

namespace tcbench::detail {

inline std::atomic<std::uint64_t> process_allocations{0};

/// Points bench_common.hpp's counter at this program's count before main runs.
inline const bool alloc_counter_installed = [] {
  allocation_counter() = &process_allocations;
  return true;
}();

/// Where allocations come from, on request: while `recording_sites` is set, each counted
/// allocation keeps the return addresses of its first frames (up to `kMaxSites` allocations),
/// and `print_sites` lists them grouped, most frequent first, as module+offset addresses for
/// `addr2line -Cfi -e BINARY` (bench_pipeline's TC_BENCH_ALLOC_SITES=1).
inline constexpr std::size_t kMaxSites = 4096, kSiteFrames = 10;
inline std::atomic<bool> recording_sites{false};
inline std::atomic<std::size_t> sites_used{0};
inline void* sites[kMaxSites][kSiteFrames];
inline thread_local bool in_site_capture = false;

inline void record_site() {
  if (in_site_capture) return;
  const std::size_t i = sites_used.fetch_add(1, std::memory_order_relaxed);
  if (i >= kMaxSites) return;
  in_site_capture = true;
  const int n = ::backtrace(sites[i], static_cast<int>(kSiteFrames));
  for (int f = n; f < static_cast<int>(kSiteFrames); ++f) sites[i][f] = nullptr;
  in_site_capture = false;
}

/// Starts recording sites (the first `backtrace` loads the unwinder, outside the window).
inline void start_recording_sites() {
  void* warm[2];
  ::backtrace(warm, 2);
  sites_used = 0;
  recording_sites = true;
}

/// Stops recording and prints the sites to stderr, grouped, most frequent first.
inline void print_sites() {
  recording_sites = false;
  const std::size_t n = std::min(sites_used.load(), kMaxSites);
  std::map<std::vector<void*>, std::size_t> groups;
  for (std::size_t i = 0; i < n; ++i)
    ++groups[std::vector<void*>(sites[i], sites[i] + kSiteFrames)];
  std::vector<std::pair<std::size_t, std::vector<void*>>> sorted;
  for (auto& [frames, count] : groups) sorted.emplace_back(count, frames);
  std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.first > b.first; });
  std::fprintf(stderr, "allocation sites: %zu allocations recorded\n", n);
  for (auto& [count, frames] : sorted) {
    std::fprintf(stderr, "%zu allocations at:\n", count);
    std::vector<void*> live;
    for (void* f : frames)
      if (f != nullptr) live.push_back(f);
    ::backtrace_symbols_fd(live.data(), static_cast<int>(live.size()), 2);
  }
}

inline void* counted_alloc(std::size_t n, std::size_t align) {
  process_allocations.fetch_add(1, std::memory_order_relaxed);
  if (recording_sites.load(std::memory_order_relaxed)) record_site();
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
