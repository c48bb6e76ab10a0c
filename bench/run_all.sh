#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md once, with the machine description and the load average
# before and after each program (the figures are only comparable on a quiet machine).
#
#   bench/run_all.sh [BIN_DIR]      (default build/bin; a Release build)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=${1:-build/bin}

echo "== machine"
echo "nproc: $(nproc)"
lscpu | grep 'Model name' || true
awk '/MemTotal/ {printf "RAM: %.1f GiB\n", $2 / 1048576}' /proc/meminfo
echo "kernel: $(uname -r)"
echo "tmp filesystem: $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $1, $2}')"

run() {
  echo
  echo "== $*"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$@"
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
}
run "$bin_dir/bench_pipeline"
if [[ -x "$bin_dir/bench_sqlite" ]]; then
  run "$bin_dir/bench_sqlite"
fi
run "$here/replay_1m.sh" "$bin_dir"
