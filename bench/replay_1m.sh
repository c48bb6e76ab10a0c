#!/usr/bin/env bash
# End-to-end replay benchmark: generates a realistic 1,000,000-line JSONL trace (1,000
# partitions, NEW/AMEND/CANCEL, a few resends, stale amends and invalid lines) and times
#   tradecapture replay --store sqlite:<tmp> --outcomes /dev/null <trace>
# (parse + pipeline + SQLite store, synchronous=FULL) from start to exit, printing lines/s.
#
#   bench/replay_1m.sh [BIN_DIR] [LINES]     (defaults: build/bin, 1000000)
#
# The trace is generated before the clock starts; the database lives in a fresh temp directory
# that is removed afterwards. Peak RSS comes from /usr/bin/time -v when it is installed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=${1:-build/bin}
lines=${2:-1000000}
host="$bin_dir/tradecapture"
if [[ ! -x "$host" ]]; then
  echo "replay_1m.sh: $host not found or not executable (build the examples first)" >&2
  exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tc-replay.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trace="$tmp/trades.jsonl"
db="$tmp/replay.db"

echo "generating $lines lines ..." >&2
python3 "$here/gen_trades.py" --lines "$lines" --partitions 1000 --seed 1 --out "$trace"
bytes=$(stat -c %s "$trace")

cmd=("$host" replay --store "sqlite:$db" --outcomes /dev/null "$trace")
echo "running: ${cmd[*]}" >&2
rc=0
start=$(date +%s.%N)
if [[ -x /usr/bin/time ]]; then
  /usr/bin/time -v -o "$tmp/time.txt" "${cmd[@]}" >"$tmp/stdout.txt" 2>"$tmp/stderr.txt" || rc=$?
else
  "${cmd[@]}" >"$tmp/stdout.txt" 2>"$tmp/stderr.txt" || rc=$?
fi
end=$(date +%s.%N)

if [[ $rc -ne 0 ]]; then
  echo "replay_1m.sh: tradecapture replay exited $rc" >&2
  tail -n 20 "$tmp/stderr.txt" >&2
  exit "$rc"
fi

awk -v s="$start" -v e="$end" -v n="$lines" -v b="$bytes" 'BEGIN {
  w = e - s
  printf "lines            %d\n", n
  printf "input bytes      %d\n", b
  printf "wall seconds     %.3f\n", w
  printf "lines/s          %.0f\n", n / w
  printf "MB/s             %.1f\n", b / w / 1e6
}'
if [[ -f "$tmp/time.txt" ]]; then
  awk -F': ' '
    /User time/ {printf "user seconds     %s\n", $2}
    /System time/ {printf "system seconds   %s\n", $2}
    /Percent of CPU/ {printf "cpu              %s\n", $2}
    /Maximum resident/ {printf "peak RSS MB      %.1f\n", $2 / 1024}
  ' "$tmp/time.txt"
fi
printf 'db size MB       %.1f\n' "$(du -sk "$tmp" | awk '{print ($1 * 1024 - '"$bytes"') / 1000000}')"
# Sanity check: partitions with an accepted event (at most 1,000).
if positions=$("$host" positions --store "sqlite:$db" 2>/dev/null); then
  printf 'partitions       %d\n' "$(printf '%s\n' "$positions" | grep -c '^{' || true)"
fi
