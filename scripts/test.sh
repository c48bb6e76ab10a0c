#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs the packages, builds the Release tree
# and runs every test (unit, conformance, model-based, CLI), then builds the
# AddressSanitizer+UBSan and ThreadSanitizer variants and runs the doctest suites under them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=${TRADECAPTURE_JOBS:-$(nproc)}
start=$(date +%s)
bash "$root/scripts/build.sh"
echo "== ctest (Release)" >&2
# -LE subset: the per-backend doctest subsets (unit_<backend>) repeat cases `unit` runs.
(cd "$root/build" && ctest --output-on-failure -j "$jobs" -LE subset)

for variant in asan tsan; do
  case $variant in
    asan) san="address,undefined" ;;
    tsan) san="thread" ;;
  esac
  dir="$root/build-$variant"
  echo "== build + unit tests under $san" >&2
  # -O1 (the sanitizers' recommended level) compiles in about half the time of -O2.
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRADECAPTURE_SANITIZE="$san" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
    -DTRADECAPTURE_BUILD_EXAMPLES=OFF -DTRADECAPTURE_BUILD_BENCH=OFF >/dev/null
  cmake --build "$dir" -j "$jobs" --target tradecapture_tests tradecapture_sim
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS="suppressions=$root/tests/lsan.supp" \
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
  "$dir/bin/tradecapture_tests" --no-intro=true
  # The fault simulator (single-threaded; memory and UB errors are what the sanitizers add).
  echo "== fault simulator under $san" >&2
  "$dir/bin/tradecapture_sim" --seed 1 --seeds "$([[ $variant == asan ]] && echo 1000 || echo 200)"
done
echo "== all tests passed in $(( $(date +%s) - start )) s" >&2
