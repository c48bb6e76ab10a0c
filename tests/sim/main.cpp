// tradecapture_sim: runs seeds of the deterministic simulation and prints a summary.
// A failing seed prints `FAIL seed=N: ...` with the command line that replays it, and exits 1.

#include "sim.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>

namespace {

const char* kUsage =
    "usage: tradecapture_sim [--seed N] [--seeds K] [--events E] [--mutation NAME] [--verbose]\n"
    "\n"
    "Deterministic simulation of the shard core (tests/sim): 2-4 simulated hosts, the memory\n"
    "store behind injected faults, a lock server that may forget, clients that re-send like a\n"
    "proxy, source streams (like Kafka partitions) whose offsets commit with the events and\n"
    "which members claim from each other and re-read after crashes; every outcome is checked\n"
    "against spec section 6 and every source message's results against its source marks.\n"
    "\n"
    "  --seed N         first seed (default 1)\n"
    "  --seeds K        number of seeds, N .. N+K-1 (default 1)\n"
    "  --events E       stream events per seed (default 300)\n"
    "  --mutation NAME  re-introduce a known bug in the core: no_failure_barrier,\n"
    "                   unvalidated_noop, lock_fences, ignore_deadlines, redecide_stored,\n"
    "                   accepted_marks, early_outcomes, batch_blind_keys, conflict_blind,\n"
    "                   all_trades_new\n"
    "                   (the sim must FAIL)\n"
    "  --verbose        trace every fault, server call and outcome (use with one seed)\n"
    "\n"
    "A failing seed prints FAIL seed=N: <what> and the command that replays it; exit status 1.\n";

// In detail::Mutation's order.
const char* const kMutations[] = {"none",          "no_failure_barrier", "unvalidated_noop",
                                   "lock_fences",   "ignore_deadlines",   "redecide_stored",
                                   "accepted_marks", "early_outcomes", "batch_blind_keys",
                                   "conflict_blind", "all_trades_new"};
static_assert(std::size(kMutations) ==
              static_cast<std::size_t>(tradecapture::detail::Mutation::all_trades_new) + 1);

void summary(const sim::Stats& st, double wall) {
  std::printf("sim: %llu seeds, %llu stream events, %llu submissions, %llu commits, %.1f simulated hours, %.1f s wall\n",
              static_cast<unsigned long long>(st.seeds),
              static_cast<unsigned long long>(st.stream_events),
              static_cast<unsigned long long>(st.submissions),
              static_cast<unsigned long long>(st.commits), double(st.sim_time) / 3.6e9, wall);
  std::printf("  faults:");
  for (const auto& [k, n] : st.faults) std::printf(" %s=%llu", k.c_str(), static_cast<unsigned long long>(n));
  std::printf("\n  outcomes:");
  for (const auto& [k, n] : st.outcomes) std::printf(" %s=%llu", k.c_str(), static_cast<unsigned long long>(n));
  std::printf("\n  sources:");
  for (const auto& [k, n] : st.sources) std::printf(" %s=%llu", k.c_str(), static_cast<unsigned long long>(n));
  std::printf("\n  overlap:");
  for (const auto& [k, n] : st.overlap) std::printf(" %s=%llu", k.c_str(), static_cast<unsigned long long>(n));
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  sim::Params p;
  std::uint64_t seeds = 1;
  std::string mutation = "none";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n%s", a.c_str(), kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--seed") {
      p.seed = std::strtoull(value(), nullptr, 10);
    } else if (a == "--seeds") {
      seeds = std::strtoull(value(), nullptr, 10);
    } else if (a == "--events") {
      p.events = std::atoi(value());
    } else if (a == "--mutation") {
      mutation = value();
    } else if (a == "--verbose") {
      p.verbose = true;
    } else {
      std::fprintf(stderr, "unknown argument %s\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  const auto* m = std::find(std::begin(kMutations), std::end(kMutations), mutation);
  p.mutation = static_cast<tradecapture::detail::Mutation>(m - std::begin(kMutations));
  if (m == std::end(kMutations) || p.events < 1) {
    std::fprintf(stderr, "bad --mutation or --events\n%s", kUsage);
    return 2;
  }
  sim::Stats stats;
  const auto start = std::chrono::steady_clock::now();
  auto wall = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  const std::uint64_t first = p.seed;
  for (std::uint64_t s = first; s < first + seeds; ++s) {
    p.seed = s;
    std::string what = sim::run_seed(p, stats);
    if (!what.empty()) {
      std::printf("FAIL seed=%llu: %s\n", static_cast<unsigned long long>(s), what.c_str());
      std::printf("  replay: tradecapture_sim --seed %llu --seeds 1 --events %d%s%s --verbose\n",
                  static_cast<unsigned long long>(s), p.events,
                  mutation == "none" ? "" : " --mutation ", mutation == "none" ? "" : mutation.c_str());
      std::printf("  (after %llu seeds)\n", static_cast<unsigned long long>(s - first + 1));
      summary(stats, wall());
      return 1;
    }
  }
  summary(stats, wall());
  return 0;
}
