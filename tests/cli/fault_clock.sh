#!/usr/bin/env bash
# Fault contract (spec section 6, point 3): no wall clock in correctness.
#
# One trace in three parts, replayed in turn into the same store with the host's wall clock at
# +2 h (faketime), then the true clock, then -2 h, as if the machine's clock had been stepped
# back twice between runs. On the embedded default (sqlite:, local:) and on PostgreSQL + Redis
# (Redis runs with the true clock): every run exits 0, every outcome equals the independent
# model's, positions and events equal the model's, and no run logs a storm of "fenced off"
# retries (fencing tokens must not come from the clock). Takes about 30-60 s.
source "$(dirname "$0")/common.bash" "$1"
source "$ROOT/scripts/lib/servers.bash"
cd "$TMP"
trap 'tc_stop_servers; rm -rf "$TMP"' EXIT

command -v faketime >/dev/null 2>&1 ||
  fail "faketime is not installed (scripts/install-deps.sh installs it: apt-get install faketime)"
# faketime must really move the clock of a child process.
now=$(date +%s)
shifted=$(faketime -f "+2h" date +%s)
((shifted - now >= 7000)) || fail "faketime -f +2h does not shift the clock (got $now -> $shifted)"

gen --seed 73 --lines 3000 --partitions 12 --crlf 0 --out trace.jsonl
head -n 1000 trace.jsonl >p1.jsonl
sed -n '1001,2000p' trace.jsonl >p2.jsonl
tail -n +2001 trace.jsonl >p3.jsonl
model run --outcomes m1.outcomes --outcomes m2.outcomes --outcomes m3.outcomes \
  --positions model.positions --events model.events p1.jsonl p2.jsonl p3.jsonl

# run_at OFFSET LABEL STORE LOCK PART N: one replay under faketime OFFSET ('' = true clock).
run_at() {
  local offset=$1 label=$2 store=$3 lock=$4 part=$5 n=$6 rc=0
  local cmd=("$TC" replay --store "$store" --lock "$lock" --instance-id "clock$n" --lease-ms 5000
    --log-level info --outcomes "$label.$n.outcomes" "$part")
  if [[ -n $offset ]]; then
    timeout "$TC_TIMEOUT" faketime -f "$offset" "${cmd[@]}" 2>"$label.$n.err" || rc=$?
  else
    timeout "$TC_TIMEOUT" "${cmd[@]}" 2>"$label.$n.err" || rc=$?
  fi
  if [[ $rc -ne 0 ]]; then
    tail -n 30 "$label.$n.err" >&2
    fail "$label: replay of part $n at clock '${offset:-true}' exited $rc"
  fi
  local fenced
  fenced=$(grep -ci "fenced" "$label.$n.err" || true)
  ((fenced <= 5)) || { grep -i fenced "$label.$n.err" | head -n 10 >&2
    fail "$label: part $n at clock '${offset:-true}' logged $fenced 'fenced' lines (a storm: the clock step broke the fencing tokens)"; }
  check_same "m$n.outcomes" "$label.$n.outcomes" "$label: outcomes of part $n at clock '${offset:-true}'"
}

run_config() {  # LABEL STORE LOCK
  local label=$1 store=$2 lock=$3
  run_at "+2h" "$label" "$store" "$lock" p1.jsonl 1
  run_at "" "$label" "$store" "$lock" p2.jsonl 2
  run_at "-2h" "$label" "$store" "$lock" p3.jsonl 3
  dump_ok positions "$store" "$label.positions"
  dump_ok events "$store" "$label.events"
  check_same model.positions "$label.positions" "$label: positions after the clock steps"
  check_same model.events "$label.events" "$label: events after the clock steps"
}

run_config sqlite "sqlite:$TMP/clock.db" local:

tc_start_postgres || fail "PostgreSQL did not start (see above)"
tc_start_redis || fail "Redis did not start (see above)"
run_config pg "$TC_PG_URI" "$TC_REDIS_URI"

echo "PASS fault_clock"
