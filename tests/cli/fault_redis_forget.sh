#!/usr/bin/env bash
# Fault contract (spec section 6, points 1 and 4): the lock service may forget.
#
# Two `tradecapture serve` instances, A and B, on one PostgreSQL and one Redis. One client sends
# the events of a few partitions one at a time (each answered before the next is sent). First A
# alone takes every partition; then Redis loses every key (`FLUSHALL`) and the client alternates
# B, A, B, A... on the same partitions (B: NEW Xn, A: AMEND Xn v2 ...) while A still believes
# it holds their leases; then A alone again, Redis is restarted without persistence, and the
# alternation is repeated. Since
# the client is sequential, every outcome must equal the independent model's sequential run,
# and the store must end up exactly as the model's. The reported bug: after the flush B is
# granted a partition A still believes it holds, B accepts NEW T2, and A, deciding from its
# stale copy, answers AMEND T2 v2 with "REJECTED unknown trade". Takes about 1-2 minutes.
source "$(dirname "$0")/common.bash" "$1"
source "$HERE/http_common.bash"
source "$ROOT/scripts/lib/servers.bash"
cd "$TMP"
trap 'cleanup; tc_stop_servers' EXIT

tc_start_postgres || fail "PostgreSQL did not start (see above)"
tc_start_redis || fail "Redis did not start (see above)"

# Leases of 4 s: an instance keeps a partition (and its cached state) for 1 s after its last
# event, so A still holds the partitions when B is granted them after Redis forgot.
COMMON=(--store "$TC_PG_URI" --lock "$TC_REDIS_URI" --lease-ms 4000 --threads 2
  --request-deadline-ms 20000 --log-level info)
start_server A "${COMMON[@]}" --instance-id A
PORT_A=$PORT
start_server B "${COMMON[@]}" --instance-id B
PORT_B=$PORT

# The trace and who gets each line: phase 1 (A), phase 2 (after FLUSHALL: B/A alternating on
# the partitions A holds), phase 3 (A again), phase 4 (after the Redis restart: alternating).
python3 - <<'PY'
import json
parts = [("ACC%d" % p, "BOOK", "SEC%d" % p) for p in range(1, 4)]
lines, who, phase = [], [], []
def ev(tid, v, typ, p, qty="10", price="1.5", side="BUY"):
    e = {"trade_id": tid, "version": v, "type": typ, "account": p[0], "book": p[1], "security": p[2]}
    if typ != "CANCEL":
        e.update(side=side, quantity=qty, price=price)
    return json.dumps(e)
def add(line, w, ph):
    lines.append(line); who.append(w); phase.append(ph)
for i in range(1, 21):
    for k, p in enumerate(parts):
        add(ev("T%d_%d" % (k, i), 1, "NEW", p, str(i)), "A", 1)
        if i % 3 == 0:
            add(ev("T%d_%d" % (k, i), 2, "AMEND", p, str(i + 1), side="SELL"), "A", 1)
def alternate(tag, ph):
    for i in range(1, 2):
        for k, p in enumerate(parts):
            add(ev("%s%d_%d" % (tag, k, i), 1, "NEW", p, "5"), "B", ph)
            add(ev("%s%d_%d" % (tag, k, i), 2, "AMEND", p, "7"), "A", ph)
            add(ev("%s%d_%d" % (tag, k, i), 3, "CANCEL", p), "B", ph)
            add(ev("%s%d_%d" % (tag, k, i), 3, "CANCEL", p), "A", ph)
            add(ev("%s%d_%d" % (tag, k, i), 4, "AMEND", p, "9"), "A", ph)
alternate("X", 2)
for k, p in enumerate(parts):
    for i in range(1, 4):
        add(ev("U%d_%d" % (k, i), 1, "NEW", p, "3"), "A", 3)
alternate("Y", 4)
open("trace.jsonl", "w").write("\n".join(lines) + "\n")
open("who.txt", "w").write("\n".join(who) + "\n")
open("phases.txt", "w").write(" ".join(str(phase.index(x) + 1) for x in (2, 3, 4)) + " %d\n" % len(lines))
PY
read -r P2 P3 P4 total <phases.txt
model run --outcomes model.outcomes --positions model.positions --events model.events trace.jsonl

# client.py FIRST LAST OUT: posts lines FIRST..LAST (1-based) one at a time, each to the
# instance who.txt names; a 503 (no outcome) is re-sent after a pause until an outcome comes (safe: the
# event was not decided, and nothing later of its partition was sent). Appends the outcomes,
# with 'line' set to the trace line, to OUT.
cat >client.py <<'PY'
import http.client, json, sys, time
ports = [int(sys.argv[1]), int(sys.argv[2])]
first, last, out_path = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
lines = open("trace.jsonl", "rb").read().split(b"\n")
out = open(out_path, "a", encoding="utf-8")
who = open("who.txt").read().split()
conns = {}
def post(port, body):
    for attempt in range(3):
        c = conns.get(port)
        if c is None:
            c = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            c.request("POST", "/v1/trades", body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            return r.status, r.read()
        except (ConnectionError, http.client.HTTPException, OSError):
            c.close()
            conns.pop(port, None)
            time.sleep(0.2)
    return 0, b""
retries = 0
for n in range(first, last + 1):
    body = lines[n - 1]
    port = ports[0] if who[n - 1] == "A" else ports[1]
    start = time.time()
    while True:
        status, data = post(port, body)
        if status == 200:
            break
        if status != 503 and status != 0:
            print("FAIL: line %d: HTTP %d %r" % (n, status, data[:300]), file=sys.stderr)
            sys.exit(1)
        retries += 1
        if time.time() - start > 60:
            print("FAIL: line %d: no outcome within 60 s (last HTTP %d %r)" % (n, status, data[:300]),
                  file=sys.stderr)
            sys.exit(1)
        time.sleep(0.2)
    o = json.loads(data)["outcomes"]
    if len(o) != 1:
        print("FAIL: line %d: %d outcomes for one event" % (n, len(o)), file=sys.stderr)
        sys.exit(1)
    o[0]["line"] = n
    out.write(json.dumps(o[0]) + "\n")
    out.flush()
print("ok: lines %d-%d posted to %s (%d re-sends after 503)" % (first, last, "/".join(sorted(set(who[first - 1:last]))), retries))
PY
timeout 150 python3 client.py "$PORT_A" "$PORT_B" 1 $((P2 - 1)) got.outcomes ||
  fail "client (phase 1: A takes every partition) failed"
redis-cli -h 127.0.0.1 -p "$TC_REDIS_PORT" FLUSHALL >/dev/null || fail "redis-cli FLUSHALL failed"
echo "ok: Redis FLUSHALL after line $((P2 - 1))"
timeout 150 python3 client.py "$PORT_A" "$PORT_B" "$P2" $((P3 - 1)) got.outcomes ||
  fail "client (phase 2, B/A alternating after FLUSHALL) failed"
timeout 150 python3 client.py "$PORT_A" "$PORT_B" "$P3" $((P4 - 1)) got.outcomes ||
  fail "client (phase 3, A again) failed"
tc_restart_redis || fail "Redis did not restart (see above)"
echo "ok: Redis restarted without persistence after line $((P4 - 1))"
timeout 150 python3 client.py "$PORT_A" "$PORT_B" "$P4" "$total" got.outcomes ||
  fail "client (phase 4, B/A alternating after the restart) failed"

check_same model.outcomes got.outcomes "outcomes seen by the client across the Redis flush and restart"
dump_ok positions "$TC_PG_URI" positions.jsonl
dump_ok events "$TC_PG_URI" events.jsonl
check_same model.positions positions.jsonl "positions"
check_same model.events events.jsonl "events"
stop_server "${SERVER_PIDS[0]}" A
stop_server "${SERVER_PIDS[1]}" B
echo "PASS fault_redis_forget"
