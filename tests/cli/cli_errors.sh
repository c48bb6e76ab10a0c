#!/usr/bin/env bash
# The CLI surface: help texts, URI and input errors, empty inputs, and replaying a trace twice
# into the same SQLite store.
source "$(dirname "$0")/common.bash" "$1"
cd "$TMP"

# expect_fail CODE MESSAGE_REGEX ARGS...: tradecapture ARGS must exit CODE ('nonzero' for any)
# and print MESSAGE_REGEX on stderr.
expect_fail() {
  local code=$1 pattern=$2 rc=0
  shift 2
  "$TC" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  if [[ $code == nonzero ]]; then
    [[ $rc -ne 0 ]] || fail "tradecapture $* exited 0, expected a failure"
  else
    [[ $rc -eq $code ]] || { cat "$TMP/err" >&2; fail "tradecapture $* exited $rc, expected $code"; }
  fi
  grep -qiE -- "$pattern" "$TMP/err" || {
    cat "$TMP/err" >&2
    fail "tradecapture $*: stderr does not match /$pattern/"
  }
  echo "ok: tradecapture $* -> $rc"
}

# expect_help ARGS... -- WORDS...: ARGS --help exits 0 and mentions every word.
expect_help() {
  local args=() words=()
  while [[ $1 != -- ]]; do args+=("$1"); shift; done
  shift
  words=("$@")
  "$TC" "${args[@]}" --help >"$TMP/help" 2>&1 || fail "tradecapture ${args[*]} --help exited non-zero"
  for w in "${words[@]}"; do
    grep -qF -- "$w" "$TMP/help" || { cat "$TMP/help" >&2; fail "help of '${args[*]}' lacks $w"; }
  done
  echo "ok: tradecapture ${args[*]} --help"
}

expect_help -- replay positions events
expect_help replay -- INPUT --store --lock --outcomes --threads --max-in-flight --batch \
  --log-level --instance-id --lease-ms sqlite:tradecapture.db local:
expect_help positions -- --store
expect_help events -- --store

# Usage errors: exit 64 (EX_USAGE; the exit codes are in `tradecapture --help`).
expect_fail 64 "subcommand"
expect_fail 64 "INPUT|required" replay
expect_fail 64 "threads|range" replay --threads 0 x.jsonl
expect_fail 64 "log-level|not in" replay --log-level loud x.jsonl
expect_fail 64 "frobnicate|not expected|extra|subcommand" frobnicate

# URIs: clear messages; a URI that cannot be understood is a usage error (64), a store or lock
# that cannot be reached an infrastructure failure (69, EX_UNAVAILABLE).
printf '{"trade_id":"T1","version":1,"type":"NEW","account":"A","book":"B","security":"S","side":"BUY","quantity":"1","price":"1"}\n' >one.jsonl
expect_fail 64 "unknown store URI" replay --store foo:bar one.jsonl
expect_fail 64 "unknown store URI" replay --store tradecapture.db one.jsonl
expect_fail 69 "cannot open the postgresql store" \
  replay --store postgresql://u:pgsecret@127.0.0.1:1/db one.jsonl
grep -q pgsecret "$TMP/err" && fail "the postgresql password was echoed in an error message"
expect_fail 64 "unknown lock URI" replay --lock zookeeper://x one.jsonl
expect_fail 69 "cannot open the redis lock" \
  replay --lock redis://:secret@127.0.0.1:1/0 one.jsonl
grep -q secret "$TMP/err" && fail "the redis password was echoed in an error message"
expect_fail 64 "unknown store URI" positions --store foo:bar
expect_fail 69 "postgresql" events --store postgresql://u@127.0.0.1:1/db
expect_fail 64 "sqlite" replay --store sqlite: one.jsonl

# Input and output errors: 66 (EX_NOINPUT) an input that cannot be read, 73 (EX_CANTCREAT) an
# output (or a new store) that cannot be created.
expect_fail 66 "cannot open input" replay --store "sqlite:$TMP/e.db" no-such-file.jsonl
mkdir adir
expect_fail 66 "input|directory" replay --store "sqlite:$TMP/e.db" adir
expect_fail 73 "cannot open" replay --store "sqlite:$TMP/e.db" --outcomes /nonexistent/dir/o.jsonl one.jsonl
expect_fail 73 "store" replay --store "sqlite:/nonexistent/dir/x.db" one.jsonl
# Read-only commands never create a store: a missing sqlite:PATH is 66, named, and not created.
expect_fail 66 "no-such\\.db" positions --store "sqlite:$TMP/no-such.db"
expect_fail 66 "no-such\\.db" events --store "sqlite:$TMP/no-such.db"
[[ ! -e $TMP/no-such.db ]] || fail "a read-only command created $TMP/no-such.db"

# Empty inputs: exit 0, no outcome lines (also with only blank lines or only a BOM).
: >empty.jsonl
printf ' \t\r\n\n\r\n\t' >blank.jsonl
printf '\xef\xbb\xbf' >bom-only.jsonl
printf '\xef\xbb\xbf\r\n  \n' >bom-blank.jsonl
for f in empty blank bom-only bom-blank; do
  replay_ok --store "sqlite:$TMP/empty.db" --outcomes "$TMP/$f.outcomes" "$f.jsonl"
  [[ -f "$TMP/$f.outcomes" && ! -s "$TMP/$f.outcomes" ]] || fail "$f input: outcomes not empty"
done
replay_ok --store memory: --outcomes "$TMP/stdin-empty.outcomes" - </dev/null
[[ ! -s "$TMP/stdin-empty.outcomes" ]] || fail "empty stdin gave outcome lines"
dump_ok positions "sqlite:$TMP/empty.db" "$TMP/empty.positions"
dump_ok events "sqlite:$TMP/empty.db" "$TMP/empty.events"
[[ ! -s "$TMP/empty.positions" && ! -s "$TMP/empty.events" ]] || fail "empty store prints lines"
echo "ok: empty inputs"

# A replay without --outcomes still exits 0 and writes the store; the default store URI is
# sqlite:tradecapture.db in the working directory.
replay_ok one.jsonl
[[ -f tradecapture.db ]] || fail "the default store sqlite:tradecapture.db was not created"
"$TC" positions >"$TMP/default.positions" 2>/dev/null || fail "positions on the default store failed"
grep -q '"seq": *1' "$TMP/default.positions" || fail "default store has no position"
echo "ok: default store"

# The same trace twice into one store: the second replay answers as the model fed both.
gen --seed 77 --lines 1500 --out twice.jsonl
model run --outcomes "$TMP/m1.outcomes" --outcomes "$TMP/m2.outcomes" \
  --positions "$TMP/m.positions" --events "$TMP/m.events" twice.jsonl twice.jsonl
replay_ok --store "sqlite:$TMP/twice.db" --threads 2 --outcomes "$TMP/r1.outcomes" twice.jsonl
replay_ok --store "sqlite:$TMP/twice.db" --threads 3 --outcomes "$TMP/r2.outcomes" twice.jsonl
check_same "$TMP/m1.outcomes" "$TMP/r1.outcomes" "first replay"
check_same "$TMP/m2.outcomes" "$TMP/r2.outcomes" "second replay of the same trace"
grep -q '"DUPLICATE"' "$TMP/r2.outcomes" || fail "the second replay holds no DUPLICATE"
dump_ok positions "sqlite:$TMP/twice.db" "$TMP/twice.positions"
dump_ok events "sqlite:$TMP/twice.db" "$TMP/twice.events"
check_same "$TMP/m.positions" "$TMP/twice.positions" "positions after two replays"
check_same "$TMP/m.events" "$TMP/twice.events" "events after two replays"

# The same trace split in two replays into a fresh store: state loaded back from the store must
# answer exactly as one sequential run.
head -n 700 twice.jsonl >half1.jsonl
tail -n +701 twice.jsonl >half2.jsonl
model run --outcomes "$TMP/h1.model" --outcomes "$TMP/h2.model" --positions "$TMP/h.positions" \
  half1.jsonl half2.jsonl
replay_ok --store "sqlite:$TMP/halves.db" --threads 2 --outcomes "$TMP/h1.outcomes" half1.jsonl
replay_ok --store "sqlite:$TMP/halves.db" --threads 2 --outcomes "$TMP/h2.outcomes" half2.jsonl
check_same "$TMP/h1.model" "$TMP/h1.outcomes" "first half"
check_same "$TMP/h2.model" "$TMP/h2.outcomes" "second half (state from the store)"
dump_ok positions "sqlite:$TMP/halves.db" "$TMP/halves.positions"
check_same "$TMP/h.positions" "$TMP/halves.positions" "positions after two halves"

# SIGTERM while the input is still open: the replay stops reading, finishes what is in flight,
# writes the outcome of every line it read, says where to resume, and exits 128+15. (timeout
# --foreground: plain timeout would signal the whole process group, i.e. twice.)
mkfifo slow.fifo
exec 4<>slow.fifo
timeout --foreground 60 "$TC" replay --store memory: --log-level debug \
  --outcomes "$TMP/int.outcomes" slow.fifo 4>&- 2>"$TMP/int.err" &
rp=$!
for ((i = 0; i < 300; i++)); do grep -q "reading slow.fifo" "$TMP/int.err" && break; sleep 0.1; done
head -n 300 twice.jsonl >&4
sleep 1
kill -TERM "$rp"
rc=0
wait "$rp" || rc=$?
exec 4>&-
[[ $rc -eq 143 ]] || { cat "$TMP/int.err" >&2; fail "an interrupted replay exited $rc, expected 143"; }
n=$(sed -n 's/.*interrupted after \([0-9]*\) lines.*/\1/p' "$TMP/int.err")
[[ -n $n ]] || { cat "$TMP/int.err" >&2; fail "no 'interrupted after N lines' message"; }
head -n "$n" twice.jsonl >int-prefix.jsonl
model run --outcomes "$TMP/int.model" int-prefix.jsonl
check_same "$TMP/int.model" "$TMP/int.outcomes" "outcomes of an interrupted replay ($n lines read)"

# A summary always goes to stderr; stdout stays clean for --outcomes -.
"$TC" replay --store memory: one.jsonl >"$TMP/so" 2>"$TMP/se" || fail "replay one.jsonl failed"
[[ ! -s "$TMP/so" ]] || fail "replay wrote to stdout without --outcomes -"
grep -q "accepted 1" "$TMP/se" || { cat "$TMP/se" >&2; fail "no summary with the accepted count"; }
echo "PASS cli_errors"
