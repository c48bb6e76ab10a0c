#!/usr/bin/env bash
# Bounded noise (spec section 6, point 6; issue 11 "log floods"): Redis, then PostgreSQL, stopped
# for 10 s each under a steady load.
#
# A replay on PostgreSQL + Redis reads a FIFO that a feeder fills at a steady rate for ~40 s (the
# load keeps coming through both outages). Redis is stopped for 10 s and started again on the
# same port, then PostgreSQL likewise. The replay runs at --log-level info with a retry budget
# longer than the outages, so it must ride through both and exit 0. Checked:
# - at most 60 log lines from the first fault to the end (one per fault episode and kind, a
#   summary every 5 s, one line on recovery), and each warning/error line names its cause: the
#   Redis host:port or the PostgreSQL host:port/db (lines of the pipeline itself, "lock service
#   unavailable ..." and the like, must follow such a line; TC_LOG_VOLUME_STRICT=1 requires the
#   endpoint in every line);
# - no libpq or hiredis text outside the log lines (multi-line driver messages are folded);
# - one Redis connection while Redis is up, no socket left holding Redis' port while it is down
#   (the restarted Redis binds it: tc_start_redis fails otherwise);
# - recovery: exit 0, no failed line, final positions equal the independent model's.
# Takes about 60 s.
source "$(dirname "$0")/common.bash" "$1"
source "$ROOT/scripts/lib/servers.bash"
cd "$TMP"

REPLAY_PID=
FEED_PID=
cleanup() {
  [[ -n $FEED_PID ]] && kill "$FEED_PID" 2>/dev/null
  [[ -n $REPLAY_PID ]] && kill -KILL "$REPLAY_PID" 2>/dev/null
  tc_stop_servers
  rm -rf "$TMP"
}
trap cleanup EXIT

tc_start_postgres || fail "PostgreSQL did not start (see above)"
tc_start_redis || fail "Redis did not start (see above)"
REDIS_AT="127.0.0.1:$TC_REDIS_PORT"
PG_AT="127.0.0.1:$TC_PG_PORT/tradecapture"

RATE=1200
gen --seed 97 --lines 48000 --partitions 300 --crlf 0 --bad 0.02 --no-whale --out trace.jsonl
model run --positions model.positions trace.jsonl

# The feeder: RATE lines per second into the FIFO, in 20 slices per second.
cat >feed.py <<'PY'
import sys, time
src, rate, dst = sys.argv[1], float(sys.argv[2]), sys.argv[3]
lines = open(src, "rb").read().splitlines(keepends=True)
out = open(dst, "wb", buffering=0)
t0 = time.monotonic()
step = max(1, int(rate / 20))
for i in range(0, len(lines), step):
    delay = t0 + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    out.write(b"".join(lines[i:i + step]))
out.close()
PY

mkfifo in.fifo
timeout 150 "$TC" replay --store "$TC_PG_URI" --lock "$TC_REDIS_URI" --instance-id logvol \
  --threads 2 --retry-budget-ms 60000 --log-level info --outcomes run.outcomes in.fifo \
  2>run.err &
REPLAY_PID=$!
python3 feed.py trace.jsonl "$RATE" in.fifo &
FEED_PID=$!

alive() { kill -0 "$REPLAY_PID" 2>/dev/null || { cat run.err >&2; fail "replay ended early"; }; }

sleep 4
alive
conns=$(ss -Htanp state established "( dport = :$TC_REDIS_PORT )" | grep -c '"tradecapture"' || true)
((conns >= 1 && conns <= 2)) || { ss -tanp "( dport = :$TC_REDIS_PORT )" >&2; fail "$conns connections to Redis (expected one)"; }
echo "ok: $conns connection to Redis under load"
before=$(wc -l <run.err)

tc_stop_redis
echo "ok: Redis stopped under load ($(date +%T))"
sleep 5
held=$(ss -Htan "( sport = :$TC_REDIS_PORT )" | grep -v TIME-WAIT || true)
[[ -z $held ]] || { echo "$held" >&2; fail "a socket holds Redis' port $TC_REDIS_PORT while Redis is down"; }
sleep 5
alive
tc_start_redis || fail "Redis could not start again on its port $TC_REDIS_PORT (see above)"
echo "ok: Redis restarted on the same port ($(date +%T))"

sleep 6
alive
tc_stop_postgres
echo "ok: PostgreSQL stopped under load ($(date +%T))"
sleep 10
alive
tc_start_postgres || fail "PostgreSQL did not restart (see above)"
echo "ok: PostgreSQL restarted ($(date +%T))"

wait "$FEED_PID" || fail "the feeder failed (the replay closed its input?)"
FEED_PID=
rc=0
wait "$REPLAY_PID" || rc=$?
REPLAY_PID=
[[ $rc -ne 124 ]] || { tail -n 20 run.err >&2; fail "replay hung (killed after 150 s)"; }
[[ $rc -eq 0 ]] || { tail -n 30 run.err >&2; fail "replay exited $rc: it did not ride through two 10 s outages"; }
grep -q " 0 failed" run.err || { tail -n 3 run.err >&2; fail "some lines failed"; }
echo "ok: replay exited 0: $(tail -n 1 run.err)"

# The log from the first fault on, without the replay's final summary line.
tail -n +"$((before + 1))" run.err | grep -v "^tradecapture: replay: " >fault.log || true
echo "--- log lines from the first fault on:"
cut -c1-240 fault.log
echo "---"
lines=$(wc -l <fault.log)
((lines <= 60)) || fail "$lines log lines for two 10 s outages (bounded noise: at most 60)"
echo "ok: $lines log lines for two 10 s outages"
python3 - fault.log "$REDIS_AT" "$PG_AT" "${TC_LOG_VOLUME_STRICT:-0}" <<'PY' || exit 1
import re, sys
path, redis_at, pg_at, strict = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
entry = re.compile(r"^\[[0-9-]+ [0-9:.]+\] \[[^]]*\] \[(\w+)\] (.*)$")
# The pipeline's own fault lines (src/shard_core.cpp) name the kind of fault, not the endpoint.
generic = re.compile(r"lock service unavailable|store unavailable|lease lost|failed \(|refused")
bad = 0
named = False
for text in open(path, encoding="utf-8", errors="replace"):
    text = text.rstrip("\n")
    m = entry.match(text)
    if not m:
        print("FAIL: not a log line (a driver message outside the log?): %r" % text[:200],
              file=sys.stderr)
        bad += 1
        continue
    level, msg = m.groups()
    if redis_at in msg or pg_at in msg:
        named = True
        continue
    if level not in ("warning", "error", "critical"):
        continue
    if not strict and named and generic.search(msg):
        continue
    print("FAIL: a fault line names neither %s nor %s: %r" % (redis_at, pg_at, msg[:200]),
          file=sys.stderr)
    bad += 1
if bad:
    sys.exit(1)
print("ok: every fault line names its cause (Redis %s, PostgreSQL %s)" % (redis_at, pg_at))
PY
for at in "Redis $REDIS_AT unavailable" "Redis $REDIS_AT is back" "PostgreSQL $PG_AT unavailable" \
  "PostgreSQL $PG_AT is back"; do
  grep -qF "$at" fault.log || fail "no line '$at ...'"
done
echo "ok: both outages logged with their endpoint, and both recoveries"

dump_ok positions "$TC_PG_URI" positions.jsonl
check_same model.positions positions.jsonl "positions after both outages"
echo "PASS fault_log_volume"
