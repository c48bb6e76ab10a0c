#!/usr/bin/env bash
# The PostgreSQL store's cost curve by batch size, from bench_pg_batch's JSON: server and host
# CPU per event and wall time per batch against events per batch (log-log), as a PNG (gnuplot).
#
#   build/bin/bench_pg_batch --benchmark_out=pg_batch.json --benchmark_out_format=json
#   bench/plot_pg_batch.sh pg_batch.json [OUT.png]     (default bench/pg-batch-cost.png)
set -euo pipefail
JSON=${1:?usage: bench/plot_pg_batch.sh BENCH_PG_BATCH_JSON [OUT.png]}
PNG=${2:-$(dirname "$0")/pg-batch-cost.png}
command -v gnuplot >/dev/null || bash "$(dirname "$0")/../scripts/install-deps.sh" >/dev/null
DAT=$(mktemp)
trap 'rm -f "$DAT"' EXIT
python3 - "$JSON" >"$DAT" <<'PY'
import json, sys
rows = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if "events_per_batch" in b]
if not rows:
    sys.exit("no bench_pg_batch rows in " + sys.argv[1])
for b in sorted(rows, key=lambda b: b["events_per_batch"]):
    print(int(b["events_per_batch"]), b["server_cpu_us_per_event"], b["host_cpu_us_per_event"],
          b["wall_us_per_batch"] / 1000.0)
PY
gnuplot <<EOF
set terminal pngcairo size 900,520 font ",10"
set output '$PNG'
set title "PostgreSQL store: cost of one batch by size (bench\\\\_pg\\\\_batch)"
set logscale xy
set xlabel "events per batch"
set ylabel "CPU per event (us)"
set y2label "wall time per batch (ms)"
set logscale y2
set y2tics
set ytics nomirror
set grid
set key top right
plot '$DAT' using 1:2 with linespoints lw 2 pt 7 lc rgb "#d62728" title "server CPU per event", \
     '$DAT' using 1:3 with linespoints lw 2 pt 5 lc rgb "#1f77b4" title "host CPU per event", \
     '$DAT' using 1:4 axes x1y2 with linespoints lw 2 dt 2 pt 9 lc rgb "#555555" title "wall time per batch (right)"
EOF
echo "$PNG"
