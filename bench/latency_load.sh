#!/usr/bin/env bash
# Latency against offered load for the pipeline on each store: the paced latency benchmarks
# (BM_MemoryLatencyHalfRate in bench_pipeline, BM_SqliteLatencyHalfRate in bench_sqlite,
# BM_OursPgRedisLatencyHalfRate in bench_pg_redis: PostgreSQL and Redis started on loopback) run
# at fractions of the saturation rate each one calibrates first (TC_BENCH_RATE sets the rate),
# then a chart: p50 and p99 from submission to durable outcome against the offered load as a
# fraction of saturation, one colour per store (gnuplot, like bench/plot_gateway.sh).
#
#   bench/latency_load.sh BUILD_DIR [RESULT_DIR] [STORES]
#
# STORES: a comma-separated subset of memory,sqlite,postgresql (default all three).
# RESULT_DIR (default: a new temporary folder) gets latency-load.csv (one line per point, with
# the 1-minute load average when the point was taken) and latency-load.png, which is also
# copied to bench/latency-load.png. About 3 minutes per store. Pipeline: 2 shards, batches up to
# 8192 events, one pacing submitter.
set -euo pipefail
BUILD=$(cd "${1:?usage: bench/latency_load.sh BUILD_DIR [RESULT_DIR] [STORES]}" && pwd)
OUT=${2:-$(mktemp -d /tmp/latency-load.XXXXXX)}
STORES=${3:-memory,sqlite,postgresql}
HERE=$(cd "$(dirname "$0")" && pwd)
FRACTIONS=(0.05 0.1 0.25 0.5 0.7 0.85)
mkdir -p "$OUT"
command -v gnuplot >/dev/null || bash "$HERE/../scripts/install-deps.sh" >/dev/null

# store -> program, benchmark name
declare -A PROGRAM=([memory]=bench_pipeline [sqlite]=bench_sqlite [postgresql]=bench_pg_redis)
declare -A FILTER=([memory]='^BM_MemoryLatencyHalfRate/threads:2/max_batch:8192/'
                   [sqlite]='^BM_SqliteLatencyHalfRate/threads:2/max_batch:8192/'
                   [postgresql]='^BM_OursPgRedisLatencyHalfRate')

# One run of a store's latency benchmark (TC_BENCH_RATE from the environment): its counters as
# "saturation achieved p50 p99 p999" on stdout.
point() {
  local store=$1 json
  json=$(mktemp "$OUT/run.XXXXXX.json")
  "$BUILD/bin/${PROGRAM[$store]}" --benchmark_filter="${FILTER[$store]}" \
    --benchmark_format=json --benchmark_out="$json" --benchmark_out_format=json >/dev/null 2>"$json.err" ||
    { cat "$json.err" >&2; echo "${PROGRAM[$store]} failed" >&2; return 1; }
  python3 - "$json" <<'PY'
import json, sys
b = [x for x in json.load(open(sys.argv[1]))["benchmarks"] if "p50_us" in x]
if not b:
    sys.exit("no latency counters in " + sys.argv[1])
x = b[0]
print(x["saturation_per_s"], x["achieved_per_s"], x["p50_us"], x["p99_us"], x.get("p999_us", x["max_us"]))
PY
  rm -f "$json" "$json.err"
}

CSV=$OUT/latency-load.csv
echo "store,fraction,offered_per_s,achieved_per_s,p50_us,p99_us,p999_us,load1" >"$CSV"
IFS=, read -r -a stores <<<"$STORES"
for store in "${stores[@]}"; do
  [[ -n ${PROGRAM[$store]:-} ]] || { echo "unknown store '$store' (memory, sqlite, postgresql)" >&2; exit 64; }
  [[ -x $BUILD/bin/${PROGRAM[$store]} ]] ||
    { echo "need $BUILD/bin/${PROGRAM[$store]} (cmake --build BUILD_DIR --target ${PROGRAM[$store]})" >&2; exit 1; }
  # Calibrate: the benchmark measures saturation first and paces at half of it.
  read -r saturation _ <<<"$(unset TC_BENCH_RATE; point "$store")"
  echo "$store: saturation $saturation trades/s" >&2
  for f in "${FRACTIONS[@]}"; do
    rate=$(python3 -c "print(round($saturation * $f))")
    read -r _ achieved p50 p99 p999 <<<"$(TC_BENCH_RATE=$rate point "$store")"
    load1=$(cut -d' ' -f1 /proc/loadavg)
    echo "$store,$f,$rate,$achieved,$p50,$p99,$p999,$load1" | tee -a "$CSV" >&2
  done
done

# The chart: latency (log scale) against the fraction of saturation offered.
PNG=$OUT/latency-load.png
declare -A COLOR=([memory]="#1f77b4" [sqlite]="#2ca02c" [postgresql]="#d62728")
plots=()
for store in "${stores[@]}"; do
  awk -F, -v s="$store" 'NR > 1 && $1 == s { print $2, $5 / 1000, $6 / 1000, $3 }' "$CSV" >"$OUT/$store.dat"
  sat=$(awk -F, -v s="$store" 'NR > 1 && $1 == s { printf "%d", $3 / $2; exit }' "$CSV")
  plots+=("'$OUT/$store.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '${COLOR[$store]}' title '$store p50 (saturation $sat/s)'")
  plots+=("'$OUT/$store.dat' using 1:3 with linespoints lw 2 dt 2 pt 5 lc rgb '${COLOR[$store]}' title '$store p99'")
done
load=$(awk -F, 'NR > 1 { if (min == "" || $8 < min) min = $8; if ($8 > max) max = $8 } END { print min "-" max }' "$CSV")
gnuplot <<EOF
set terminal pngcairo size 1000,600 font "DejaVu Sans,10"
set output '$PNG'
set title "tradecapture pipeline: latency from submission to durable outcome vs offered load\\n2 shards, batches up to 8192, one pacing submitter; 1-min load average $load at the points"
set xlabel "offered load (fraction of the store's measured saturation rate)"
set ylabel "latency (ms, log scale)"
set logscale y
set grid
set key top left
set xrange [0:1]
plot $(IFS=,; echo "${plots[*]}")
EOF
cp "$PNG" "$HERE/latency-load.png"
echo "wrote $CSV and $PNG (copied to bench/latency-load.png)" >&2
