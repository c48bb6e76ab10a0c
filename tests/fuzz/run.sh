#!/usr/bin/env bash
# Builds the libFuzzer target tests/fuzz/fuzz_request_body.cpp with clang++-14
# (-fsanitize=fuzzer,address,undefined) straight from the core sources it needs, and runs it for
# a bounded time on a copy of the seed corpus. Exits non-zero, with the crashing input, on any
# crash, sanitizer report, broken invariant, leak, timeout or out-of-memory.
#
# Usage: tests/fuzz/run.sh [--seconds N] [--build-dir DIR]
#   --seconds N      fuzzing time (default $FUZZ_SECONDS or 45)
#   --build-dir DIR  where the binary, the corpus copy and crash artifacts go (default: a temp
#                    directory, removed on success, kept on failure). The binary is rebuilt only
#                    when a source is newer.
# Environment: CXX_FUZZ (default clang++-14).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${FUZZ_SECONDS:-45}
build_dir=""
while (($#)); do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

cxx=${CXX_FUZZ:-clang++-14}
if ! command -v "$cxx" >/dev/null; then
  echo "run.sh: $cxx not found (install clang-14 and libclang-rt-14-dev: scripts/install-deps.sh)" >&2
  exit 1
fi

temp=""
if [[ -z $build_dir ]]; then
  temp=$(mktemp -d /tmp/fuzz_request_body.XXXXXX)
  build_dir=$temp
fi
mkdir -p "$build_dir"
build_dir=$(cd "$build_dir" && pwd)

# The parser and what it links against; the rest of the core (pipeline, store) is not needed.
sources=(
  "$here/fuzz_request_body.cpp"
  "$root/src/request_body.cpp"
  "$root/src/event_codec.cpp"
  "$root/src/types.cpp"
  "$root/src/decimal.cpp"
  "$root/src/error.cpp"
)
flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -I "$root/include" -Wall -Wextra)
bin=$build_dir/fuzz_request_body

stale=0
[[ -x $bin ]] || stale=1
if ((!stale)); then
  for f in "${sources[@]}" "$root"/include/tradecapture/*.hpp "$0"; do
    [[ $f -nt $bin ]] && stale=1 && break
  done
fi
if ((stale)); then
  echo "run.sh: compiling with $cxx" >&2
  start=$(date +%s)
  mkdir -p "$build_dir/obj"
  pids=()
  objs=()
  for src in "${sources[@]}"; do
    obj=$build_dir/obj/$(basename "${src%.cpp}").o
    objs+=("$obj")
    # -fsanitize=fuzzer on the objects adds coverage instrumentation; the link adds the driver.
    "$cxx" "${flags[@]}" -c "$src" -o "$obj" &
    pids+=($!)
    # Two compilers at a time.
    if ((${#pids[@]} >= 2)); then
      wait "${pids[0]}"
      pids=("${pids[@]:1}")
    fi
  done
  for p in "${pids[@]}"; do wait "$p"; done
  "$cxx" "${flags[@]}" "${objs[@]}" -lsimdjson -o "$bin"  # the core's JSON parser
  echo "run.sh: compiled in $(( $(date +%s) - start )) s" >&2
fi

# libFuzzer adds what it finds to its first corpus directory: give it a copy, never the repo.
corpus=$build_dir/corpus
rm -rf "$corpus" "$build_dir/artifacts"
mkdir -p "$corpus" "$build_dir/artifacts"
cp "$here"/corpus/* "$corpus"/

echo "run.sh: fuzzing for $seconds s" >&2
status=0
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -max_len=8192 -dict="$here/request_body.dict" -print_final_stats=1 \
    -artifact_prefix="$build_dir/artifacts/" "$corpus" 2>"$build_dir/fuzz.log" || status=$?

grep -E '^(INFO: seed corpus|#[0-9]+ *DONE|stat::number_of_executed_units|Done [0-9]+ runs)' \
  "$build_dir/fuzz.log" >&2 || true
if ((status != 0)); then
  echo "run.sh: FUZZER FAILED (exit $status); log: $build_dir/fuzz.log" >&2
  tail -n 60 "$build_dir/fuzz.log" >&2
  for a in "$build_dir"/artifacts/*; do
    [[ -e $a ]] || continue
    echo "run.sh: crashing input $a ($(stat -c %s "$a") bytes), first 512 bytes:" >&2
    head -c 512 "$a" | od -A d -c | head -n 40 >&2
  done
  [[ -n $temp ]] && echo "run.sh: kept $temp" >&2
  exit 1
fi
[[ -n $temp ]] && rm -rf "$temp"
echo "run.sh: no failure in $seconds s" >&2
