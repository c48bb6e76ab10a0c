# Shared set-up of the Kafka shell tests kafka_consume.sh, kafka_topics.sh and http_kafka.sh
# (sourced after common.bash; not run by CTest, which runs only *.sh): librdkafka's mock cluster
# (a tradecapture-kafka-mock process), traces fit for a topic, the results topic as outcome
# lines, the stored source offsets, and stopping a consumer.
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

# kill_mid_run DB GROUP N SECONDS PID NAME [BASE]: waits (up to SECONDS) until the members of
# GROUP stored more than a quarter of the N offsets (beyond BASE stored before), fails when they
# made no progress or were already done, then kills PID with SIGKILL.
kill_mid_run() {
  local total=0 i
  for ((i = 0; i < $4 * 10; ++i)); do
    total=$(stored_offsets "$1" "$2" | awk -v base="${7:-0}" '{ s += $NF } END { print s - base }')
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
  local rc=0
  if ! kill -TERM "$1" 2>/dev/null; then
    # Already gone: say how it ended (e.g. 69, its store failing past the retry budget).
    wait "$1" || rc=$?
    tail -n 20 "$TMP/$2.err" >&2
    fail "$2 had exited ($rc) before its SIGTERM"
  fi
  timeout 60 tail --pid="$1" -f /dev/null || fail "$2 did not stop within 60 s of SIGTERM"
  wait "$1" || rc=$?
  [[ $rc -eq 0 ]] || { tail -n 20 "$TMP/$2.err" >&2; fail "$2 exited $rc after SIGTERM"; }
}

# kafka_trace RAW TOPIC OUT: the lines of the trace RAW that a model can answer in any
# consumption order once produced to TOPIC (keyed per the contract), into OUT. Outcomes may
# depend on the order of events with the same (trade_id, version) in different trade partitions
# (the key is global); Kafka orders only within a partition. So lines whose key already appeared
# in another Kafka partition are left out; everything else stays (blank lines are not messages).
kafka_trace() {
  "$MOCK" produce --brokers "$BOOT" --topic "$2" --dry-run --mapping "$3.map" "$1"
  python3 - "$1" "$3.map" "$3" <<'PY'
import json, sys
raw = open(sys.argv[1], "rb").read().split(b"\n")
part = {int(l.split()[0]): int(l.split()[1]) for l in open(sys.argv[2])}
first, kept, dropped = {}, [], 0
for n, line in enumerate(raw, 1):
    if n not in part:
        continue  # blank
    try:
        o = json.loads(line.decode("utf-8"))
        key = (o["trade_id"], o["version"]) if isinstance(o, dict) else None
        key = key if isinstance(key[0], str) and type(key[1]) is int else None
    except Exception:
        key = None
    if key is not None and first.setdefault(key, part[n]) != part[n]:
        dropped += 1
        continue
    kept.append(line)
open(sys.argv[3], "wb").write(b"\n".join(kept) + b"\n")
print("trace: %d messages (%d cross-partition key collisions left out)" % (len(kept), dropped))
PY
  rm -f "$3.map"
}

# results_as_outcomes RESULTS TOPIC MAP OUT: the results topic's records RESULTS (one JSON per
# line, `tradecapture-kafka-mock dump`), all of messages of TOPIC, as `--outcomes` lines in OUT,
# numbered by the input lines of the produce mapping MAP ("LINE PARTITION OFFSET"), in line
# order; fails on two outcomes for one message.
results_as_outcomes() {
  python3 - "$1" "$2" "$3" "$4" <<'PY'
import json, sys
line_of = {(int(p), int(o)): int(l) for l, p, o in (x.split() for x in open(sys.argv[3]))}
seen, out = set(), []
for text in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(text)
    at = (r["partition"], r["offset"])
    assert r["topic"] == sys.argv[2], r
    assert at not in seen, "two outcomes for %s" % (at,)
    seen.add(at)
    out.append((line_of[at], r))
with open(sys.argv[4], "w", encoding="utf-8") as f:
    for line, r in sorted(out, key=lambda x: x[0]):
        f.write(json.dumps({"line": line, "trade_id": r["trade_id"], "version": r["version"],
                            "outcome": r["outcome"], "reason": r["reason"], "seq": r["seq"]},
                           ensure_ascii=False) + "\n")
PY
}
