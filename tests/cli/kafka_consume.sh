#!/usr/bin/env bash
# `tradecapture consume` against librdkafka's mock cluster (a tradecapture-kafka-mock process):
# an adversarial trace (gen_trace.py) produced keyed per the contract to a 6-partition topic is
# consumed into SQLite; the outcomes on the results topic, the positions and the events equal
# the independent model's, and the stored offsets are the end offsets. Then two members share
# a group, one is killed with SIGKILL mid-run and later a third one is started and stopped with
# SIGTERM: the final state is still exactly the model's (nothing lost, nothing applied twice).
source "$(dirname "$0")/common.bash" "$1"

source "$HERE/kafka_common.bash"

start_mock_cluster --brokers 3 --topic trades:6:2 --topic outcomes:3

# ---- the trace -------------------------------------------------------------------------------
gen --seed 505 --lines 3000 --out "$TMP/raw.jsonl"
kafka_trace "$TMP/raw.jsonl" trades "$TMP/trace.jsonl"
model run --outcomes "$TMP/model.outcomes" --positions "$TMP/model.positions" \
  --events "$TMP/model.events" "$TMP/trace.jsonl"
for what in '"ACCEPTED"' '"DUPLICATE"' '"STALE"' '"conflict:' '"unknown trade"' \
  '"trade cancelled"' '"invalid:'; do
  grep -qF -- "$what" "$TMP/model.outcomes" || fail "the model reports no $what"
done
"$MOCK" produce --brokers "$BOOT" --topic trades --mapping "$TMP/trace.map" "$TMP/trace.jsonl"
N=$(wc -l <"$TMP/trace.map")

# end_offsets: "PARTITION END" per partition, from the produce mapping.
awk '{ if ($3 + 1 > e[$2]) e[$2] = $3 + 1 } END { for (p in e) print p, e[p] }' \
  "$TMP/trace.map" | sort -n >"$TMP/end.offsets"

# stored_offsets DB GROUP: "PARTITION NEXT_OFFSET" per partition, from the store.
stored_offsets() {
  # Nothing (not an error) while the store or its table does not exist yet.
  { sqlite3 "$1" "SELECT partition, next_offset FROM source_offsets WHERE consumer = '$2' \
    AND topic = 'trades' ORDER BY partition" 2>/dev/null || true; } | tr '|' ' '
}

CONSUME_ARGS=(--brokers "$BOOT" --topic trades --kafka-config session.timeout.ms=3000
  --kafka-config heartbeat.interval.ms=200 --progress-interval-ms 0)

# ---- one member ------------------------------------------------------------------------------
"$TC" consume "${CONSUME_ARGS[@]}" --group g1 --store "sqlite:$TMP/one.db" \
  --results-topic outcomes --metrics-listen 127.0.0.1:0 --log-level info 2>"$TMP/one.err" &
ONE=$!
PIDS+=($ONE)
sleep 1
kill -0 "$ONE" 2>/dev/null || { cat "$TMP/one.err" >&2; fail "consume did not start"; }
timeout 120 "$MOCK" dump --brokers "$BOOT" --topic outcomes --count "$N" --timeout-ms 90000 \
  >"$TMP/results.jsonl" || { tail -n 20 "$TMP/one.err" >&2; fail "not every message got an outcome"; }
wait_stored "$TMP/one.db" g1 30 || fail "one member: the stored offsets are not the end offsets"
# The Prometheus endpoint.
url=$(grep -o 'metrics on http://[0-9.:]*/metrics' "$TMP/one.err" | head -n 1 | cut -d' ' -f3)
[[ -n $url ]] || fail "one member: no metrics endpoint in the log"
python3 - "$url" "$N" <<'PY' || fail "one member: /metrics is wrong"
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
want = "tradecapture_kafka_messages_total %s" % sys.argv[2]
assert want in text.splitlines(), "no line %r in:\n%s" % (want, text[:2000])
for name in ("tradecapture_kafka_lag_messages", "tradecapture_kafka_end_to_end_latency_seconds_count",
             "tradecapture_trades_total"):
    assert name in text, name
PY
stop_ok "$ONE" one
grep -q "tradecapture consume: $N messages" "$TMP/one.err" ||
  { tail -n 5 "$TMP/one.err" >&2; fail "one member: the summary does not count $N messages"; }
# The results topic as --outcomes lines (line numbers through the produce mapping).
results_as_outcomes "$TMP/results.jsonl" trades "$TMP/trace.map" "$TMP/one.outcomes"
# The model numbers lines of its own input (the filtered trace), like the mapping.
check_same "$TMP/model.outcomes" "$TMP/one.outcomes" "one member: results topic"
dump_ok positions "sqlite:$TMP/one.db" "$TMP/one.positions"
dump_ok events "sqlite:$TMP/one.db" "$TMP/one.events"
check_same "$TMP/model.positions" "$TMP/one.positions" "one member: positions"
check_same "$TMP/model.events" "$TMP/one.events" "one member: events"

# ---- two members, one killed -----------------------------------------------------------------
# Small batches and in-flight windows so that there is work left when the kill comes.
SLOW=(--batch 2 --max-in-flight 16 --threads 2)
"$TC" consume "${CONSUME_ARGS[@]}" "${SLOW[@]}" --log-level warn --group g2 --store "sqlite:$TMP/two.db" \
  2>"$TMP/a.err" &
A=$!
PIDS+=($A)
"$TC" consume "${CONSUME_ARGS[@]}" "${SLOW[@]}" --log-level warn --group g2 --store "sqlite:$TMP/two.db" \
  2>"$TMP/b.err" &
B=$!
PIDS+=($B)
# Both members consume (each stored some offsets), then A dies without a word.
kill_mid_run "$TMP/two.db" g2 "$N" 30 "$A" A
# B takes A's partitions over after the session timeout; a third member joins later and is
# stopped again (one more rebalance) before B finishes.
sleep 1
"$TC" consume "${CONSUME_ARGS[@]}" "${SLOW[@]}" --log-level warn --group g2 --store "sqlite:$TMP/two.db" \
  2>"$TMP/c.err" &
C=$!
PIDS+=($C)
sleep 5
stop_ok "$C" c
wait_stored "$TMP/two.db" g2 120 || fail "two members: the stored offsets are not the end offsets"
stop_ok "$B" b
grep -ah "replayed after a restart" "$TMP/b.err" "$TMP/c.err" >&2 || true
dump_ok positions "sqlite:$TMP/two.db" "$TMP/two.positions"
dump_ok events "sqlite:$TMP/two.db" "$TMP/two.events"
python3 "$HERE/check_store.py" "$TMP/two.events" "$TMP/two.positions" ||
  fail "two members: the store breaks an invariant"
check_same "$TMP/model.positions" "$TMP/two.positions" "killed member: positions"
check_same "$TMP/model.events" "$TMP/two.events" "killed member: events"
echo "ok: kafka consume"
