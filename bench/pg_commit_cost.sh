#!/usr/bin/env bash
# What one PostgreSQL transaction costs the server on this machine, without tradecapture:
# pgbench (one client, prepared statements, 5 s a run) runs a one-row UPDATE as a transaction of
# its own ("one") and four one-row UPDATEs between BEGIN and COMMIT ("six": six round trips), with
# synchronous_commit on (a durable commit, as tradecapture's) and off, alternated. Per run it
# prints the transactions per second and the CPU of every process of the throwaway cluster per
# transaction (/proc: the backends, the WAL writer and the rest, exited backends included through
# the postmaster's children times). It separates the fixed cost of a small batch (issue #12):
# the durable commit (on minus off) from the round trips (six minus one).
#
#   bench/pg_commit_cost.sh [--help] [ROUNDS]     (ROUNDS alternations, default 2; ~20 s each)
#
# Needs postgresql (scripts/install-deps.sh installs it); starts and stops its own server on a
# free loopback port.
set -euo pipefail
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
ROUNDS=${1:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../scripts/lib/servers.bash
source "$HERE/../scripts/lib/servers.bash"
TC_SERVERS_DIR=$(mktemp -d /tmp/tc-pgcommit-XXXXXX)
export TC_SERVERS_DIR
chmod 755 "$TC_SERVERS_DIR"
cleanup() {
  if [ -n "${TC_PG_PID:-}" ]; then
    kill "$TC_PG_PID" 2>/dev/null || true
    wait "$TC_PG_PID" 2>/dev/null || true
  fi
  rm -rf "$TC_SERVERS_DIR"
}
trap cleanup EXIT
tc_start_postgres
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
psql "$TC_PG_URI" -q -c "CREATE TABLE t (id bigint PRIMARY KEY, v bigint)" \
  -c "INSERT INTO t SELECT g, 0 FROM generate_series(1, 1000) g"
printf 'UPDATE t SET v = v + 1 WHERE id = 1;\n' >"$TC_SERVERS_DIR/one.sql"
printf 'BEGIN;\n%sCOMMIT;\n' "$(for i in 1 2 3 4; do
  printf 'UPDATE t SET v = v + 1 WHERE id = %d;\n' "$i"; done)" >"$TC_SERVERS_DIR/six.sql"

# CPU ticks (1/100 s) of every process of the cluster, with the reaped children's.
server_ticks() {
  local sum=0 pid t
  for pid in "$TC_PG_PID" $(pgrep -P "$TC_PG_PID"); do
    t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    sum=$((sum + t))
  done
  echo "$sum"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-26s %10s %16s\n' "run" "tx/s" "server CPU/tx"
for _ in $(seq 1 "$ROUNDS"); do
  for sync in on off; do
    psql "$TC_PG_URI" -q -c "ALTER SYSTEM SET synchronous_commit = $sync" \
      -c "SELECT pg_reload_conf()" >/dev/null
    for script in one six; do
      before=$(server_ticks)
      tps=$("$PGBENCH" -n -M prepared -c 1 -T 5 -f "$TC_SERVERS_DIR/$script.sql" "$TC_PG_URI" \
        2>/dev/null | awk '/number of transactions actually processed/ {print $NF}')
      after=$(server_ticks)
      printf '%-26s %10d %13d us\n' "$script, synchronous_commit=$sync" $((tps / 5)) \
        $(((after - before) * 10000 / tps))
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
