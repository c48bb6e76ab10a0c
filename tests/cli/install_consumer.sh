#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, builds examples/consumer against it with
# find_package(tradecapture) and runs it.
source "$(dirname "$0")/common.bash" "$1"

source "$HERE/install_common.bash"
[[ -x "$PREFIX/bin/tradecapture" ]] || fail "the host was not installed to bin/"
ls "$PREFIX"/lib*/cmake/tradecapture/tradecaptureConfig.cmake >/dev/null 2>&1 ||
  fail "no tradecaptureConfig.cmake installed"

configure "$TMP/consumer" cmake -S "$ROOT/examples/consumer" -B "$TMP/consumer" \
  -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release
run_consumer consumer

cat >"$TMP/expected" <<'EXPECTED'
{"line": 1, "trade_id": "T1", "version": 1, "outcome": "ACCEPTED", "reason": "", "seq": 1}
{"line": 2, "trade_id": "T1", "version": 1, "outcome": "DUPLICATE", "reason": "", "seq": null}
{"line": 3, "trade_id": "T1", "version": 2, "outcome": "ACCEPTED", "reason": "", "seq": 2}
{"line": 4, "trade_id": "T2", "version": 2, "outcome": "REJECTED", "reason": "unknown trade", "seq": null}
{"line": 5, "trade_id": "T1", "version": 3, "outcome": "ACCEPTED", "reason": "", "seq": 3}
{"account": "ACC1", "book": "BOOK1", "security": "AAPL", "net_quantity": "0", "bought_quantity": "0", "sold_quantity": "0", "bought_notional": "0", "sold_notional": "0", "live_trades": 0, "seq": 3}
EXPECTED
grep -v '^accepted ' "$TMP/consumer.out" >"$TMP/consumer.json"
check_same "$TMP/expected" "$TMP/consumer.json" "consumer output"

# The installed host runs too.
"$PREFIX/bin/tradecapture" --help >/dev/null || fail "the installed host does not run"
echo "PASS install_consumer"
