#!/usr/bin/env bash
# The exact text of `--outcomes` lines, byte for byte as the spec (section 4) writes its example:
#   {"line": 1, "trade_id": "T1", "version": 1, "outcome": "ACCEPTED", "reason": "", "seq": 1}
# (the other tests compare parsed JSON; this one pins the spacing, key order, null and escapes).
source "$(dirname "$0")/common.bash" "$1"

cat >"$TMP/in.jsonl" <<'IN'
{"trade_id": "T1", "version": 1, "type": "NEW", "account": "A", "book": "B", "security": "S", "side": "BUY", "quantity": "1", "price": "2"}
{"trade_id": "T1", "version": 1, "type": "NEW", "account": "A", "book": "B", "security": "S", "side": "BUY", "quantity": "1.0", "price": 2}

{"trade_id": "T1", "version": 2, "type": "AMEND", "account": "A", "book": "B", "security": "S", "side": "BUY", "quantity": "3", "price": "2"}
{"trade_id": "T1", "version": 2, "type": "AMEND", "account": "A", "book": "B", "security": "S", "side": "SELL", "quantity": "3", "price": "2"}
{"trade_id": "T2", "version": 2, "type": "CANCEL", "account": "A", "book": "B", "security": "S"}
{"trade_id": "T1", "version": 3, "type": "CANCEL", "account": "A", "book": "B", "security": "S"}
{"trade_id": "T1", "version": 4, "type": "AMEND", "account": "A", "book": "B", "security": "S", "side": "BUY", "quantity": "3", "price": "2"}
{"trade_id": "T3", "version": 1, "type": "NEW", "account": "A", "book": "B", "security": "S", "side": "BUY", "quantity": "3", "price": "2"}
{"trade_id": "T3", "version": 3, "type": "AMEND", "account": "A", "book": "B", "security": "S", "side": "BUY", "quantity": "3", "price": "2"}
{"trade_id": "T3", "version": 2, "type": "AMEND", "account": "A", "book": "B", "security": "S", "side": "BUY", "quantity": "3", "price": "2"}
{"trade_id": "T4", "version": "1"}
{"trade_id": 4, "version": 1}
not json
IN
cat >"$TMP/expected" <<'OUT'
{"line": 1, "trade_id": "T1", "version": 1, "outcome": "ACCEPTED", "reason": "", "seq": 1}
{"line": 2, "trade_id": "T1", "version": 1, "outcome": "DUPLICATE", "reason": "", "seq": null}
{"line": 4, "trade_id": "T1", "version": 2, "outcome": "ACCEPTED", "reason": "", "seq": 2}
{"line": 5, "trade_id": "T1", "version": 2, "outcome": "REJECTED", "reason": "conflict:*", "seq": null}
{"line": 6, "trade_id": "T2", "version": 2, "outcome": "REJECTED", "reason": "unknown trade", "seq": null}
{"line": 7, "trade_id": "T1", "version": 3, "outcome": "ACCEPTED", "reason": "", "seq": 3}
{"line": 8, "trade_id": "T1", "version": 4, "outcome": "REJECTED", "reason": "trade cancelled", "seq": null}
{"line": 9, "trade_id": "T3", "version": 1, "outcome": "ACCEPTED", "reason": "", "seq": 4}
{"line": 10, "trade_id": "T3", "version": 3, "outcome": "ACCEPTED", "reason": "", "seq": 5}
{"line": 11, "trade_id": "T3", "version": 2, "outcome": "STALE", "reason": "", "seq": null}
{"line": 12, "trade_id": "T4", "version": null, "outcome": "REJECTED", "reason": "invalid:*", "seq": null}
{"line": 13, "trade_id": null, "version": 1, "outcome": "REJECTED", "reason": "invalid:*", "seq": null}
{"line": 14, "trade_id": null, "version": null, "outcome": "REJECTED", "reason": "invalid:*", "seq": null}
OUT
replay_ok --store memory: --outcomes "$TMP/actual" "$TMP/in.jsonl"
[[ $(wc -l <"$TMP/actual") -eq $(wc -l <"$TMP/expected") ]] ||
  fail "expected $(wc -l <"$TMP/expected") outcome lines, got $(wc -l <"$TMP/actual")"
# Reasons that the spec fixes only by prefix are matched up to the closing quote.
paste -d '\n' "$TMP/expected" "$TMP/actual" | python3 -c '
import re, sys
lines = sys.stdin.read().split("\n")
bad = 0
for want, got in zip(lines[0::2], lines[1::2]):
    pattern = "".join(r"(?:[^\"\\]|\\.)*" if part == "*" else re.escape(part)
                      for part in re.split(r"(\*)", want))
    if not re.fullmatch(pattern, got):
        print("expected: " + want + "\n     got: " + got, file=sys.stderr)
        bad += 1
sys.exit(1 if bad else 0)
' || fail "--outcomes lines are not written exactly in the spec's format"
echo "PASS format"
