#!/usr/bin/env bash
# Fault contract (spec section 6, point 5): withdrawn means withdrawn, and the proxy never
# re-sends a request whose first copy can still be decided.
#
# Two instances behind nginx (scripts/gateway-cluster.sh, partition affinity on X-Route-Key,
# request deadline 3 s, so nginx's read timeout is 3 + 2 + 1 = 6 s). A client sends the events
# of a few partitions one at a time. The partitions' leases are held by gw2 when event H is
# sent to gw1 (through nginx, and a second copy straight to gw1); gw1 is SIGSTOPped while it
# holds H. The client gives up, waits until H's deadline has passed, re-sends H to gw2 and goes
# on there; then gw1 gets SIGCONT. Checks:
#  - gw1's held copy answers 503 (withdrawn at the deadline), never a late 200 decision;
#  - nginx answers its copy with an error (504 after its read timeout) and did not re-send it
#    to gw2 (one upstream in the access log for that request);
#  - every outcome the client saw equals the independent model's sequential run, and the store
#    holds every event once (events and positions equal the model's).
# Takes about 1 minute.
source "$(dirname "$0")/common.bash" "$1"
GC_ROOT=$ROOT
source "$ROOT/scripts/gateway-cluster.sh"
cd "$TMP"
trap 'kill -CONT ${GC_PIDS[1]:-0} 2>/dev/null || true; gc_stop >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT

GC_BALANCE=hash
GC_ACCESS_LOG=1
GC_REQUEST_DEADLINE_MS=3000
GC_COMMIT_MARGIN_MS=2000
GC_LEASE_MS=4000
GC_SERVE_ARGS=(--threads 2 --log-level info)
gc_start "$BIN_DIR" 2 || fail "the cluster did not start (see above)"
grep -q "proxy_read_timeout 6s;" "$GC_DIR/nginx.conf" || fail "nginx.conf: proxy_read_timeout is not deadline + margin (6s)"
if grep -Eq "^ *proxy_next_upstream [^;]*non_idempotent" "$GC_DIR/nginx.conf"; then fail "nginx.conf still re-sends POSTs (non_idempotent)"; fi
echo "ok: cluster up: nginx $GC_URL, gw1 :${GC_PORTS[1]} (PID ${GC_PIDS[1]}), gw2 :${GC_PORTS[2]}"

gen --seed 97 --lines 260 --partitions 3 --bad 0 --crlf 0 --no-whale --out raw.jsonl
python3 - raw.jsonl trace.jsonl <<'PY'
import json, sys
out = open(sys.argv[2], "wb")
for raw in open(sys.argv[1], "rb"):
    try:
        if isinstance(json.loads(raw.decode("utf-8")), dict):
            out.write(raw.rstrip(b"\r\n") + b"\n")
    except Exception:
        pass
PY
model run --outcomes model.outcomes --positions model.positions --events model.events trace.jsonl

cat >scenario.py <<'PY'
import http.client, json, os, signal, socket, sys, threading, time
nginx, gw1, gw1_pid, access_log = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
gw1_addr = "127.0.0.1:%d" % gw1
lines = [l for l in open("trace.jsonl", "rb").read().split(b"\n") if l]
out = open("got.outcomes", "w", encoding="utf-8")
H = len(lines) // 2  # the held event (1-based line)

def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    os.kill(gw1_pid, signal.SIGCONT)
    sys.exit(1)

def post(port, body, key=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    if key:
        h["X-Route-Key"] = key
    try:
        c.request("POST", "/v1/trades", body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    except (OSError, http.client.HTTPException) as e:
        return 0, repr(e).encode(), {}
    finally:
        c.close()

# Route keys: which key nginx sends to gw1, which to gw2 (from the access log's upstream).
def log_lines():
    try:
        return open(access_log).read().splitlines()
    except FileNotFoundError:
        return []
before = len(log_lines())
for i in range(24):
    c = http.client.HTTPConnection("127.0.0.1", nginx, timeout=10)
    c.request("GET", "/health/live", headers={"X-Route-Key": "k%d" % i})
    c.getresponse().read()
    c.close()
deadline = time.time() + 10
while len(log_lines()) < before + 24 and time.time() < deadline:
    time.sleep(0.2)
probes = log_lines()[before:before + 24]
if len(probes) < 24:
    fail("the access log did not show the 24 probes")
key1 = key2 = None
for i, l in enumerate(probes):
    up = l.split('"')[1]
    if up == gw1_addr and key1 is None:
        key1 = "k%d" % i
    elif up != gw1_addr and key2 is None:
        key2 = "k%d" % i
if not key1 or not key2:
    fail("no route key found for each instance: %r" % probes)
print("ok: route key %s -> gw1, %s -> gw2" % (key1, key2))

def send_until_outcome(n, key):
    start = time.time()
    while True:
        status, data, _ = post(nginx, lines[n - 1], key)
        if status == 200:
            o = json.loads(data)["outcomes"]
            if len(o) != 1:
                fail("line %d: %d outcomes" % (n, len(o)))
            o[0]["line"] = n
            out.write(json.dumps(o[0]) + "\n")
            return
        if status not in (0, 502, 503, 504):
            fail("line %d: HTTP %d %r" % (n, status, data[:300]))
        if time.time() - start > 60:
            fail("line %d: no outcome within 60 s (HTTP %d %r)" % (n, status, data[:300]))
        time.sleep(0.3)

# Phase 1: everything before H through gw2 (gw2 then holds the partitions' leases).
for n in range(1, H):
    send_until_outcome(n, key2)
print("ok: lines 1-%d decided through gw2" % (H - 1))

# H goes to gw1 twice: through nginx (route key of gw1) and straight to gw1's port.
held = {}
def held_post(name, port, key):
    t0 = time.time()
    held[name] = post(port, lines[H - 1], key, timeout=60) + (time.time() - t0,)
threads = [threading.Thread(target=held_post, args=("nginx", nginx, key1)),
           threading.Thread(target=held_post, args=("direct", gw1, None))]
for t in threads:
    t.start()
time.sleep(0.3)
os.kill(gw1_pid, signal.SIGSTOP)
sent = time.time()
print("ok: gw1 SIGSTOPped while it holds line %d" % H)
# The client's own timeout (1 s) has long passed; re-send only once the deadline (3 s) has
# passed, with a margin, to the other instance.
time.sleep(4.5)
send_until_outcome(H, key2)
for n in range(H + 1, len(lines) + 1):
    send_until_outcome(n, key2)
print("ok: line %d re-sent after its deadline, lines %d-%d decided through gw2" % (H, H + 1, len(lines)))
# Keep gw1 stopped past nginx's read timeout (6 s) before letting it run again.
time.sleep(max(0.0, 8.0 - (time.time() - sent)))
os.kill(gw1_pid, signal.SIGCONT)
for t in threads:
    t.join(70)
out.close()
ds, dbody, dh = held["direct"][:3]
if ds != 503:
    fail("gw1's held copy of line %d answered HTTP %d %r after SIGCONT: a decision after its "
         "deadline (it must be withdrawn: 503)" % (H, ds, dbody[:300]))
if "Retry-After" not in dh and "retry-after" not in {k.lower() for k in dh}:
    fail("gw1's 503 has no Retry-After")
print("ok: gw1's held copy answered 503 (withdrawn): %s" % dbody[:200].decode(errors="replace").strip())
ns, nbody = held["nginx"][:2]
if ns == 200:
    fail("nginx answered 200 for the held copy of line %d: %r" % (H, nbody[:300]))
print("ok: nginx answered %d for its held copy after %.1f s" % (ns, held["nginx"][3]))
# The access log: the held request went to gw1 only (no re-send by nginx).
time.sleep(1.5)
for l in log_lines():
    parts = l.split()
    if len(parts) > 1 and parts[1] in ("502", "504") and '"' in l:
        ups = l.split('"')[1]
        if "," in ups or ":" in ups and gw1_addr not in ups:
            fail("nginx re-sent a request to another upstream: %s" % l)
print("ok: nginx did not re-send the held request to gw2")
PY
timeout 170 python3 scenario.py "$GC_NGINX_PORT" "${GC_PORTS[1]}" "${GC_PIDS[1]}" "$GC_DIR/access.log" ||
  { tail -n 20 "$GC_DIR/gw1.log" >&2; fail "the proxy re-send scenario failed"; }
kill -CONT "${GC_PIDS[1]}" 2>/dev/null || true

check_same model.outcomes got.outcomes "outcomes the client saw (held event re-sent after its deadline)"
dump_ok positions "$GC_STORE" positions.jsonl
dump_ok events "$GC_STORE" events.jsonl
check_same model.events events.jsonl "events (every event stored once)"
check_same model.positions positions.jsonl "positions"
echo "PASS fault_proxy_resend"
