#!/usr/bin/env bash
# An infrastructure failure: another connection holds the SQLite write lock past the retry
# budget. The replay must exit 69 (EX_UNAVAILABLE) with a clear message, report only true
# outcomes (here: only the invalid lines, since no commit can succeed), end although its input
# stays open, and a replay of the same input after the failure must answer exactly as if the
# failed attempt never happened.
# Takes about 20-40 s (SQLite busy timeouts times the pipeline's retry budget).
source "$(dirname "$0")/common.bash" "$1"
cd "$TMP"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

wait_for() {  # wait_for FILE PATTERN SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

DB="sqlite:$TMP/busy.db"
printf '{"trade_id":"T0","version":1,"type":"NEW","account":"A","book":"B","security":"S","side":"BUY","quantity":"1","price":"1"}\n' >one.jsonl
replay_ok --store "$DB" one.jsonl  # creates the schema

python3 - >trace.jsonl <<'PY'
import json
for i in range(1, 41):
    if i % 8 == 0:
        print('{"trade_id": "BAD%d", "version": 1, "type": "NEW", "quantity": "-1"}' % i)
    else:
        print(json.dumps({"trade_id": "T%d" % i, "version": 1, "type": "NEW", "account": "A",
                          "book": "B", "security": "S", "side": "BUY", "quantity": str(i),
                          "price": "1.5"}))
PY

mkfifo in.fifo
exec 3<>in.fifo  # a writer that stays open: the replay never sees the end of its input
timeout 170 "$TC" replay --store "$DB" --threads 1 --log-level info --outcomes busy.outcomes \
  in.fifo 3>&- 2>busy.err &
rp=$!
pids+=("$rp")
wait_for busy.err "replaying" 30 || { cat busy.err >&2; fail "the replay did not start"; }

python3 - "$TMP/busy.db" 3>&- <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
open(sys.argv[1] + ".locked", "w").close()
time.sleep(300)
PY
holder=$!
pids+=("$holder")
for ((i = 0; i < 100; i++)); do [[ -f "$TMP/busy.db.locked" ]] && break; sleep 0.1; done
[[ -f "$TMP/busy.db.locked" ]] || fail "could not lock the database"

cat trace.jsonl >&3
rc=0
wait "$rp" || rc=$?
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
exec 3>&-

[[ $rc -ne 124 ]] || { cat busy.err >&2; fail "the replay did not end after the store failure"; }
[[ $rc -eq 69 ]] || { cat busy.err >&2; fail "the replay exited $rc on a store failure, expected 69"; }
grep -q "tradecapture: replay failed: " busy.err || { cat busy.err >&2; fail "no 'replay failed' message"; }
echo "ok: store failure -> exit 69: $(grep 'replay failed' busy.err)"

model run --outcomes "$TMP/m1" --outcomes "$TMP/m2" --positions "$TMP/m.positions" one.jsonl trace.jsonl
grep '"invalid:' "$TMP/m2" >"$TMP/m2.invalid"
check_same "$TMP/m2.invalid" busy.outcomes "outcomes reported during the failure (only the invalid lines)"

# After the failure: the same input again gives exactly the model's answers.
replay_ok --store "$DB" --outcomes "$TMP/again.outcomes" trace.jsonl
check_same "$TMP/m2" "$TMP/again.outcomes" "replay after the failure"
dump_ok positions "$DB" "$TMP/positions"
check_same "$TMP/m.positions" "$TMP/positions" "positions after the failure"

# Opening a store that another connection holds past the busy timeout (5 s): the open is
# retried within its budget (15 s) and goes on once the lock is gone, instead of exiting 69.
rm -f open.locked
python3 - "$TMP/busy.db" 3>&- <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
open(sys.argv[1] + ".open.locked", "w").close()
time.sleep(8)
c.execute("COMMIT")
PY
holder=$!
pids+=("$holder")
for ((i = 0; i < 100; i++)); do [[ -f "$TMP/busy.db.open.locked" ]] && break; sleep 0.1; done
[[ -f "$TMP/busy.db.open.locked" ]] || fail "could not lock the database before opening it"
rc=0
timeout 60 "$TC" replay --store "$DB" --outcomes "$TMP/open.outcomes" one.jsonl 2>open.err || rc=$?
wait "$holder" || true
[[ $rc -eq 0 ]] || { cat open.err >&2; fail "opening a busy store exited $rc, expected a retry and 0"; }
grep -q "opening the store: store busy" open.err || { cat open.err >&2; fail "no retry warning"; }
grep -q '"outcome": "DUPLICATE"' "$TMP/open.outcomes" || fail "no outcome after the busy open"
echo "ok: a store busy past the busy timeout at open is retried, then opened"
echo "PASS infra_failure"
