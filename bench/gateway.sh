#!/usr/bin/env bash
# The HTTP gateway under load: `tradecapture serve` driven by `tradecapture-load` over keep-alive
# connections (everything on 127.0.0.1, on this machine's cores).
#
#   bench/gateway.sh BUILD_DIR [RESULT_DIR]      (about 6 minutes; RESULT_DIR default: a new
#                                                 /tmp/tc-gateway-XXXXXX, kept)
#
# 1. one instance on SQLite (local lock): batched POSTs (closed loop), single-event POSTs;
# 2. one instance on PostgreSQL + Redis: the same;
# 3. three instances behind nginx on PostgreSQL + Redis (scripts/gateway-cluster.sh), with
#    partition affinity (nginx `hash` on the client's X-Route-Key, tradecapture-load
#    --route-groups) and, for comparison, least_conn: batched and single-event;
# 4. a sweep of offered load (open loop, --rate) on one PostgreSQL instance and on the nginx
#    cluster: achieved throughput and latency percentiles per offered rate.
# Every run gets a fresh database. Results: RESULT_DIR/gateway.csv (one line per run),
# RESULT_DIR/*.json (tradecapture-load --json), RESULT_DIR/env.txt (machine, load). Plot with
# bench/plot_gateway.sh RESULT_DIR/gateway.csv bench/gateway-load.png.
#
# Knobs (environment): GW_SECONDS (10, per closed-loop run), GW_SWEEP_SECONDS (8),
# GW_SWEEP_RATES ("2000 5000 10000 15000 20000 25000 30000 40000"), GW_BATCH (500),
# GW_SWEEP_BATCH (100), GW_PARTITIONS (1000), GW_SKIP_SQLITE=1, GW_SKIP_SWEEP=1.
set -euo pipefail
BUILD=$(cd "${1:?usage: bench/gateway.sh BUILD_DIR [RESULT_DIR]}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TC=$BUILD/bin/tradecapture
LOAD=$BUILD/bin/tradecapture-load
[ -x "$TC" ] && [ -x "$LOAD" ] || { echo "need $TC and $LOAD (cmake --build BUILD_DIR --target tradecapture tradecapture-load)" >&2; exit 1; }
OUT=${2:-$(mktemp -d /tmp/tc-gateway-XXXXXX)}
mkdir -p "$OUT"
SECS=${GW_SECONDS:-10}
SWEEP_SECS=${GW_SWEEP_SECONDS:-8}
RATES=${GW_SWEEP_RATES:-"2000 5000 10000 15000 20000 25000 30000 40000"}
BATCH=${GW_BATCH:-500}
SWEEP_BATCH=${GW_SWEEP_BATCH:-100}
PARTS=${GW_PARTITIONS:-1000}
NGROUPS=64

source "$ROOT/scripts/gateway-cluster.sh"
GC_ACCESS_LOG=0
GC_SERVE_ARGS=(--log-level warn)
sqlite_pid=
trap '[ -z "$sqlite_pid" ] || kill "$sqlite_pid" 2>/dev/null || true; gc_stop' EXIT

{
  echo "date: $(date -Is)"
  echo "nproc: $(nproc)"
  lscpu | grep -E 'Model name|^CPU\(s\)|MHz' || true
  echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "tradecapture: $("$TC" --version 2>&1)"
  nginx -v 2>&1
  "$PG_BIN/postgres" --version
  redis-server --version
} >"$OUT/env.txt"
cat "$OUT/env.txt"

CSV=$OUT/gateway.csv
echo "config,mode,offered_rate,batch,connections,events_per_s,requests_per_s,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,events_ok,events_failed,unsent_events,retries,load1,cpu_servers_s,cpu_postgres_s,cpu_redis_s,cpu_nginx_s,cpu_client_s,cpu_us_per_event" >"$CSV"

# cpu_snapshot: CPU seconds (user + system) used so far by each component, children included
# (a process's own time plus its reaped children's, plus its live descendants'): independent of
# what else runs on the machine, unlike the wall-clock figures.
cpu_snapshot() {
  python3 - "servers=${sqlite_pid:-} ${GC_PIDS[*]:-}" "postgres=${TC_PG_PID:-}" \
    "redis=${TC_REDIS_PID:-}" "nginx=${GC_NGINX_PID:-}" <<'EOF'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
stat, kids = {}, {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stat[int(d)] = sum(int(x) for x in f[11:15]) / tick  # utime stime cutime cstime
        kids.setdefault(int(f[1]), []).append(int(d))
def tree(p):
    return stat.get(p, 0.0) + sum(tree(c) for c in kids.get(p, []))
print(" ".join(f"{a.split('=')[0]}={sum(tree(int(p)) for p in a.split('=')[1].split()):.2f}"
               for a in sys.argv[1:]))
EOF
}

# run LABEL MODE URL ARGS...: one tradecapture-load run, its summary printed and added to the CSV.
run() {
  local label=$1 mode=$2 url=$3
  shift 3
  local n
  n=$(ls "$OUT" | grep -c '\.json$' || true)
  local json="$OUT/$(printf '%02d' "$n")-$label.json" load1
  load1=$(cut -d' ' -f1 /proc/loadavg)
  echo "== $label ($mode) load $load1: tradecapture-load --url $url $*"
  local before after
  before=$(cpu_snapshot)
  "$LOAD" --url "$url" --partitions "$PARTS" --skew 0.8 --progress 0 --json \
    --trade-prefix "b$n-$$-" "$@" >"$json" 2>"$json.txt" || echo "   (tradecapture-load exited non-zero)"
  after=$(cpu_snapshot)
  sed -n '1,8p' "$json.txt" | sed 's/^/   /'
  python3 - "$json" "$label" "$mode" "$load1" "$before" "$after" >>"$CSV" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
l = j["latency_ms"]
b = dict(kv.split("=") for kv in sys.argv[5].split())
a = dict(kv.split("=") for kv in sys.argv[6].split())
cpu = [round(float(a[k]) - float(b[k]), 2) for k in ("servers", "postgres", "redis", "nginx")]
cpu.append(round(j["client_cpu_s"], 2))
per_event = sum(cpu) / max(1, j["events_ok"]) * 1e6
print(",".join(str(x) for x in [
    sys.argv[2], sys.argv[3], j["offered_rate"], j["batch"], j["connections"],
    round(j["events_per_s"]), round(j["requests_per_s"], 1), round(l["p50"], 2),
    round(l["p90"], 2), round(l["p99"], 2), round(l["p99_9"], 2), round(l["max"], 2),
    j["events_ok"], j["events_failed"], j["unsent_events"], j["retries"], sys.argv[4]]
    + cpu + [round(per_event, 1)]))
EOF
  tail -n 1 "$CSV" | awk -F, '{ printf "   CPU s: servers %s, postgres %s, redis %s, nginx %s, client %s = %s us per event\n", $18, $19, $20, $21, $22, $23 }'
}

newdb() {
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$TC_PG_PORT" -U postgres "$1"
  echo "postgresql://postgres@127.0.0.1:$TC_PG_PORT/$1"
}

# restart_instances DB N: instances 1..N on a fresh database (the others stopped).
restart_instances() {
  local db=$1 n=$2 i
  for ((i = 1; i <= GC_N; i++)); do gc_stop_instance "$i" || true; done
  GC_STORE=$(newdb "$db")
  for ((i = 1; i <= n; i++)); do gc_start_instance "$i"; done
}

# ---- 1. SQLite, one instance ------------------------------------------------------------------
if [ "${GW_SKIP_SQLITE:-0}" != 1 ]; then
  for what in batched single; do
    port=$(tc_free_port)
    rm -f "$OUT/gw-$what.db"*
    "$TC" serve --listen "127.0.0.1:$port" --store "sqlite:$OUT/gw-$what.db" --lock local: \
      --log-level warn >"$OUT/sqlite-$what.log" 2>&1 &
    sqlite_pid=$!
    gc_wait_ready "$port" "$sqlite_pid" "tradecapture serve (SQLite)" "$OUT/sqlite-$what.log"
    if [ $what = batched ]; then
      run sqlite-1 batched "http://127.0.0.1:$port" -c 16 -b "$BATCH" -d "$SECS"
    else
      run sqlite-1 single "http://127.0.0.1:$port" -c 64 -b 1 -d "$SECS"
    fi
    kill -TERM "$sqlite_pid"; wait "$sqlite_pid" || echo "   (SQLite instance exited non-zero)"
    sqlite_pid=
    rm -f "$OUT/gw-$what.db"*
  done
fi

# ---- 2.-4. PostgreSQL + Redis --------------------------------------------------------------
GC_BALANCE=hash
gc_start "$BUILD/bin" 3
gc_print
one="http://127.0.0.1:${GC_PORTS[1]}"

restart_instances pg1_batched 1
run pg-1 batched "$one" -c 16 -b "$BATCH" -d "$SECS"
restart_instances pg1_single 1
run pg-1 single "$one" -c 64 -b 1 -d "$SECS"

restart_instances nginx_batched 3
run nginx-3-hash batched "$GC_URL" -c 24 -b "$BATCH" -d "$SECS" --route-groups $NGROUPS
restart_instances nginx_single 3
run nginx-3-hash single "$GC_URL" -c 64 -b 1 -d "$SECS" --route-groups $NGROUPS

# The same cluster with least_conn (nginx reloaded with the other upstream block).
GC_BALANCE=least_conn
gc_write_nginx_conf
kill -HUP "$GC_NGINX_PID"
sleep 1
restart_instances nginx_lc_batched 3
run nginx-3-least_conn batched "$GC_URL" -c 24 -b "$BATCH" -d "$SECS" --timeout 60
GC_BALANCE=hash
gc_write_nginx_conf
kill -HUP "$GC_NGINX_PID"
sleep 1

# ---- 4. offered-load sweep -------------------------------------------------------------------
if [ "${GW_SKIP_SWEEP:-0}" != 1 ]; then
  restart_instances sweep_one 1
  for r in $RATES; do
    run pg-1 sweep "$one" -c 128 -b "$SWEEP_BATCH" -r "$r" -d "$SWEEP_SECS" --drain-timeout 30
  done
  restart_instances sweep_nginx 3
  for r in $RATES; do
    run nginx-3-hash sweep "$GC_URL" -c 128 -b "$SWEEP_BATCH" -r "$r" -d "$SWEEP_SECS" \
      --drain-timeout 30 --route-groups $NGROUPS
  done
fi

echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/env.txt"
echo
column -s, -t "$CSV"
echo
echo "results: $OUT (plot: bench/plot_gateway.sh $CSV bench/gateway-load.png)"
