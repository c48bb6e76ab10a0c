#!/usr/bin/env bash
# Three `tradecapture serve` instances behind nginx (scripts/gateway-cluster.sh) on one
# PostgreSQL and one Redis, requests routed by partition group. tradecapture-load drives
# POST /v1/trades through nginx (NEW, AMEND, CANCEL over 200 skewed partitions); one instance is
# killed with SIGKILL in the middle, while it has requests in flight; the load finishes through
# the survivors (nginx re-sends to another instance, the client re-sends after errors: both
# safe, events are idempotent). Then:
# - every event the client saw ACCEPTED is stored exactly once, in its partition, at the seq the
#   client was told; the store holds exactly the events answered ACCEPTED or DUPLICATE (a
#   DUPLICATE answers a re-send of an event that an earlier attempt had applied);
# - no event is left without an outcome, none is REJECTED or STALE;
# - every partition's seq is 1..n without gaps or repeats, every (trade_id, version) applied at
#   most once, positions equal the fold of the stored events (check_store.py);
# - all three instances served requests before the kill, and requests were answered after it.
source "$(dirname "$0")/common.bash" "$1"
LOAD="$BIN_DIR/tradecapture-load"
[[ -x "$LOAD" ]] || fail "$LOAD is not an executable"
command -v nginx >/dev/null || fail "nginx is not installed (scripts/install-deps.sh)"
source "$ROOT/scripts/gateway-cluster.sh"
GC_ACCESS_LOG=1
# Partition affinity (nginx `hash` on the client's X-Route-Key): with least_conn any instance
# gets any partition and an instance waits for the leases another one keeps while it stays
# busy on them, which makes the run slow (see BENCHMARKS.md, "HTTP gateway"); the guarantees
# checked here hold either way (NGINX_TEST_BALANCE=least_conn runs it so).
GC_BALANCE=${NGINX_TEST_BALANCE:-hash}
GC_LEASE_MS=${GC_LEASE_MS:-1500}
load_pid=
trap '[[ -z "$load_pid" ]] || kill "$load_pid" 2>/dev/null || true; gc_stop; rm -rf "$TMP"' EXIT

show_logs() {
  local f
  for f in "${GC_DIR:-/nonexistent}"/gw*.log "${GC_DIR:-/nonexistent}/error.log" "$TMP/load.err"; do
    [[ -f "$f" ]] || continue
    echo "--- $f (tail)" >&2
    tail -n 25 "$f" >&2
  done
}

started=$SECONDS
gc_start "$BIN_DIR" 3 || { show_logs; fail "the cluster did not start (see FATAL above)"; }
gc_print

PREFIX="ngx$$-"
VICTIM=2
# 20 s at 2,000 events/s in batches of 20 (100 requests/s) over 24 connections: below
# saturation, so that the run stays short on a loaded 2-core machine.
"$LOAD" --url "$GC_URL" --connections 24 --batch 20 --rate 2000 --duration 20 \
  --partitions 200 --skew 0.8 --route-groups 50 --mix 80:12:8 --seed 7 --trade-prefix "$PREFIX" \
  --max-retries 200 --max-backoff 0.5 --timeout 20 --drain-timeout 60 --progress 5 \
  --accepted-log "$TMP/accepted.jsonl" --json >"$TMP/load.json" 2>"$TMP/load.err" &
load_pid=$!

# Kill the victim in the middle, once it has answered some requests itself.
sleep 8
kill -0 "$load_pid" 2>/dev/null || { show_logs; fail "the load generator ended early"; }
victim_port=${GC_PORTS[$VICTIM]}
sleep 1.2  # the access log is flushed every second
before=$(grep -c "127.0.0.1:$victim_port" "$GC_DIR/access.log" || true)
# Kill it while it has requests in flight (its gauge of admitted events), so that nginx has
# requests to re-send; after 5 s without any, kill it anyway.
inflight=0
for _ in $(seq 1 250); do
  inflight=$(curl -s --max-time 1 "http://127.0.0.1:$victim_port/metrics" |
    awk '$1 == "tradecapture_gateway_admitted_events" { print $2 + 0 }' || true)
  [[ "${inflight:-0}" -gt 0 ]] && break
  sleep 0.02
done
kill_time=$(date +%s.%N)
echo "killing gw$VICTIM (PID ${GC_PIDS[$VICTIM]}, port $victim_port) with SIGKILL; it had answered" \
  "~$before requests and had ${inflight:-0} events in flight"
gc_kill_instance "$VICTIM"

if ! wait "$load_pid"; then
  cat "$TMP/load.err" >&2
  show_logs
  fail "tradecapture-load exited non-zero (some events have no outcome)"
fi
cat "$TMP/load.err"
echo "load finished after $((SECONDS - started)) s"

"$TC" events --store "$GC_STORE" >"$TMP/events.jsonl" || fail "tradecapture events failed"
"$TC" positions --store "$GC_STORE" >"$TMP/positions.jsonl" || fail "tradecapture positions failed"
python3 "$HERE/check_store.py" "$TMP/events.jsonl" "$TMP/positions.jsonl" ||
  fail "store invariants (seq, at most once, positions = fold of events)"

sleep 1.2  # access log flush
python3 - "$TMP/load.json" "$TMP/accepted.jsonl" "$TMP/events.jsonl" "$PREFIX" \
  "$GC_DIR/access.log" "$kill_time" "${GC_PORTS[1]}" "${GC_PORTS[2]}" "${GC_PORTS[3]}" <<'EOF' ||
import collections, json, sys
summary_path, accepted_path, events_path, prefix, access_path, kill_time = sys.argv[1:7]
ports = sys.argv[7:]
kill_time = float(kill_time)

def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)

s = json.load(open(summary_path))
out = s["outcomes"]
# (Events still queued in the client when the 20 s are over are never sent: unsent_events is
# only reported. Every event that was sent must have its outcome.)
if s["events_failed"]:
    fail(f"{s['events_failed']} events sent without an outcome")
if s["events_ok"] != s["events_sent"] or s["events_ok"] == 0:
    fail(f"{s['events_ok']} outcomes for {s['events_sent']} events sent")
bad = {k: v for k, v in out.items() if k not in ("ACCEPTED", "DUPLICATE")}
if bad:
    fail(f"unexpected outcomes {bad} (the client only amends/cancels confirmed live trades)")

stored = collections.Counter()
where = {}
for line in open(events_path):
    e = json.loads(line)
    if not e["trade_id"].startswith(prefix):
        continue
    k = (e["trade_id"], e["version"])
    stored[k] += 1
    where[k] = ((e["account"], e["book"], e["security"]), e["seq"], e["type"])
twice = [k for k, n in stored.items() if n != 1]
if twice:
    fail(f"{len(twice)} events stored more than once, e.g. {twice[:3]}")

accepted = [json.loads(l) for l in open(accepted_path) if l.strip()]
if len(accepted) != out.get("ACCEPTED", 0):
    fail(f"accepted log has {len(accepted)} lines, summary says ACCEPTED {out.get('ACCEPTED')}")
seen = set()
for a in accepted:
    k = (a["trade_id"], a["version"])
    if k in seen:
        fail(f"the client saw {k} ACCEPTED twice")
    seen.add(k)
    if k not in where:
        fail(f"{k} was answered ACCEPTED (seq {a['seq']}) but is not in the store")
    part, seq, typ = where[k]
    if part != (a["account"], a["book"], a["security"]) or seq != a["seq"] or typ != a["type"]:
        fail(f"{k}: answered ACCEPTED as {a['type']} seq {a['seq']} in "
             f"{(a['account'], a['book'], a['security'])}, stored as {typ} seq {seq} in {part}")
want = out.get("ACCEPTED", 0) + out.get("DUPLICATE", 0)
if len(stored) != want:
    fail(f"the store holds {len(stored)} events of this run, the client was answered "
         f"ACCEPTED or DUPLICATE for {want}")

per_port = collections.Counter()
after_kill_ok = 0
for line in open(access_path):
    parts = line.split()
    t, status, upstream = float(parts[0]), parts[1], parts[3].strip('"')
    for p in ports:
        if f"127.0.0.1:{p}" in upstream and t < kill_time:
            per_port[p] += 1
    if t > kill_time + 0.5 and status == "200":
        after_kill_ok += 1
for p in ports:
    if per_port[p] == 0:
        fail(f"the instance on port {p} answered no request before the kill")
if after_kill_ok == 0:
    fail("no request was answered after the kill")
print(f"ok: {s['events_sent']} events sent ({s['unsent_events']} left unsent at the end), "
      f"{len(accepted)} ACCEPTED events stored once at the seq the client saw; "
      f"{out.get('DUPLICATE', 0)} DUPLICATE re-sends; {len(stored)} stored events of this run; "
      f"requests per instance before the kill {dict(per_port)}; {after_kill_ok} answered after it; "
      f"{s['retries']} client retries {s['errors']}")
EOF
  { show_logs; fail "verification failed"; }

# The survivors drain and exit 0 on SIGTERM.
for i in 1 3; do
  gc_stop_instance "$i" || { show_logs; fail "gw$i did not exit 0 after SIGTERM"; }
done
echo "ok: nginx cluster with an instance killed mid-run ($((SECONDS - started)) s)"
