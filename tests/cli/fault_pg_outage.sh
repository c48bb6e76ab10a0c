#!/usr/bin/env bash
# Fault contract (spec section 6, points 1, 2 and 6): PostgreSQL goes down under a backlog for
# longer than the retry budget.
#
# A replay on PostgreSQL + Redis reads its input from a FIFO: a first part is decided normally,
# then PostgreSQL is stopped and the rest (many events per partition, --max-in-flight large) is
# queued behind it. The replay must exit non-zero with a message within the budget (15 s, the
# pipeline's default) plus a margin; every outcome it reported must be the one of the
# independent model's sequential run (nothing decided from a cached copy while the store was
# down, no partition moving past a failed event). After PostgreSQL is back, the whole input is
# sent again: the final `positions` and `events` must equal the model's sequential run exactly.
# Takes about 40-60 s.
source "$(dirname "$0")/common.bash" "$1"
source "$ROOT/scripts/lib/servers.bash"
cd "$TMP"

REPLAY_PID=
cleanup() {
  [[ -n $REPLAY_PID ]] && kill -KILL "$REPLAY_PID" 2>/dev/null
  exec 3>&- 2>/dev/null || true
  tc_stop_servers
  rm -rf "$TMP"
}
trap cleanup EXIT

tc_start_postgres || fail "PostgreSQL did not start (see above)"
tc_start_redis || fail "Redis did not start (see above)"
STORE=$TC_PG_URI
LOCK=$TC_REDIS_URI

# check_reported MODEL_OUTCOMES REPORTED LABEL: every outcome line REPORTED holds (by 'line')
# must equal the model's line (both normalized); REPORTED may hold fewer lines.
check_reported() {
  model normalize "$1" >"$TMP/model.norm"
  model normalize "$2" >"$TMP/reported.norm"
  python3 - "$TMP/model.norm" "$TMP/reported.norm" "$3" <<'PY' || exit 1
import json, sys
expected = {}
for text in open(sys.argv[1], encoding="utf-8"):
    expected[json.loads(text)["line"]] = text.rstrip("\n")
bad = 0
n = 0
for text in open(sys.argv[2], encoding="utf-8"):
    n += 1
    if text.startswith("UNPARSEABLE"):
        print("FAIL: %s: unparseable outcome line %r" % (sys.argv[3], text), file=sys.stderr)
        sys.exit(1)
    o = json.loads(text)
    want = expected.get(o["line"])
    if want != text.rstrip("\n"):
        bad += 1
        if bad <= 10:
            print("  line %s: model %s\n           host  %s" % (o["line"], want, text.rstrip()),
                  file=sys.stderr)
if bad:
    print("FAIL: %s: %d of %d reported outcomes differ from the model's sequential run"
          % (sys.argv[3], bad, n), file=sys.stderr)
    sys.exit(1)
print("ok: %s: all %d reported outcomes equal the model's" % (sys.argv[3], n))
PY
}

# Few partitions, many events each: a deep per-partition backlog when the store goes away.
gen --seed 61 --lines 24000 --partitions 6 --crlf 0 --bad 0.05 --no-whale --out trace.jsonl
total=$(wc -l <trace.jsonl)
head -n 4000 trace.jsonl >part1.jsonl
tail -n +4001 trace.jsonl >part2.jsonl
model run --outcomes model.outcomes --positions model.positions --events model.events trace.jsonl

# Run 1: part 1, then PostgreSQL stops, then the backlog.
mkfifo in.fifo
timeout 150 "$TC" replay --store "$STORE" --lock "$LOCK" --instance-id pgfault --threads 2 \
  --max-in-flight 200000 --batch 256 --outcomes run1.outcomes in.fifo 2>run1.err &
REPLAY_PID=$!
exec 3>in.fifo
cat part1.jsonl >&3
# Let part 1 get decided (its outcomes are durable before PostgreSQL goes).
sleep 3
kill -0 "$REPLAY_PID" 2>/dev/null || { cat run1.err >&2; fail "replay ended before PostgreSQL was stopped"; }
t0=$(date +%s)
tc_stop_postgres
echo "ok: PostgreSQL stopped under the replay"
cat part2.jsonl >&3 || true  # the replay may already have given up (closed the FIFO)
exec 3>&-
rc=0
wait "$REPLAY_PID" || rc=$?
REPLAY_PID=
elapsed=$(($(date +%s) - t0))
[[ $rc -ne 124 ]] || { tail -n 20 run1.err >&2; fail "replay hung with PostgreSQL down (killed after 150 s)"; }
[[ $rc -ne 0 ]] || fail "replay exited 0 although PostgreSQL was down for longer than the retry budget"
echo "ok: replay exited $rc ${elapsed}s after PostgreSQL stopped"
grep -qi "tradecapture:" run1.err || { tail -n 20 run1.err >&2; fail "no clear 'tradecapture: ...' message on stderr"; }
lines=$(wc -l <run1.err)
((lines <= 200)) || { head -n 30 run1.err >&2; fail "$lines lines on stderr for one outage (bounded noise: at most 200)"; }
echo "ok: $lines lines on stderr, last: $(tail -n 1 run1.err)"
[[ -f run1.outcomes ]] || touch run1.outcomes
echo "run 1 reported $(wc -l <run1.outcomes) of $total outcomes"
check_reported model.outcomes run1.outcomes "outcomes of the failed run"

# PostgreSQL back (same data directory); the whole input again.
tc_start_postgres || fail "PostgreSQL did not restart (see above)"
STORE=$TC_PG_URI
# The spec's recovery: re-send, in order, every line that got no outcome in run 1 (a partition's
# decided lines are a prefix of it, so these are each partition's lines from its first failure on).
python3 - trace.jsonl run1.outcomes resend.jsonl resend.map <<'PY' || exit 1
import json, sys
decided = {json.loads(t)["line"] for t in open(sys.argv[2], encoding="utf-8")}
with open(sys.argv[1], "rb") as src, open(sys.argv[3], "wb") as out, \
        open(sys.argv[4], "w") as mapping:
    for n, raw in enumerate(src, 1):
        if n in decided or not raw.strip(b" \t\r\n"):
            continue
        out.write(raw if raw.endswith(b"\n") else raw + b"\n")
        mapping.write("%d\n" % n)
PY
echo "re-sending $(wc -l <resend.jsonl) lines without an outcome"
replay_ok --store "$STORE" --lock "$LOCK" --instance-id pgfault2 --max-in-flight 200000 \
  --outcomes run2.outcomes resend.jsonl
dump_ok positions "$STORE" positions.jsonl
dump_ok events "$STORE" events.jsonl
check_same model.positions positions.jsonl "positions after the outage and the re-send"
check_same model.events events.jsonl "events after the outage and the re-send"
# Each re-sent line meets the model's sequential state: its outcome is the model's.
python3 - model.outcomes resend.map run2.outcomes <<'PY' || exit 1
import json, sys
def reason_class(r):  # what the spec fixes of a reason (as tests/cli/model.py normalize)
    for prefix in ("invalid:", "conflict:", "out of range"):
        if r.startswith(prefix):
            return prefix
    return r
model = {o["line"]: o for o in map(json.loads, open(sys.argv[1], encoding="utf-8"))}
orig = [int(t) for t in open(sys.argv[2])]
bad = 0
for o in map(json.loads, open(sys.argv[3], encoding="utf-8")):
    line = orig[o["line"] - 1]
    m = model[line]
    if (o["outcome"] != m["outcome"] or o["seq"] != m["seq"] or
            reason_class(o["reason"]) != reason_class(m["reason"])):
        bad += 1
        if bad <= 10:
            print("  line %d: model %s %s, re-send %s %s" % (line, m["outcome"], m["seq"],
                  o["outcome"], o["seq"]), file=sys.stderr)
if bad:
    print("FAIL: %d outcomes of the re-send disagree with the model" % bad, file=sys.stderr)
    sys.exit(1)
print("ok: every re-sent line got the model's outcome")
PY
echo "PASS fault_pg_outage"
