#!/usr/bin/env bash
# Hand-picked edge cases of spec section 1 (strict JSON, echoes, limits), each with its expected
# outcome worked out by hand; the model must agree with the table and the binary with both.
source "$(dirname "$0")/common.bash" "$1"

python3 - "$TMP/edges.jsonl" <<'PY'
import json, sys
def ev(tid, v=1, typ="NEW", part=("E", "B", "S"), side="BUY", q='"1"', p='"2"', extra="", raw_id=None):
    line = '{"trade_id": %s, "version": %s, "type": "%s", "account": "%s", "book": "%s", "security": "%s"' % (
        raw_id or json.dumps(tid), v, typ, *part)
    if side is not None:
        line += ', "side": %s, "quantity": %s, "price": %s' % (json.dumps(side), q, p)
    return line + extra + "}"
lines = [
    ev("E1", part=("BIG", "B", "S"), extra=', "big": 1e400'),      # RFC 8259 number, unknown field
    ev("E2", extra=', "tiny": -1E-400'),
    ev("E3", extra=', "huge": 123456789012345678901234567890'),
    ev("E4").replace('"trade_id"', '"\\u0074rade_id"'),            # escaped key = trade_id
    ev(None, raw_id='"E5\\ud83d\\ude00"'),                         # a valid surrogate pair
    ev("E6", extra=', "x": "\\udc00"'),                            # lone surrogate elsewhere
    ev("E7", extra=', "m": {"a": 1, "a": 1}'),                     # repeated key, nested
    ev("E8", q="NaN"),
    ev("E9\x7f"),                                                  # raw DEL: JSON ok, id not
    ev("E10\u0085"),                                               # C1 control: legal
    ev("\u00e9" * 32),                                             # 64 bytes
    ev("\u00e9" * 33),                                             # 66 bytes
    ev("E13", q='"1000000000000.000000"', p='"1000000000"'),
    ev("E14", q='"1000000000000.000001"'),
    ev("E15", p="0"),
    ev("E15", v=2, typ="CANCEL", side="sell", q='"-1"', p="[]"),  # ignored fields of a CANCEL
    "\f",                                                          # not blank, not JSON
    "\ufeff" + ev("E18"),                                          # BOM not at input start
    ev("E2", v=9223372036854775807, typ="AMEND"),
    ev("E2", v="9223372036854775808", typ="AMEND"),
    ev("E2", v="-9223372036854775808", typ="AMEND"),
    ev("E2", v="2.0", typ="AMEND"),
    ev("E23")[:-1] + ",}",
    ev("E24", q="1.5", p="0.1"),
    ev("E24", q='"1.500000"', p='"0.10000000"'),                   # numerically equal resend
    ev("E24", q='"1.5000000"'),                                    # 7 digits as written
    "  \t\r",
    ev("E28", part=("E_B", "S", "S")),
    ev("E28", part=("E", "B_S", "S")),                             # same key, other partition
]
with open(sys.argv[1], "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
PY

# line outcome reason-class seq trade_id-echo version-echo
cat >"$TMP/golden" <<'GOLDEN'
1 ACCEPTED - 1 "E1" 1
2 ACCEPTED - 1 "E2" 1
3 ACCEPTED - 2 "E3" 1
4 ACCEPTED - 3 "E4" 1
5 ACCEPTED - 4 "E5\ud83d\ude00" 1
6 REJECTED invalid: null null null
7 REJECTED invalid: null null null
8 REJECTED invalid: null null null
9 REJECTED invalid: null "E9\u007f" 1
10 ACCEPTED - 5 "E10\u0085" 1
11 ACCEPTED - 6 "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9" 1
12 REJECTED invalid: null "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9" 1
13 ACCEPTED - 7 "E13" 1
14 REJECTED invalid: null "E14" 1
15 ACCEPTED - 8 "E15" 1
16 ACCEPTED - 9 "E15" 2
17 REJECTED invalid: null null null
18 REJECTED invalid: null null null
19 ACCEPTED - 10 "E2" 9223372036854775807
20 REJECTED invalid: null "E2" null
21 REJECTED invalid: null "E2" -9223372036854775808
22 REJECTED invalid: null "E2" null
23 REJECTED invalid: null null null
24 ACCEPTED - 11 "E24" 1
25 DUPLICATE - null "E24" 1
26 REJECTED invalid: null "E24" 1
28 ACCEPTED - 1 "E28" 1
29 REJECTED conflict: null "E28" 1
GOLDEN
model run --outcomes "$TMP/model" "$TMP/edges.jsonl"
check_table "$TMP/golden" "$TMP/model" "the model" ids
replay_ok --store memory: --outcomes "$TMP/actual" "$TMP/edges.jsonl"
check_table "$TMP/golden" "$TMP/actual" "tradecapture" ids
check_same "$TMP/model" "$TMP/actual" "edge-case outcomes"
echo "PASS json_edges"
