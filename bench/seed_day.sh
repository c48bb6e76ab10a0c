#!/usr/bin/env bash
# The seed's own scenario through one host: one trading day at the seed's target volume
# (~2,000,000 trades) replayed by `tradecapture replay` on PostgreSQL (default durability) + Redis,
# under /usr/bin/time -v (elapsed, aim < 60 s; peak RSS); then a burst of 100,000 trades
# submitted at once (time to drain, peak RSS). Servers are started here on loopback and stopped
# on exit.
#
#   bench/seed_day.sh BUILD_DIR        (e.g. /work/build-pgbench)
set -euo pipefail
BUILD=${1:?usage: seed_day.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TC=$BUILD/bin/tradecapture
[ -x "$TC" ] || { echo "no $TC (build the tradecapture target)" >&2; exit 1; }
[ -x /usr/bin/time ] || bash "$ROOT/scripts/install-deps.sh" >/dev/null
WORK=$(mktemp -d /tmp/tc-seedday-XXXXXX)
source "$ROOT/scripts/lib/servers.bash"
trap 'tc_stop_servers; rm -rf "$WORK"' EXIT
tc_start_postgres
tc_start_redis
echo "servers: $TC_PG_URI $TC_REDIS_URI"
echo "machine: nproc=$(nproc) $(lscpu | sed -n 's/^Model name: *//p'); load: $(cut -d' ' -f1-3 /proc/loadavg)"

newdb() {
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$TC_PG_PORT" -U postgres "$1"
  echo "postgresql://postgres@127.0.0.1:$TC_PG_PORT/$1"
}

# run LABEL FILE: replays FILE into a fresh database under /usr/bin/time -v.
run() {
  local label=$1 file=$2 store
  store=$(newdb "$label")
  local lines; lines=$(wc -l <"$file")
  /usr/bin/time -v "$TC" replay --store "$store" --lock "$TC_REDIS_URI" --outcomes /dev/null \
    --log-level warn "$file" 2>"$WORK/$label.time"
  local el rss
  el=$(sed -n 's/.*Elapsed (wall clock) time.*: //p' "$WORK/$label.time")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/$label.time")
  local secs; secs=$(python3 -c "p='$el'.split(':'); print(sum(float(x)*60**i for i,x in enumerate(reversed(p))))")
  echo "$label: lines=$lines elapsed=${el} (${secs}s) rate=$(python3 -c "print(round($lines/$secs))")/s peak_rss=${rss}kB load=$(cut -d' ' -f1-3 /proc/loadavg)"
  grep -E "User time|System time|Percent of CPU" "$WORK/$label.time" | sed 's/^\s*/  /'
  echo "  stored events: $(psql -X -q -A -t -h 127.0.0.1 -p "$TC_PG_PORT" -U postgres -d "$label" -c 'SELECT count(*) FROM events' 2>/dev/null || echo '?')"
}

echo "generating the day (gen_clean.py SEED 1000 1000000) ..."
python3 "$ROOT/tests/cli/gen_clean.py" 20240601 1000 1000000 >"$WORK/day.jsonl"
echo "day file: $(wc -l <"$WORK/day.jsonl") lines, $(du -h "$WORK/day.jsonl" | cut -f1)"
run day "$WORK/day.jsonl"

python3 "$ROOT/tests/cli/gen_clean.py" 7 1000 50000 --prefix burst | head -n 100000 >"$WORK/burst.jsonl"
run burst "$WORK/burst.jsonl"
