#!/usr/bin/env bash
# Scale-out on one host: 1, 2 and 3 `tradecapture replay` processes at once, each on its own
# partition-disjoint file (gen_clean.py with a different --prefix), on one PostgreSQL + one Redis
# (started here, stopped on exit). Reports the aggregate trades/s (all lines / wall time of the
# slowest process) for each count, with a fresh database per count.
#
#   bench/scaleout.sh BUILD_DIR [TRADES_PER_FILE]   (default 200000 trades, ~400k lines per file)
set -euo pipefail
BUILD=${1:?usage: scaleout.sh BUILD_DIR [TRADES_PER_FILE]}
TRADES=${2:-200000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TC=$BUILD/bin/tradecapture
[ -x "$TC" ] || { echo "no $TC" >&2; exit 1; }
WORK=$(mktemp -d /tmp/tc-scaleout-XXXXXX)
source "$ROOT/scripts/lib/servers.bash"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; tc_stop_servers; rm -rf "$WORK"' EXIT
tc_start_postgres
tc_start_redis
echo "servers: $TC_PG_URI $TC_REDIS_URI; nproc=$(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg)"
gens=()
for p in a b c; do
  python3 "$ROOT/tests/cli/gen_clean.py" 30$((RANDOM % 10)) 1000 "$TRADES" --prefix "$p" >"$WORK/$p.jsonl" &
  gens+=($!)
done
for pid in "${gens[@]}"; do wait "$pid"; done  # not a bare `wait`: the servers are jobs too
for n in 1 2 3; do
  db=scale$n
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$TC_PG_PORT" -U postgres "$db"
  store="postgresql://postgres@127.0.0.1:$TC_PG_PORT/$db"
  files=(a b c)
  lines=0
  pids=()
  start=$(date +%s.%N)
  for ((i = 0; i < n; i++)); do
    f=$WORK/${files[$i]}.jsonl
    lines=$((lines + $(wc -l <"$f")))
    "$TC" replay --store "$store" --lock "$TC_REDIS_URI" --instance-id "h$i" --outcomes /dev/null \
      --log-level warn "$f" >"$WORK/h$n-$i.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || { echo "host failed:"; cat "$WORK"/h$n-*.log; exit 1; }; done
  end=$(date +%s.%N)
  python3 -c "s=$end-$start; print(f'processes={$n} lines={$lines} wall={s:.2f}s aggregate={$lines/s:,.0f} trades/s')"
  echo "  load: $(cut -d' ' -f1-3 /proc/loadavg)"
done
