#!/usr/bin/env bash
# The smallest build: core, memory and the SOCI store need only Boost, spdlog, simdjson and SOCI.
# Configures this source tree as a machine without hiredis, librdkafka, prometheus-cpp, CLI11,
# doctest, Google Benchmark and nlohmann-json would (pkg-config sees no modules, CMake may not
# find those packages; nlohmann-json is only for the hosts' tools and the tests), checks that
# configure turns exactly those parts OFF and says so, builds what is left, installs it, and
# builds and runs examples/consumer against that installation.
source "$(dirname "$0")/common.bash" "$1"

mkdir -p "$TMP/no-pkgconfig"
# -O0 without debug information: this checks that it builds, not how fast it runs.
PKG_CONFIG_LIBDIR="$TMP/no-pkgconfig" PKG_CONFIG_PATH="" \
  cmake -S "$ROOT" -B "$TMP/build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 \
  -DCMAKE_DISABLE_FIND_PACKAGE_prometheus-cpp=ON -DCMAKE_DISABLE_FIND_PACKAGE_CLI11=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_doctest=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON \
  >"$TMP/configure.log" 2>&1 ||
  { cat "$TMP/configure.log" >&2; fail "configuring the subset failed"; }

expect_part() {
  grep -q -- "-- tradecapture: $1: $2 " "$TMP/configure.log" ||
    fail "configure did not report '$1: $2': $(grep -- '-- tradecapture:' "$TMP/configure.log")"
}
expect_part "soci store" ON
expect_part "redis lock" OFF
expect_part "kafka ingress" OFF
expect_part "metrics" OFF
expect_part "hosts" OFF
expect_part "tests" OFF
expect_part "benchmarks" OFF
grep -q "needs libhiredis-dev" "$TMP/configure.log" ||
  fail "configure did not name the package that turns the Redis lock on"

cmake --build "$TMP/build" -j2 >"$TMP/build.log" 2>&1 ||
  { tail -n 40 "$TMP/build.log" >&2; fail "building the subset failed"; }
built() { [[ -n "$(find "$TMP/build" -name "lib$1.*" -print -quit)" ]]; }
for lib in tradecapture_core tradecapture_memory tradecapture_soci; do
  built "$lib" || fail "lib$lib was not built"
done
for lib in tradecapture_redis tradecapture_kafka tradecapture_metrics; do
  if built "$lib"; then fail "lib$lib was built"; fi
done

cmake --install "$TMP/build" --prefix "$TMP/prefix" >"$TMP/install.log" 2>&1 ||
  { cat "$TMP/install.log" >&2; fail "installing the subset failed"; }
cmake -S "$ROOT/examples/consumer" -B "$TMP/consumer" -DCMAKE_PREFIX_PATH="$TMP/prefix" \
  >"$TMP/consumer-configure.log" 2>&1 ||
  { cat "$TMP/consumer-configure.log" >&2; fail "configuring the consumer failed"; }
cmake --build "$TMP/consumer" >"$TMP/consumer-build.log" 2>&1 ||
  { cat "$TMP/consumer-build.log" >&2; fail "building the consumer failed"; }
"$TMP/consumer/consumer" >"$TMP/consumer.out" 2>&1 ||
  { cat "$TMP/consumer.out" >&2; fail "the consumer failed"; }
grep -q '"outcome": "ACCEPTED"' "$TMP/consumer.out" || fail "the consumer printed no outcome"
echo "ok: core, memory and soci build and install alone; the optional parts say what they need"
