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

# run_doctests BINARY: every doctest case of BINARY, in three processes at once: the cases that
# are not Kafka's, and the Kafka cases in two halves. The Kafka cases mostly wait (each group join
# on librdkafka's mock cluster waits 3 s, a delay fixed in the mock) while the others use the CPU;
# one after the other they took ~160 s under ASan, side by side 88 s. Each process writes to a
# log of its own, printed when it ends, so that the output does not interleave.
run_doctests() {
  local bin=$1 logs n half rc=0
  logs=$(mktemp -d)
  n=$("$bin" --count -tc='kafka:*' | sed -n 's/.*passing the current filters: //p')
  if ! [[ $n =~ ^[0-9]+$ ]]; then
    echo "run_doctests: cannot count the Kafka cases of $bin" >&2
    return 1
  fi
  half=$(( (n + 1) / 2 ))
  "$bin" --no-intro=true -tce='kafka:*' >"$logs/rest" 2>&1 & local p1=$!
  "$bin" --no-intro=true -tc='kafka:*' --first=1 --last="$half" >"$logs/kafka1" 2>&1 & local p2=$!
  "$bin" --no-intro=true -tc='kafka:*' --first=$(( half + 1 )) >"$logs/kafka2" 2>&1 & local p3=$!
  local pid name
  for pair in "$p1 rest" "$p2 kafka1" "$p3 kafka2"; do
    read -r pid name <<<"$pair"
    if ! wait "$pid"; then rc=1; fi
    echo "-- doctest ($name)" >&2
    cat "$logs/$name" >&2
  done
  rm -rf "$logs"
  return "$rc"
}

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
  run_doctests "$dir/bin/tradecapture_tests"
  # The fault simulator (single-threaded; memory and UB errors are what the sanitizers add).
  echo "== fault simulator under $san" >&2
  "$dir/bin/tradecapture_sim" --seed 1 --seeds "$([[ $variant == asan ]] && echo 1000 || echo 200)"
done
echo "== all tests passed in $(( $(date +%s) - start )) s" >&2
