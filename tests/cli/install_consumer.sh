#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, builds examples/consumer against it with
# find_package(tradecapture) and runs it.
source "$(dirname "$0")/common.bash" "$1"

BUILD=$(cd "$BIN_DIR/.." && pwd)
[[ -f "$BUILD/CMakeCache.txt" ]] || fail "$BUILD is not a CMake build tree"
PREFIX="$TMP/prefix"

cmake --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" 2>&1 ||
  { cat "$TMP/install.log" >&2; fail "cmake --install failed"; }
[[ -x "$PREFIX/bin/tradecapture" ]] || fail "the host was not installed to bin/"
ls "$PREFIX"/lib*/cmake/tradecapture/tradecaptureConfig.cmake >/dev/null 2>&1 ||
  fail "no tradecaptureConfig.cmake installed"

cmake -S "$ROOT/examples/consumer" -B "$TMP/consumer" -DCMAKE_PREFIX_PATH="$PREFIX" \
  -DCMAKE_BUILD_TYPE=Release >"$TMP/configure.log" 2>&1 ||
  { cat "$TMP/configure.log" >&2; fail "configuring the consumer failed"; }
cmake --build "$TMP/consumer" -j2 >"$TMP/build.log" 2>&1 ||
  { cat "$TMP/build.log" >&2; fail "building the consumer failed"; }
"$TMP/consumer/consumer" >"$TMP/consumer.out" 2>"$TMP/consumer.err" ||
  { cat "$TMP/consumer.err" >&2; fail "the consumer failed"; }

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
grep -qx 'accepted 3, duplicate 1, rejected 1' "$TMP/consumer.out" ||
  { cat "$TMP/consumer.out" >&2; fail "consumer metrics line"; }

# The installed host runs too.
"$PREFIX/bin/tradecapture" --help >/dev/null || fail "the installed host does not run"
echo "PASS install_consumer"
