#!/usr/bin/env bash
# One `tradecapture serve` that also consumes Kafka (--brokers, --topic, --group) against
# librdkafka's mock cluster (a tradecapture-kafka-mock process): adversarial traces
# (gen_trace.py) over the same trade partitions arrive as single-event POSTs and from a topic at
# the same time, into one pipeline and one SQLite store. The trade ids of the feeds are disjoint,
# so every outcome is the same in any interleaving but for an ACCEPTED event's seq: each event's
# outcome (HTTP answers, results topic) is the independent model's, each ACCEPTED seq is the one
# stored, the positions are the model's and the events are the model's but for their seq. Then
# serve restarts against the same store and topic with more messages, is killed (SIGKILL)
# mid-run and restarted: nothing is decided twice (a re-read message decided before the kill is
# replayed, whatever its outcome), and the store is the model's of everything.
source "$(dirname "$0")/common.bash" "$1"

source "$HERE/kafka_common.bash"
source "$HERE/http_common.bash"
# Both set-ups kill what they started at exit: the mock cluster and the servers.
cleanup() {
  kill_all "${PIDS[@]}" "${SERVER_PIDS[@]}"
  rm -rf "$TMP"
}

start_mock_cluster --brokers 1 --topic trades:4 --topic outcomes:2

# ---- the traces ------------------------------------------------------------------------------
# disjoint_trace IN OUT OTHER...: the lines of IN whose trade_id (when it has one) appears in no
# OTHER trace, into OUT; lines without a trade id (not JSON, bad events) stay.
disjoint_trace() {
  python3 - "$@" <<'PY'
import json, sys
def tid(line):
    try:
        o = json.loads(line.decode("utf-8"))
        return o.get("trade_id") if isinstance(o, dict) else None
    except Exception:
        return None
taken = set()
for path in sys.argv[3:]:
    taken |= {tid(l) for l in open(path, "rb").read().split(b"\n")} - {None}
lines = open(sys.argv[1], "rb").read().split(b"\n")
kept = [l for l in lines if tid(l) is None or tid(l) not in taken]
open(sys.argv[2], "wb").write(b"\n".join(kept))
print("%s: %d of %d lines (trade ids of the other feeds left out)" % (sys.argv[2], len(kept), len(lines)))
PY
}
TRACE=(--no-whale --partitions 12 --crlf 0)  # no whale: no total near the range limit
gen --seed 5201 --lines 2500 "${TRACE[@]}" --out "$TMP/k.raw"
kafka_trace "$TMP/k.raw" trades "$TMP/k.jsonl"
gen --seed 5202 --lines 900 "${TRACE[@]}" --out "$TMP/h.raw"
disjoint_trace "$TMP/h.raw" "$TMP/h.jsonl" "$TMP/k.jsonl"
gen --seed 5203 --lines 2500 "${TRACE[@]}" --out "$TMP/k2.raw"
disjoint_trace "$TMP/k2.raw" "$TMP/k2.disjoint" "$TMP/k.jsonl" "$TMP/h.jsonl"
kafka_trace "$TMP/k2.disjoint" trades "$TMP/k2.jsonl"

"$MOCK" produce --brokers "$BOOT" --topic trades --mapping "$TMP/k.map" "$TMP/k.jsonl"
N1=$(wc -l <"$TMP/k.map")

# "PARTITION END" per partition of the produce mappings given.
end_offsets() {
  cat "$@" | awk '{ if ($3 + 1 > e[$2]) e[$2] = $3 + 1 } END { for (p in e) print p, e[p] }' |
    sort -n >"$TMP/end.offsets"
}
end_offsets "$TMP/k.map"

# stored_offsets DB GROUP: "PARTITION NEXT_OFFSET" per partition, from the store.
stored_offsets() {
  { sqlite3 "$1" "SELECT partition, next_offset FROM source_offsets WHERE consumer = '$2' \
    AND topic = 'trades' ORDER BY partition" 2>/dev/null || true; } | tr '|' ' '
}
stored_total() { stored_offsets "$TMP/s.db" g | awk '{ s += $NF } END { print s + 0 }'; }

# Small batches so that the two feeds take turns in the pipeline's commits.
SERVE_ARGS=(--store "sqlite:$TMP/s.db" --threads 2 --batch 2 --brokers "$BOOT" --topic trades
  --group g --results-topic outcomes --kafka-config session.timeout.ms=3000
  --kafka-config heartbeat.interval.ms=200 --progress-interval-ms 0)

# ---- 1. HTTP and Kafka at once ---------------------------------------------------------------
start_server one "${SERVE_ARGS[@]}"
ONE=$SERVER_PID
for _ in $(seq 300); do (($(stored_total) > 0)) && break; sleep 0.1; done
before=$(stored_total)
((before > 0)) || { cat "$TMP/one.log" >&2; fail "serve did not consume Kafka"; }
((before < N1)) || fail "Kafka was consumed before the first POST (make the run slower)"
client post-singles "$PORT" "$TMP/h.jsonl" "$TMP/h"
echo "Kafka: $before of $N1 offsets stored at the first POST, $(stored_total) at the last answer"
wait_stored "$TMP/s.db" g 60 || fail "one: the stored offsets are not the end offsets"
client scrape "$PORT" "$TMP/metrics.txt"
grep -q "^tradecapture_kafka_messages_total $N1\$" "$TMP/metrics.txt" ||
  fail "/metrics does not count $N1 Kafka messages"
stop_server "$ONE" one
grep -q "tradecapture serve: $N1 messages" "$TMP/one.log" ||
  { tail -n 5 "$TMP/one.log" >&2; fail "one: the summary does not count $N1 messages"; }
timeout 120 "$MOCK" dump --brokers "$BOOT" --topic outcomes --count "$N1" --timeout-ms 60000 \
  >"$TMP/results1.jsonl" || fail "not every Kafka message got an outcome"
results_as_outcomes "$TMP/results1.jsonl" trades "$TMP/k.map" "$TMP/k.outcomes"

# without_seq STORE_EVENTS FILE...: writes each FILE (outcome lines, or event lines) to
# FILE.noseq without what depends on the interleaving of the feeds: the seq of an ACCEPTED
# outcome (after checking that it is the seq stored for its key in STORE_EVENTS, for a FILE not
# made by the model) and of an event (event lines are then sorted).
without_seq() {
  python3 - "$TMP" "$@" <<'PY'
import json, os, sys
stored = {}
for text in open(sys.argv[2], encoding="utf-8"):
    e = json.loads(text)
    stored[(e["trade_id"], e["version"])] = e["seq"]
for path in sys.argv[3:]:
    out, events = [], False
    for text in open(path, encoding="utf-8"):
        o = json.loads(text)
        events = "outcome" not in o
        if events or o["outcome"] == "ACCEPTED":
            key = (o["trade_id"], o["version"])
            mine = not os.path.basename(path).startswith("model")
            if not events and mine and stored.get(key) != o["seq"]:
                sys.exit("%s: %s, but the store has seq %s" % (path, text.strip(), stored.get(key)))
            o["seq"] = None
        out.append(json.dumps(o, ensure_ascii=False))
    if events:
        out.sort()
    open(path + ".noseq", "w", encoding="utf-8").write("".join(l + "\n" for l in out))
PY
}

# check_model NAME INPUT...: the store s.db is the model's after INPUT... (positions exactly,
# events but for their seq) and keeps the store's invariants; the model's outcome of input I is
# NAME.I.
check_model() {
  local name=$1 args=() i
  shift
  for ((i = 0; i < $#; ++i)); do args+=(--outcomes "$TMP/$name.$i"); done
  model run "${args[@]}" --positions "$TMP/$name.positions" --events "$TMP/$name.events" "$@"
  dump_ok positions "sqlite:$TMP/s.db" "$TMP/s.positions"
  dump_ok events "sqlite:$TMP/s.db" "$TMP/s.events"
  python3 "$HERE/check_store.py" "$TMP/s.events" "$TMP/s.positions" ||
    fail "$name: the store breaks an invariant"
  check_same "$TMP/$name.positions" "$TMP/s.positions" "$name: positions"
  without_seq "$TMP/s.events" "$TMP/$name.events" "$TMP/s.events" || fail "$name: events"
  check_same "$TMP/$name.events.noseq" "$TMP/s.events.noseq" "$name: events (but for seq)"
}
check_model model1 "$TMP/k.jsonl" "$TMP/h.input"
for what in '"ACCEPTED"' '"DUPLICATE"' '"STALE"' '"conflict:' '"unknown trade"' \
  '"trade cancelled"' '"invalid:'; do
  grep -qF -- "$what" "$TMP/model1.0" || fail "the Kafka trace exercises no $what"
  grep -qF -- "$what" "$TMP/model1.1" || fail "the HTTP trace exercises no $what"
done
without_seq "$TMP/s.events" "$TMP/model1.0" "$TMP/k.outcomes" "$TMP/model1.1" "$TMP/h.outcomes" ||
  fail "an ACCEPTED outcome's seq is not the stored one"
check_same "$TMP/model1.0.noseq" "$TMP/k.outcomes.noseq" "Kafka outcomes (results topic)"
check_same "$TMP/model1.1.noseq" "$TMP/h.outcomes.noseq" "HTTP outcomes"
python3 - "$TMP/k.jsonl" "$TMP/h.input" <<'PY' ||
import json, sys
def partitions(path):
    out = set()
    for line in open(path, "rb"):
        try:
            o = json.loads(line)
            out.add((o["account"], o["book"], o["security"]))
        except Exception:
            pass
    return out
shared = partitions(sys.argv[1]) & partitions(sys.argv[2])
print("%d trade partitions got events of both feeds" % len(shared))
sys.exit(0 if shared else 1)
PY
  fail "no trade partition got events of both feeds"
echo "ok: HTTP and Kafka into one pipeline: every outcome is the model's"

# ---- 2. restarts: nothing is decided twice ---------------------------------------------------
"$MOCK" produce --brokers "$BOOT" --topic trades --mapping "$TMP/k2.map" "$TMP/k2.jsonl"
N2=$(wc -l <"$TMP/k2.map")
end_offsets "$TMP/k.map" "$TMP/k2.map"
# A small in-flight window, so that there is work left when the kill comes.
start_server two "${SERVE_ARGS[@]}" --max-in-flight 16
kill_mid_run "$TMP/s.db" g "$N2" 30 "$SERVER_PID" two "$N1"
start_server three "${SERVE_ARGS[@]}"
THREE=$SERVER_PID
wait_stored "$TMP/s.db" g 120 || fail "three: the stored offsets are not the end offsets"
stop_server "$THREE" three
grep -ah "replayed after a restart" "$TMP/three.log" >&2 || fail "three: no summary"
timeout 120 "$MOCK" dump --brokers "$BOOT" --topic outcomes --count $((N1 + N2 * 2)) \
  --timeout-ms 5000 >"$TMP/results.jsonl" || true
# Every message of the first run has its one outcome still. A later one's first outcome is the
# model's (but for seq); a re-read message decided before the kill is at or below its stream's
# mark (every decision moves it) and replayed, not reported again, so a second record of one
# message can only be the results producer's own retry of the same record. Never a DUPLICATE
# for a re-read message whose own key, or a later re-send's, was ACCEPTED. The kill may lose
# outcome messages altogether (notifications, not the record: the store is checked above).
check_model model2 "$TMP/k.jsonl" "$TMP/h.input" "$TMP/k2.jsonl"
python3 - "$TMP/results.jsonl" "$TMP/k.map" "$TMP/k2.map" "$TMP/model2.0" "$TMP/model2.2" <<'PY' ||
import json, sys
results = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
def lines(path):
    return [json.loads(l) for l in open(path, encoding="utf-8")]
def at(map_path, model_path):
    m = {o["line"]: o for o in lines(model_path)}
    return {(int(p), int(o)): m[int(l)] for l, p, o in (x.split() for x in open(map_path))}
first, second = at(sys.argv[2], sys.argv[4]), at(sys.argv[3], sys.argv[5])
got = {}
for r in results:
    got.setdefault((r["partition"], r["offset"]), []).append(r)
errors = []
def same(r, want):
    return (r["outcome"], r["trade_id"], r["version"]) == (want["outcome"], want["trade_id"], want["version"]) \
        and (r["reason"] == want["reason"] or r["reason"].split(":")[0] == want["reason"].split(":")[0])
for key, want in first.items():
    if len(got.get(key, [])) != 1:
        errors.append("first run %s: %d outcomes" % (key, len(got.get(key, []))))
repeats = lost = 0
for key, want in second.items():
    rs = got.get(key, [])
    if not rs:
        lost += 1  # decided before the kill, its outcome message not sent: re-read as replayed
        continue
    if not same(rs[0], want):
        errors.append("second run %s: %s, the model says %s" % (key, rs[0], want))
    for r in rs[1:]:
        repeats += 1
        if not same(r, rs[0]):
            errors.append("second run %s: repeated as %s after %s" % (key, r, rs[0]))
for e in errors[:10]:
    print(e, file=sys.stderr)
print("results topic: %d records; after the kill %d outcomes repeated, %d lost" %
      (len(results), repeats, lost))
sys.exit(1 if errors else 0)
PY
  fail "the results topic after the restarts"
echo "ok: HTTP and Kafka restarts"

# ---- 3. the Kafka source fails, then SIGTERM: still one drain --------------------------------
# A static member (group.instance.id) whose heartbeats the broker answers FENCED_INSTANCE_ID gets
# a fatal Kafka error: serve drains the gateway and will exit 69. A SIGTERM during that drain is
# the operator's first signal: the request being read is still answered (not cut off as by a
# second signal), and the exit code still says that the source failed.
start_server four --store "sqlite:$TMP/f.db" --brokers "$BOOT" --topic trades --group f \
  --kafka-config session.timeout.ms=3000 --kafka-config heartbeat.interval.ms=200 \
  --kafka-config group.instance.id=member-four --progress-interval-ms 0
FOUR=$SERVER_PID
for _ in $(seq 300); do grep -q "assigned trades" "$TMP/four.log" && break; sleep 0.1; done
grep -q "assigned trades" "$TMP/four.log" || { cat "$TMP/four.log" >&2; fail "four: no assignment"; }
client kafka-fail-drain "$PORT" "$FOUR" "$TMP/mock.in" "$TMP/four.log"
rc=0
timeout 60 tail --pid="$FOUR" -f /dev/null || fail "four did not exit within 60 s"
wait "$FOUR" || rc=$?
((rc == 69)) || { tail -n 20 "$TMP/four.log" >&2; fail "four exited $rc, not 69 (source failed)"; }
grep -q "signal 15 again" "$TMP/four.log" && fail "four took its first SIGTERM for a second one"
echo "ok: http + kafka"
