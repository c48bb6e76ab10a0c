# Shared steps of install_consumer.sh and install_components.sh (sourced after common.bash; not
# run by CTest, which runs only *.sh): installs the build tree that BIN_DIR belongs to into a
# temporary prefix (BUILD, PREFIX), then configures, builds and runs consumer projects against it.

BUILD=$(cd "$BIN_DIR/.." && pwd)
[[ -f "$BUILD/CMakeCache.txt" ]] || fail "$BUILD is not a CMake build tree"
PREFIX="$TMP/prefix"
cmake --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" 2>&1 ||
  { cat "$TMP/install.log" >&2; fail "cmake --install failed"; }

configure() {  # configure DIR [args...]: fails the test with the log when cmake fails
  local dir=$1
  shift
  "$@" >"$TMP/$(basename "$dir").configure.log" 2>&1 ||
    { cat "$TMP/$(basename "$dir").configure.log" >&2; fail "configuring $(basename "$dir") failed"; }
}
build() {
  cmake --build "$1" -j2 >"$TMP/$(basename "$1").build.log" 2>&1 ||
    { cat "$TMP/$(basename "$1").build.log" >&2; fail "building $(basename "$1") failed"; }
}

# run_consumer LABEL: builds examples/consumer, configured in $TMP/consumer, runs it (output in
# $TMP/consumer.out, log in $TMP/consumer.err) and checks its metrics line.
run_consumer() {
  build "$TMP/consumer"
  "$TMP/consumer/consumer" >"$TMP/consumer.out" 2>"$TMP/consumer.err" ||
    { cat "$TMP/consumer.err" >&2; fail "the $1 failed"; }
  grep -qx 'accepted 3, duplicate 1, rejected 1' "$TMP/consumer.out" ||
    { cat "$TMP/consumer.out" >&2; fail "$1: metrics line"; }
}
