# Shared set-up of the Kafka shell tests kafka_consume.sh and kafka_topics.sh (sourced after
# common.bash; not run by CTest, which runs only *.sh): librdkafka's mock cluster (a
# tradecapture-kafka-mock process), the stored source offsets, and stopping a consumer.
# The sourcing test defines stored_offsets DB GROUP (one line per Kafka partition, its next
# offset last, in the order of "$TMP/end.offsets").

MOCK="$BIN_DIR/tradecapture-kafka-mock"
if [[ ! -x $MOCK ]]; then
  # Skipped only when the build has no Kafka at all; a Kafka build without the mock is a failure.
  if "$BIN_DIR/tradecapture" consume --help >/dev/null 2>&1; then
    fail "$MOCK is missing although tradecapture was built with Kafka"
  fi
  echo "skip: built without Kafka (no consume command, no $MOCK)"
  exit 0
fi
command -v sqlite3 >/dev/null || fail "sqlite3 is needed to read the stored offsets"

# Every process in PIDS is killed (SIGKILL) when the test exits.
PIDS=()
cleanup() {
  kill_all "${PIDS[@]}"
  rm -rf "$TMP"
}
trap cleanup EXIT

# start_mock_cluster ARGS...: `tradecapture-kafka-mock cluster ARGS...` in the background, its
# command channel held open on fd 7; sets BOOT to its bootstrap servers.
start_mock_cluster() {
  mkfifo "$TMP/mock.in"
  "$MOCK" cluster "$@" <"$TMP/mock.in" >"$TMP/mock.out" 2>"$TMP/mock.err" &
  PIDS+=($!)
  disown  # no job-control noise when the clean-up kills it
  exec 7>"$TMP/mock.in"  # keeps the command channel open
  for _ in $(seq 100); do [[ -s $TMP/mock.out ]] && break; sleep 0.1; done
  BOOT=$(head -n 1 "$TMP/mock.out")
  [[ -n $BOOT ]] || { cat "$TMP/mock.err" >&2; fail "the mock cluster did not start"; }
  echo "mock cluster at $BOOT"
}

# wait_stored DB GROUP SECONDS: until the stored offsets are the end offsets ("$TMP/end.offsets").
wait_stored() {
  local i
  for ((i = 0; i < $3 * 10; ++i)); do
    [[ "$(stored_offsets "$1" "$2")" == "$(cat "$TMP/end.offsets")" ]] && return 0
    sleep 0.1
  done
  echo "stored offsets:" >&2
  stored_offsets "$1" "$2" >&2
  echo "end offsets:" >&2
  cat "$TMP/end.offsets" >&2
  return 1
}

# kill_mid_run DB GROUP N SECONDS PID NAME: waits (up to SECONDS) until the members of GROUP stored
# more than a quarter of the N offsets, fails when they made no progress or were already done,
# then kills PID with SIGKILL.
kill_mid_run() {
  local total=0 i
  for ((i = 0; i < $4 * 10; ++i)); do
    total=$(stored_offsets "$1" "$2" | awk '{ s += $NF } END { print s + 0 }')
    ((total > $3 / 4)) && break
    sleep 0.1
  done
  ((total > $3 / 4)) || fail "the members made no progress"
  ((total < $3)) || fail "the members were done before the kill (make the run slower)"
  kill -KILL "$5"
  wait "$5" 2>/dev/null || true
  echo "killed member $6 after $total of $3 offsets were stored"
}

# stop_ok PID NAME: SIGTERM, which must end the consumer with exit code 0 within 60 s.
stop_ok() {
  kill -TERM "$1"
  local rc=0
  timeout 60 tail --pid="$1" -f /dev/null || fail "$2 did not stop within 60 s of SIGTERM"
  wait "$1" || rc=$?
  [[ $rc -eq 0 ]] || { tail -n 20 "$TMP/$2.err" >&2; fail "$2 exited $rc after SIGTERM"; }
}
