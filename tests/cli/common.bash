# Shared set-up of the shell tests in tests/cli (sourced, not run: CTest runs only *.sh).
# Usage at the top of a test:  source "$(dirname "$0")/common.bash" "$1"
set -euo pipefail

[[ $# -ge 1 && -d "$1" ]] || { echo "usage: bash $0 <bin-dir>" >&2; exit 2; }
BIN_DIR=$(cd "$1" && pwd)
TC="$BIN_DIR/tradecapture"
[[ -x "$TC" ]] || { echo "FAIL: $TC is not an executable" >&2; exit 1; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tradecapture-cli.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# kill_all PID...: SIGKILL to each (gone ones are fine); for the clean-up at exit.
kill_all() {
  local pid
  for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
}

model() { python3 "$HERE/model.py" "$@"; }
gen() { python3 "$HERE/gen_trace.py" "$@"; }

# check_same EXPECTED ACTUAL LABEL: both files go through `model.py normalize` (reasons reduced
# to what the spec fixes), then diff; any difference fails the test.
check_same() {
  local expected=$1 actual=$2 label=$3
  model normalize "$expected" >"$TMP/expected.norm"
  model normalize "$actual" >"$TMP/actual.norm"
  if ! diff -u "$TMP/expected.norm" "$TMP/actual.norm" >"$TMP/diff.txt"; then
    echo "FAIL: $label differs from the expectation (--- expected, +++ actual):" >&2
    head -n 60 "$TMP/diff.txt" >&2
    exit 1
  fi
  echo "ok: $label ($(wc -l <"$actual") lines)"
}

# summarize_outcomes FILE [ids]: one line per outcome for comparison with a hand-checked table:
# line, outcome, reason reduced to its spec-fixed prefix ('-' when empty), seq, and with `ids`
# also trade_id and version as JSON.
summarize_outcomes() {
  python3 - "$@" <<'PY'
import json, sys
ids = len(sys.argv) > 2 and sys.argv[2] == "ids"
for text in open(sys.argv[1], encoding="utf-8"):
    o = json.loads(text)
    r = o["reason"]
    for p in ("invalid:", "conflict:", "out of range"):
        if r.startswith(p):
            r = p
    fields = [o["line"], o["outcome"], r.replace(" ", "_") or "-", json.dumps(o["seq"])]
    if ids:
        fields += [json.dumps(o["trade_id"]), json.dumps(o["version"])]
    print(*fields)
PY
}

# check_table GOLDEN OUTCOMES LABEL [ids]: the summarized outcomes must equal the golden table.
check_table() {
  local golden=$1 outcomes=$2 label=$3
  summarize_outcomes "$outcomes" ${4:-} >"$TMP/table.summary"
  diff -u "$golden" "$TMP/table.summary" || fail "$label disagrees with the hand-checked table"
}

# A hung host fails the test long before CTest's own timeout.
TC_TIMEOUT=${TC_TIMEOUT:-180}

# replay_ok ARGS...: runs `tradecapture replay ARGS...`, which must exit 0.
replay_ok() {
  local rc=0
  timeout "$TC_TIMEOUT" "$TC" replay "$@" 2>"$TMP/replay.err" || rc=$?
  if [[ $rc -ne 0 ]]; then
    cat "$TMP/replay.err" >&2
    [[ $rc -eq 124 ]] && fail "tradecapture replay $* did not finish within ${TC_TIMEOUT}s"
    fail "tradecapture replay $* exited $rc"
  fi
}

# dump_ok positions|events STORE OUT: the subcommand must exit 0.
dump_ok() {
  timeout "$TC_TIMEOUT" "$TC" "$1" --store "$2" >"$3" 2>"$TMP/dump.err" || {
    cat "$TMP/dump.err" >&2
    fail "tradecapture $1 --store $2 exited non-zero"
  }
}
