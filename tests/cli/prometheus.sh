#!/usr/bin/env bash
# GET /metrics of `tradecapture serve` against the real tools: `promtool check metrics` accepts a
# live scrape taken under load, and a real Prometheus server (throwaway: loopback, free port,
# temporary TSDB, 1 s scrape interval) scraping the gateway while trades are posted answers
# PromQL queries over tradecapture_trades_total and process_* with positive values.
source "$(dirname "$0")/common.bash" "$1"
source "$HERE/http_common.bash"
mkdir -p "$TMP/servers"
TC_SERVERS_DIR="$TMP/servers" source "$ROOT/scripts/lib/servers.bash"  # tc_free_port, tc_wait_port

for tool in promtool prometheus; do
  command -v "$tool" >/dev/null ||
    fail "$tool not found (Debian package 'prometheus'; scripts/install-deps.sh installs it)"
done

start_server prom --store "sqlite:$TMP/prom.db"
GW_PID=$SERVER_PID
GW_PORT=$PORT

# A scrape after some traffic (every family populated, including HTTP codes other than 200).
client post-load "$GW_PORT" 5 0.5
python3 - "$GW_PORT" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
for path in ("/nope", "/v1/positions"):
    c.request("GET", path)
    c.getresponse().read()
EOF
client scrape "$GW_PORT" "$TMP/metrics.txt"
promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool.out" 2>&1 || {
  cat "$TMP/promtool.out" >&2
  fail "promtool check metrics rejects the scrape"
}
[[ ! -s $TMP/promtool.out ]] || { cat "$TMP/promtool.out" >&2; fail "promtool check metrics reports problems"; }
for series in 'tradecapture_trades_total{outcome="accepted"} 100' \
  'tradecapture_http_requests_total{code="404"} 1' 'tradecapture_build_info{version="' \
  'tradecapture_submit_latency_seconds_bucket{le="+Inf"} 100' \
  'tradecapture_submit_latency_seconds_count 100' 'tradecapture_commit_latency_seconds_sum ' \
  'tradecapture_batch_size_events_bucket{le="1"} ' 'tradecapture_retries_total{cause="deadlock"} ' \
  'tradecapture_lock_wait_seconds_bucket{le="1e-06"} ' 'tradecapture_leases_held ' \
  'tradecapture_store_pool_size ' 'tradecapture_http_connections_active ' \
  'tradecapture_http_request_duration_seconds_count ' 'tradecapture_in_flight 0' \
  'tradecapture_lock_grants_total ' 'tradecapture_partitions_cached '; do
  grep -qF -- "$series" "$TMP/metrics.txt" || fail "the scrape has no '$series'"
done
# The process metrics of the Prometheus client libraries (tradecapture::metrics'
# ProcessCollector, from /proc): present, each family once, and plausible.
python3 - "$TMP/metrics.txt" "$GW_PID" <<'PY' || fail "process_* metrics missing or implausible"
import sys, time
values, types = {}, {}
for line in open(sys.argv[1]):
    if line.startswith("# TYPE process_"):
        _, _, name, kind = line.split()
        assert name not in types, "two TYPE lines for " + name
        types[name] = kind
    elif line.startswith("process_"):
        name, value = line.split()
        values[name] = float(value)
want = {"process_cpu_seconds_total": "counter", "process_resident_memory_bytes": "gauge",
        "process_virtual_memory_bytes": "gauge", "process_open_fds": "gauge",
        "process_max_fds": "gauge", "process_start_time_seconds": "gauge"}
for name, kind in want.items():
    assert types.get(name) == kind, "%s: TYPE %r" % (name, types.get(name))
    assert values.get(name, 0) > 0, "%s = %r" % (name, values.get(name))
assert values["process_virtual_memory_bytes"] >= values["process_resident_memory_bytes"]
assert values["process_max_fds"] >= values["process_open_fds"] >= 3
assert time.time() - 3600 < values["process_start_time_seconds"] <= time.time() + 1
open_fds = len(__import__("os").listdir("/proc/%s/fd" % sys.argv[2]))
assert abs(values["process_open_fds"] - open_fds) < 64, (values["process_open_fds"], open_fds)
print("ok: process metrics %s" % ", ".join("%s %g" % (n, values[n]) for n in want))
PY
echo "ok: promtool check metrics accepts a live scrape ($(wc -l <"$TMP/metrics.txt") lines)"

# A real Prometheus server scraping the gateway every second.
PROM_PORT=$(tc_free_port)
mkdir -p "$TMP/tsdb"
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: tradecapture
    static_configs:
      - targets: ["127.0.0.1:$GW_PORT"]
EOF
promtool check config "$TMP/prometheus.yml" >/dev/null || fail "promtool check config"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
SERVER_PIDS+=("$PROM_PID")
tc_wait_port "$PROM_PORT" "$PROM_PID" prometheus "$TMP/prometheus.log" ||
  fail "prometheus did not start"
client prom-query "$PROM_PORT" 'up{job="tradecapture"}' 30
# Trades posted while Prometheus scrapes: the counters move between scrapes.
client post-load "$GW_PORT" 40 10 >"$TMP/load.out" &
LOAD_PID=$!
client prom-query "$PROM_PORT" 'sum(tradecapture_trades_total{outcome="accepted"})' 30
client prom-query "$PROM_PORT" 'process_resident_memory_bytes{job="tradecapture"}' 30
client prom-query "$PROM_PORT" 'sum(rate(tradecapture_trades_total[10s]))' 30
client prom-query "$PROM_PORT" \
  'histogram_quantile(0.99, sum by (le) (rate(tradecapture_submit_latency_seconds_bucket[10s])))' 30
wait "$LOAD_PID" || { cat "$TMP/load.out" >&2; fail "posting trades during the scrapes failed"; }

kill -TERM "$PROM_PID"
wait "$PROM_PID" || true
stop_server "$GW_PID" prom
echo "PASS prometheus"
