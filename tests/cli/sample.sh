#!/usr/bin/env bash
# Replays examples/sample-trades.jsonl into a fresh SQLite store and checks outcomes, positions and
# events against the Python model, and the model itself against hand-checked expectations.
source "$(dirname "$0")/common.bash" "$1"

SAMPLE="$ROOT/examples/sample-trades.jsonl"
STORE="sqlite:$TMP/sample.db"

model run --outcomes "$TMP/m.outcomes" --positions "$TMP/m.positions" --events "$TMP/m.events" \
  "$SAMPLE"
replay_ok --store "$STORE" --outcomes "$TMP/outcomes" "$SAMPLE"
dump_ok positions "$STORE" "$TMP/positions"
dump_ok events "$STORE" "$TMP/events"

# 1. Hand-checked expectations (line, outcome, reason class, seq), worked out from the spec alone;
#    both the model and the binary must agree with them.
cat >"$TMP/golden" <<'GOLDEN'
1 ACCEPTED - 1
2 ACCEPTED - 1
3 ACCEPTED - 2
4 ACCEPTED - 1
6 ACCEPTED - 3
7 DUPLICATE - null
8 ACCEPTED - 1
9 ACCEPTED - 2
10 ACCEPTED - 4
11 REJECTED conflict: null
12 ACCEPTED - 5
13 STALE - null
14 REJECTED unknown_trade null
15 REJECTED trade_cancelled null
16 REJECTED invalid: null
17 REJECTED invalid: null
18 ACCEPTED - 2
19 DUPLICATE - null
20 REJECTED trade_cancelled null
21 ACCEPTED - 1
22 ACCEPTED - 1
23 REJECTED conflict: null
24 REJECTED unknown_trade null
25 ACCEPTED - 1
26 ACCEPTED - 2
27 ACCEPTED - 2
28 ACCEPTED - 3
29 REJECTED invalid: null
30 ACCEPTED - 4
31 ACCEPTED - 3
32 REJECTED conflict: null
34 ACCEPTED - 6
35 REJECTED invalid: null
36 REJECTED invalid: null
37 ACCEPTED - 7
38 ACCEPTED - 3
39 DUPLICATE - null
40 REJECTED unknown_trade null
41 ACCEPTED - 2
GOLDEN
check_table "$TMP/golden" "$TMP/m.outcomes" "the model"
check_table "$TMP/golden" "$TMP/outcomes" "tradecapture"
echo "ok: hand-checked outcomes"

# Hand-computed positions of three partitions (T1001 v4 150@188 + T1006 v2 25@188.02; the
# RATES book after a side-changing amend; the '_' sibling of DESK_A/EQ).
cat >"$TMP/golden.positions" <<'GOLDEN'
{"account": "ACC-EQ-01", "book": "EQ-FLOW", "security": "AAPL", "net_quantity": "175", "bought_quantity": "175", "sold_quantity": "0", "bought_notional": "32900.5", "sold_notional": "0", "live_trades": 2, "seq": 7}
{"account": "ACC-FI-02", "book": "RATES", "security": "US91282CJL6", "net_quantity": "-3499990.5", "bought_quantity": "10", "sold_quantity": "3500000.5", "bought_notional": "1000", "sold_notional": "345762549.4", "live_trades": 3, "seq": 4}
{"account": "DESK", "book": "A_EQ", "security": "VOD.L", "net_quantity": "-1200", "bought_quantity": "0", "sold_quantity": "1200", "bought_notional": "0", "sold_notional": "867", "live_trades": 1, "seq": 2}
GOLDEN
for f in m.positions positions; do
  grep -F -e '"AAPL"' -e '"RATES"' -e '"A_EQ"' "$TMP/$f" >"$TMP/$f.some"
  check_same "$TMP/golden.positions" "$TMP/$f.some" "hand-checked positions ($f)"
done
[[ $(wc -l <"$TMP/positions") -eq 7 ]] || fail "expected 7 partitions in positions"

# 2. Everything against the model.
check_same "$TMP/m.outcomes" "$TMP/outcomes" "sample outcomes"
check_same "$TMP/m.positions" "$TMP/positions" "sample positions"
check_same "$TMP/m.events" "$TMP/events" "sample events"

# 3. --outcomes - writes to standard output, the same lines.
replay_ok --store "sqlite:$TMP/sample2.db" --outcomes - "$SAMPLE" >"$TMP/outcomes.stdout"
check_same "$TMP/m.outcomes" "$TMP/outcomes.stdout" "sample outcomes on standard output"
echo "PASS sample"
