#!/usr/bin/env bash
# Seeded adversarial traces (gen_trace.py) through `tradecapture replay`, compared line by line
# with the independent model: several seeds, 1 and 4 threads, SQLite and memory stores, standard
# input, a BOM with CRLF endings and no final newline, and a tiny in-flight window.
source "$(dirname "$0")/common.bash" "$1"

# check_trace NAME TRACE THREADS STORE_KIND [replay args...]: replays TRACE and compares outcomes
# (and, for sqlite, positions and events) with the model's.
check_trace() {
  local name=$1 trace=$2 threads=$3 kind=$4
  shift 4
  local store
  if [[ $kind == sqlite ]]; then store="sqlite:$TMP/$name.db"; else store="memory:"; fi
  replay_ok --store "$store" --threads "$threads" --outcomes "$TMP/$name.outcomes" "$@" "$trace"
  check_same "$TMP/model.outcomes" "$TMP/$name.outcomes" "$name outcomes"
  if [[ $kind == sqlite ]]; then
    dump_ok positions "$store" "$TMP/$name.positions"
    dump_ok events "$store" "$TMP/$name.events"
    check_same "$TMP/model.positions" "$TMP/$name.positions" "$name positions"
    check_same "$TMP/model.events" "$TMP/$name.events" "$name events"
  fi
}

expect_model() {
  model run --outcomes "$TMP/model.outcomes" --positions "$TMP/model.positions" \
    --events "$TMP/model.events" "$1"
}

for seed in 101 202 303; do
  trace="$TMP/trace-$seed.jsonl"
  gen --seed "$seed" --lines 3000 --out "$trace"
  expect_model "$trace"
  # The trace must exercise what it is meant to (guards the generator against rot).
  for what in '"ACCEPTED"' '"DUPLICATE"' '"STALE"' '"conflict:' '"unknown trade"' \
    '"trade cancelled"' '"invalid:' '"out of range'; do
    grep -qF -- "$what" "$TMP/model.outcomes" || fail "seed $seed: the model reports no $what"
  done
  check_trace "s$seed-t1-sqlite" "$trace" 1 sqlite
  check_trace "s$seed-t4-sqlite" "$trace" 4 sqlite
  check_trace "s$seed-t4-memory" "$trace" 4 memory
done

# Standard input.
trace="$TMP/trace-stdin.jsonl"
gen --seed 404 --lines 2500 --out "$trace"
expect_model "$trace"
replay_ok --store "sqlite:$TMP/stdin.db" --threads 3 --outcomes "$TMP/stdin.outcomes" - <"$trace"
check_same "$TMP/model.outcomes" "$TMP/stdin.outcomes" "stdin outcomes"
dump_ok positions "sqlite:$TMP/stdin.db" "$TMP/stdin.positions"
check_same "$TMP/model.positions" "$TMP/stdin.positions" "stdin positions"
# ... through a pipe that delivers the bytes in small pieces.
python3 -c '
import sys
data = open(sys.argv[1], "rb").read()
for i in range(0, len(data), 4093):
    sys.stdout.buffer.write(data[i:i + 4093]); sys.stdout.buffer.flush()
' "$trace" | timeout "$TC_TIMEOUT" "$TC" replay --store memory: --threads 2 --outcomes "$TMP/pipe.outcomes" - \
  2>"$TMP/pipe.err" || { cat "$TMP/pipe.err" >&2; fail "replay from a pipe failed"; }
check_same "$TMP/model.outcomes" "$TMP/pipe.outcomes" "piped stdin outcomes"

# A BOM at the start, CRLF on every line, no final newline.
trace="$TMP/trace-bom.jsonl"
gen --seed 505 --lines 2000 --bom --crlf 1.0 --no-final-newline --out "$trace"
[[ $(head -c 3 "$trace" | od -An -tx1 | tr -d ' ') == efbbbf ]] || fail "the BOM trace has no BOM"
expect_model "$trace"
check_trace "bom-crlf" "$trace" 2 sqlite

# A tiny in-flight window and batch: back-pressure and the ordered output under pressure.
trace="$TMP/trace-small.jsonl"
gen --seed 606 --lines 1500 --no-whale --out "$trace"
expect_model "$trace"
check_trace "window" "$trace" 4 sqlite --max-in-flight 3 --batch 2

echo "PASS adversarial"
