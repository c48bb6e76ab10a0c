#!/usr/bin/env bash
# The events tradecapture-load generates (--dump: as if the server accepted every one) are valid
# spec-section-1 events, decimals in plain notation: replayed in order, every one is ACCEPTED,
# and outcomes, positions and events equal the independent model's. Also: the same seed gives
# the same events, partitions stay within --partitions and --route-groups keeps a request's
# group, and bad options are usage errors (exit 64, EX_USAGE).
source "$(dirname "$0")/common.bash" "$1"
LOAD="$BIN_DIR/tradecapture-load"
[[ -x "$LOAD" ]] || fail "$LOAD is not an executable"

"$LOAD" --dump 3000 --mix 55:30:15 --partitions 40 --skew 1.1 --seed 5 --trade-prefix t- \
  >"$TMP/dump.jsonl"
[[ $(wc -l <"$TMP/dump.jsonl") -eq 3000 ]] || fail "--dump 3000 wrote $(wc -l <"$TMP/dump.jsonl") lines"
"$LOAD" --dump 3000 --mix 55:30:15 --partitions 40 --skew 1.1 --seed 5 --trade-prefix t- |
  cmp -s - "$TMP/dump.jsonl" || fail "the same seed gave different events"

model run --outcomes "$TMP/m.outcomes" --positions "$TMP/m.positions" --events "$TMP/m.events" \
  "$TMP/dump.jsonl"
replay_ok --store "sqlite:$TMP/load.db" --outcomes "$TMP/outcomes" "$TMP/dump.jsonl"
dump_ok positions "sqlite:$TMP/load.db" "$TMP/positions"
dump_ok events "sqlite:$TMP/load.db" "$TMP/events"
check_same "$TMP/m.outcomes" "$TMP/outcomes" "outcomes of generated events"
check_same "$TMP/m.positions" "$TMP/positions" "positions"
check_same "$TMP/m.events" "$TMP/events" "events"

python3 - "$TMP/outcomes" "$TMP/dump.jsonl" <<'EOF' || fail "generated events"
import json, re, sys
outs = [json.loads(l) for l in open(sys.argv[1])]
evs = [json.loads(l) for l in open(sys.argv[2])]
bad = [o for o in outs if o["outcome"] != "ACCEPTED"]
if bad:
    sys.exit(f"not ACCEPTED: {bad[:3]}")
types = {t: sum(1 for e in evs if e["type"] == t) for t in ("NEW", "AMEND", "CANCEL")}
if min(types.values()) == 0:
    sys.exit(f"the mix is missing a type: {types}")
plain = re.compile(r"^[0-9]+(\.[0-9]+)?$")
for e in evs:
    if e["type"] != "CANCEL":
        for f in ("quantity", "price"):
            if not isinstance(e[f], str) or not plain.match(e[f]):
                sys.exit(f"{f} {e[f]!r} is not a plain decimal string")
    if not e["trade_id"].startswith("t-") or int(e["security"][3:]) >= 40:
        sys.exit(f"bad trade_id or partition: {e}")
print(f"ok: {len(evs)} generated events all ACCEPTED ({types})")
EOF

# --route-groups: every event of group g has a partition p with p % G == g; dump draws one
# group per event, so check that groups spread and partitions stay in range.
"$LOAD" --dump 500 --partitions 100 --route-groups 7 --seed 9 >"$TMP/groups.jsonl"
python3 - "$TMP/groups.jsonl" <<'EOF' || fail "--route-groups"
import json, sys
parts = {int(json.loads(l)["security"][3:]) for l in open(sys.argv[1])}
if max(parts) >= 100 or len({p % 7 for p in parts}) < 2:
    sys.exit(f"partitions {sorted(parts)[:20]}")
EOF

for bad in "--rate -1" "--mix 0:1:1" "--skew hot:2:0.5" "--format xml" "--connections 0"; do
  rc=0
  # shellcheck disable=SC2086
  "$LOAD" --url http://127.0.0.1:1 $bad -d 1 >/dev/null 2>&1 || rc=$?
  [[ $rc -eq 64 ]] || fail "tradecapture-load $bad exited $rc, expected 64 (usage)"
done
rc=0
"$LOAD" -d 1 >/dev/null 2>&1 || rc=$?
[[ $rc -eq 64 ]] || fail "tradecapture-load without --url exited $rc, expected 64"
# A server that is not there: every event fails after the retries, exit 1, quickly.
rc=0
timeout 60 "$LOAD" --url "http://127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')" \
  -n 10 --max-retries 2 --progress 0 >"$TMP/nobody.txt" 2>&1 || rc=$?
[[ $rc -eq 1 ]] || fail "tradecapture-load against a closed port exited $rc, expected 1: $(cat "$TMP/nobody.txt")"
grep -q "connect" "$TMP/nobody.txt" || fail "no connect errors counted: $(cat "$TMP/nobody.txt")"
echo "ok: tradecapture-load events and options"
