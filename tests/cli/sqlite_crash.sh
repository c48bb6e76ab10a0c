#!/usr/bin/env bash
# SIGKILL of `tradecapture replay` on SQLite once its WAL is being copied back beside the writers:
# nothing reported is lost and the database stays sound.
#
# The trace (NEW trades, then AMENDs of them, all valid; 300,000 lines over 500 partitions) grows
# the WAL well past the 4,096 pages at which the store's background thread starts copying it back
# into the database file. A replay is killed twice once that copying has begun (the database file
# grows only through it), at a different moment each time, then run to the end. After each kill:
# `PRAGMA integrity_check` is "ok", and the outcomes written so far are exactly the first lines of
# the model's. At the end the positions and events equal the model's for one replay of the trace:
# every event's validity depends only on the events of its partition before it, so re-sending the
# whole trace over any per-partition prefix gives the state of one run.
source "$(dirname "$0")/common.bash" "$1"

TRACE="$TMP/trace.jsonl"
DB="$TMP/crash.db"
STORE="sqlite:$DB"

python3 - "$TRACE" <<'PY'
import sys
parts, lines = 500, 300000
with open(sys.argv[1], "w") as f:
    for i in range(lines):
        # Past the first 1,500 lines every third line amends the trade an earlier line created
        # (in that trade's partition); the others create a new trade.
        if i % 3 == 2 and i >= 3 * parts:
            t = i - 3 * parts - 1  # a NEW line (t % 3 == 1), each amended once
            v = 2 + (i // (3 * parts)) % 50
            p = t % parts
            f.write('{"trade_id":"T%d","version":%d,"type":"AMEND","account":"A%d","book":"B",'
                    '"security":"S%d","side":"SELL","quantity":"%d","price":"10.%02d"}\n'
                    % (t, v, p, p, 1 + v, v))
        else:
            p = i % parts
            f.write('{"trade_id":"T%d","version":1,"type":"NEW","account":"A%d","book":"B",'
                    '"security":"S%d","side":"BUY","quantity":"100","price":"101.25"}\n'
                    % (i, p, p))
PY
model run --outcomes "$TMP/m.outcomes" --positions "$TMP/m.positions" --events "$TMP/m.events" \
  "$TRACE"
grep -q '"outcome": *"STALE"\|"outcome": *"REJECTED"' "$TMP/m.outcomes" &&
  fail "the trace must hold valid, in-order events only (see the header)"

# integrity_check PATH: SQLite's own check of every page and index, after a crash's recovery.
integrity_check() {
  python3 - "$1" <<'PY' || fail "integrity_check of $1 failed"
import sqlite3, sys
result = sqlite3.connect(sys.argv[1]).execute("PRAGMA integrity_check").fetchall()
if result != [("ok",)]:
    sys.exit("integrity_check: %r" % (result[:5],))
PY
}

size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }

for round in 1 2; do
  out="$TMP/outcomes.$round"
  "$TC" replay --store "$STORE" --outcomes "$out" "$TRACE" 2>"$TMP/replay.$round.err" &
  pid=$!
  # The database file grows only when WAL pages are copied back into it: wait for it to grow
  # (by 8 MiB in round 1, 1 MiB in round 2), then a different pause each round, then SIGKILL.
  start_size=$(size_of "$DB")
  grow=$(((round == 1 ? 8 : 1) * 1024 * 1024))
  for _ in $(seq 1 600); do
    (($(size_of "$DB") > start_size + grow)) && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null || fail "round $round: the replay ended before it could be killed"
  (($(size_of "$DB") > start_size + grow)) ||
    fail "round $round: no WAL page was copied back within 60 s"
  sleep "0.$((round * 2))"
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  integrity_check "$DB"
  n=$(wc -l <"$out")
  ((n > 0)) || fail "round $round: no outcome was written before the kill"
  head -n "$n" "$TMP/m.outcomes" >"$TMP/m.prefix"
  # A line cut short by the kill is not an outcome; every whole line must be the model's.
  [[ -z $(tail -c 1 "$out") ]] || fail "round $round: the outcome file ends mid-line"
  if ((round == 1)); then
    check_same "$TMP/m.prefix" "$out" "round 1: outcomes written before the kill"
  else
    # Re-sent lines that round 1 stored are DUPLICATEs now: only their lines and trades match.
    python3 - "$TMP/m.prefix" "$out" <<'PY' || fail "round 2: outcomes differ from the model's"
import json, sys
for a, b in zip(open(sys.argv[1]), open(sys.argv[2])):
    m, o = json.loads(a), json.loads(b)
    if (m["line"], m["trade_id"], m["version"]) != (o["line"], o["trade_id"], o["version"]):
        sys.exit("line %s: %r vs %r" % (m["line"], a, b))
    if o["outcome"] not in (m["outcome"], "DUPLICATE"):
        sys.exit("line %s: %s, the model says %s" % (m["line"], o["outcome"], m["outcome"]))
PY
    echo "ok: round 2: $n outcomes written before the kill, each the model's or DUPLICATE"
  fi
  echo "ok: round $round: killed after $n outcomes; integrity_check ok"
done

replay_ok --store "$STORE" --outcomes "$TMP/outcomes.final" "$TRACE"
integrity_check "$DB"
dump_ok positions "$STORE" "$TMP/positions"
dump_ok events "$STORE" "$TMP/events"
check_same "$TMP/m.positions" "$TMP/positions" "positions after two kills and a full replay"
check_same "$TMP/m.events" "$TMP/events" "events after two kills and a full replay"
