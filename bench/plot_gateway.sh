#!/usr/bin/env bash
# Plots the offered-load sweep of bench/gateway.sh: achieved throughput (left axis) and p99
# latency per request (right axis, log scale) against the offered load, one colour per
# configuration. Needs gnuplot (Debian: gnuplot-nox).
#
#   bench/plot_gateway.sh RESULT_DIR/gateway.csv [OUT.png]   (default bench/gateway-load.png)
set -euo pipefail
CSV=${1:?usage: bench/plot_gateway.sh gateway.csv [out.png]}
PNG=${2:-$(cd "$(dirname "$0")" && pwd)/gateway-load.png}
command -v gnuplot >/dev/null || { echo "gnuplot is not installed (apt-get install gnuplot-nox)" >&2; exit 1; }
TMPD=$(mktemp -d)
trap 'rm -rf "$TMPD"' EXIT

# One whitespace-separated data file per configuration: offered, achieved, p99 (ms).
configs=()
while IFS= read -r c; do configs+=("$c"); done < <(awk -F, 'NR > 1 && $2 == "sweep" { print $1 }' "$CSV" | awk '!seen[$0]++')
((${#configs[@]})) || { echo "no sweep lines in $CSV" >&2; exit 1; }
max=0
for c in "${configs[@]}"; do
  awk -F, -v c="$c" 'NR > 1 && $1 == c && $2 == "sweep" { print $3, $6, $10 }' "$CSV" | sort -n >"$TMPD/$c.dat"
done
max=$(awk -F, 'NR > 1 && $2 == "sweep" { m = ($3 > m ? $3 : m); m = ($6 > m ? $6 : m) } END { print m * 1.1 }' "$CSV")

batch=$(awk -F, 'NR > 1 && $2 == "sweep" { print $4; exit }' "$CSV")
load=$(awk -F, 'NR > 1 && $2 == "sweep" { if (min == "" || $17 < min) min = $17; if ($17 > max) max = $17 } END { print min "-" max }' "$CSV")
title="tradecapture serve, offered-load sweep: open loop, $batch events per POST\\n"
title+="client, nginx, instances, PostgreSQL and Redis on the same 2 cores (1-min load average $load at the points)"
plots=()
colors=("#1f77b4" "#d62728" "#2ca02c" "#9467bd")
i=0
for c in "${configs[@]}"; do
  col=${colors[$((i % ${#colors[@]}))]}
  plots+=("'$TMPD/$c.dat' using 1:2 axes x1y1 with linespoints lw 2 pt 7 lc rgb '$col' title '$c: throughput'")
  plots+=("'$TMPD/$c.dat' using 1:3 axes x1y2 with linespoints lw 2 dt 2 pt 5 lc rgb '$col' title '$c: p99 latency'")
  i=$((i + 1))
done
plots+=("x axes x1y1 with lines lc rgb '#999999' dt 3 title 'throughput = offered'")

gnuplot <<EOF
set terminal pngcairo size 1100,650 font "DejaVu Sans,10"
set output "$PNG"
set title "$title" font ",11"
set datafile separator whitespace
set xlabel "offered load (events/s)"
set ylabel "achieved throughput (events/s)"
set y2label "p99 latency per request, from intended send time (ms, log)"
set xrange [0:$max]
set yrange [0:$max]
set logscale y2
set y2tics
set ytics nomirror
set format x "%.0s%c"
set format y "%.0s%c"
set grid xtics ytics
set key top left box opaque
plot $(IFS=,; echo "${plots[*]}")
EOF
echo "wrote $PNG"
