#!/usr/bin/env bash
# Every figure of the cost-and-latency table (issue #12) in one sequential run, each program with
# the 1-minute load average before and after it, so that BENCHMARKS.md can say how quiet the
# machine was. Run it on an otherwise idle machine: the figures are only comparable then.
#
#   bench/issue12_table.sh BUILD_DIR [RESULT_DIR]      (about 25 minutes; a Release build with
#                                                        the benchmarks, tradecapture and
#                                                        tradecapture-load)
#
# RESULT_DIR (default: a new /tmp/tc-issue12-XXXXXX, kept) gets one log per step and the
# Google Benchmark JSON of each program:
#   1. memory.json      in-memory pipeline, pre-parsed events, 1,000 partitions: throughput
#                       (fresh, and warm: BM_MemoryWarmThroughput), latency at half saturation, steady-state allocations per event, the cost
#                       of a fresh page (BM_PageFirstTouch)
#   2. pg_redis.json    PostgreSQL + Redis (started here on loopback): saturated throughput,
#                       latency at half saturation, and the seed-like per-trade baseline
#   3. pg_batch.json    the PostgreSQL store's cost of one batch of 1 .. 8192 events
#   4. replay-N.log     bench/replay_1m.sh, twice (1,000,000 lines into SQLite)
#   5. partitions.csv   `tradecapture replay` of 500,000 NEW events into SQLite over 1,000 and
#                       over 250,000 partitions (lines/s, peak RSS), alternated, twice each
#   6. gateway/         bench/gateway.sh on PostgreSQL + Redis: single-event and batched POSTs,
#                       CPU per event of every process
#   7. latency/         bench/latency_load.sh: p50/p99 against offered load, three stores
# Knobs: STEPS (default "1 2 3 4 5 6 7": a subset to run).
set -euo pipefail
BUILD=$(cd "${1:?usage: bench/issue12_table.sh BUILD_DIR [RESULT_DIR]}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${2:-$(mktemp -d /tmp/tc-issue12-XXXXXX)}
STEPS=${STEPS:-"1 2 3 4 5 6 7"}
mkdir -p "$OUT"
BIN=$BUILD/bin

{
  echo "date: $(date -u '+%F %T UTC')"
  echo "commit: $(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "nproc: $(nproc)"
  lscpu | grep 'Model name' || true
  awk '/MemTotal/ {printf "RAM: %.1f GiB\n", $2 / 1048576}' /proc/meminfo
  echo "kernel: $(uname -r)"
} | tee "$OUT/env.txt"

# step NAME COMMAND...: runs one program, its output in NAME.log, the load around it in env.txt.
step() {
  local name=$1
  shift
  echo "== $name: load before $(cut -d' ' -f1-3 /proc/loadavg) at $(date -u +%T)" | tee -a "$OUT/env.txt"
  "$@" >"$OUT/$name.log" 2>&1 || { echo "$name failed (see $OUT/$name.log)" >&2; tail -n 20 "$OUT/$name.log" >&2; exit 1; }
  echo "== $name: load after  $(cut -d' ' -f1-3 /proc/loadavg) at $(date -u +%T)" | tee -a "$OUT/env.txt"
}
gbench() {  # gbench NAME PROGRAM [ARGS...]: a Google Benchmark program with JSON output
  local name=$1 prog=$2
  shift 2
  step "$name" "$BIN/$prog" --benchmark_out="$OUT/$name.json" --benchmark_out_format=json "$@"
}
has() { [[ " $STEPS " == *" $1 "* ]]; }

has 1 && gbench memory bench_pipeline --benchmark_filter='BM_Memory|BM_PageFirstTouch'
has 2 && gbench pg_redis bench_pg_redis
has 3 && TC_PG_STATEMENTS=1 gbench pg_batch bench_pg_batch
if has 4; then
  step replay-1 "$HERE/replay_1m.sh" "$BIN"
  step replay-2 "$HERE/replay_1m.sh" "$BIN"
fi

if has 5; then
  # 500,000 NEW events, one trade each, spread evenly over P partitions (the partition key is
  # all that differs between the two traces).
  gen() {
    python3 - "$1" "$2" <<'PY'
import sys
parts, out = int(sys.argv[1]), sys.argv[2]
with open(out, "w") as f:
    for i in range(500000):
        p = i % parts
        f.write('{"trade_id":"T%d","version":1,"type":"NEW","account":"A%d","book":"B%d",'
                '"security":"S%d","side":"BUY","quantity":"100","price":"101.25"}\n'
                % (i, p % 97, p // 97 % 13, p))
PY
  }
  gen 1000 "$OUT/new-1k.jsonl"
  gen 250000 "$OUT/new-250k.jsonl"
  echo "partitions,run,lines_per_s,wall_s,user_s,sys_s,max_rss_kb,load1" >"$OUT/partitions.csv"
  for run in 1 2; do
    for parts in 1k 250k; do
      rm -f "$OUT/p.db"*
      load1=$(cut -d' ' -f1 /proc/loadavg)
      start=$(date +%s.%N)
      step "partitions-$parts-$run" /usr/bin/time -v -o "$OUT/time-$parts-$run.txt" \
        "$BIN/tradecapture" replay --store "sqlite:$OUT/p.db" --outcomes /dev/null "$OUT/new-$parts.jsonl"
      end=$(date +%s.%N)
      python3 - "$OUT/time-$parts-$run.txt" "$parts" "$run" "$start" "$end" "$load1" >>"$OUT/partitions.csv" <<'PY'
import sys
t = dict(l.strip().split(": ", 1) for l in open(sys.argv[1]) if ": " in l)
wall = float(sys.argv[5]) - float(sys.argv[4])
print(",".join([sys.argv[2], sys.argv[3], "%.0f" % (500000 / wall), "%.2f" % wall,
                t["User time (seconds)"], t["System time (seconds)"],
                t["Maximum resident set size (kbytes)"], sys.argv[6]]))
PY
    done
  done
  rm -f "$OUT/p.db"* "$OUT"/new-*.jsonl
  cat "$OUT/partitions.csv"
fi

has 6 && GW_SKIP_SQLITE=1 GW_SKIP_SWEEP=1 step gateway "$HERE/gateway.sh" "$BUILD" "$OUT/gateway"
has 7 && step latency "$HERE/latency_load.sh" "$BUILD" "$OUT/latency"
echo "results: $OUT"
