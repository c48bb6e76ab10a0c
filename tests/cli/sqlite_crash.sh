#!/usr/bin/env bash
# SIGKILL of `tradecapture replay` on SQLite after checkpoints have copied WAL pages back into the
# database file: nothing reported is lost and the database stays sound.
#
# The trace (NEW trades, then AMENDs of them, all valid; 360,000 lines over 500 partitions) fills
# the WAL several times over its checkpoint size (8,192 pages of 8 KiB). A replay is killed once a
# checkpoint has copied pages back (the database file grows only through checkpoints); the
# re-sent replay is killed again 30,000 lines further on; a third runs to the end. After each
# kill: `PRAGMA integrity_check` is "ok", the store's invariants hold (check_store.py), every
# ACCEPTED outcome written is stored at its seq, and the outcomes written are the first lines of
# the model's (in round 2, a re-sent line that round 1 stored is a DUPLICATE). At the end the
# positions and events equal the model's for one replay of the trace: every event's validity
# depends only on the events of its partition before it, so re-sending the whole trace over any
# per-partition prefix gives the state of one run.
source "$(dirname "$0")/common.bash" "$1"

TRACE="$TMP/trace.jsonl"
DB="$TMP/crash.db"
STORE="sqlite:$DB"

python3 - "$TRACE" <<'PY'
import sys
parts, lines = 500, 360000
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
lines_of() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }

n=0
for round in 1 2; do
  out="$TMP/outcomes.$round"
  "$TC" replay --store "$STORE" --outcomes "$out" "$TRACE" 2>"$TMP/replay.$round.err" &
  pid=$!
  # Round 1: the database file grows only when a checkpoint copies WAL pages back into it; wait
  # for 8 MiB of growth, then 0.2 s. Round 2: wait until its outcomes pass round 1's by 30,000.
  start_size=$(size_of "$DB")
  for _ in $(seq 1 600); do
    if ((round == 1)); then
      (($(size_of "$DB") > start_size + 8 * 1024 * 1024)) && break
    else
      (($(lines_of "$out") > n + 30000)) && break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null || fail "round $round: the replay ended before it could be killed"
  if ((round == 1)); then
    (($(size_of "$DB") > start_size + 8 * 1024 * 1024)) ||
      fail "round 1: no checkpoint grew the database within 60 s"
    sleep 0.2
  fi
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  integrity_check "$DB"
  # A line cut short by the kill is not an outcome (a write to a file stops at a page when the
  # process is killed); every whole line must be the model's.
  if [[ -n $(tail -c 1 "$out") ]]; then
    truncate -s $(($(wc -c <"$out") - $(tail -n 1 "$out" | wc -c))) "$out"
    echo "round $round: the outcome line cut short by the kill is dropped"
  fi
  n=$(wc -l <"$out")
  ((n > 0)) || fail "round $round: no outcome was written before the kill"
  head -n "$n" "$TMP/m.outcomes" >"$TMP/m.prefix"
  # Every ACCEPTED outcome written is durable: its event is in the database, at its seq.
  dump_ok events "$STORE" "$TMP/events.$round"
  # Each commit was whole: seqs without gaps, each key once, positions = the fold of the events.
  dump_ok positions "$STORE" "$TMP/positions.$round"
  python3 "$HERE/check_store.py" "$TMP/events.$round" "$TMP/positions.$round" ||
    fail "round $round: store invariants after the kill"
  python3 - "$out" "$TMP/events.$round" <<'PY' || fail "round $round: a reported outcome was lost"
import json, sys
stored = {(e["trade_id"], e["version"]): e["seq"] for e in map(json.loads, open(sys.argv[2]))}
accepted = 0
for o in map(json.loads, open(sys.argv[1])):
    if o["outcome"] == "ACCEPTED":
        accepted += 1
        if stored.get((o["trade_id"], o["version"])) != o["seq"]:
            sys.exit("line %d: ACCEPTED at seq %s, stored: %s"
                     % (o["line"], o["seq"], stored.get((o["trade_id"], o["version"]))))
print("ok: round %s: all %d ACCEPTED outcomes are stored at their seq"
      % (sys.argv[1][-1], accepted))
PY
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
