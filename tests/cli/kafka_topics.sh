#!/usr/bin/env bash
# `tradecapture consume` with two topics that carry events of the same trade partitions, against
# librdkafka's mock cluster (a tradecapture-kafka-mock process). Each topic has trades of its own
# (NEW, AMENDs, CANCEL in version order, plus exact resends) over 20 shared trade partitions, so
# every first copy must be ACCEPTED whatever the interleaving of the two topics, and every resend
# is DUPLICATE. Two members consume into one SQLite store; one is killed with SIGKILL mid-run and
# restarted. Then: no valid event was rejected, each produced event is stored exactly once with
# its content, in each trade partition the events of each Kafka partition are in production
# order, the positions are the model's, and the stored offsets are the end offsets.
source "$(dirname "$0")/common.bash" "$1"

source "$HERE/kafka_common.bash"

start_mock_cluster --brokers 3 --topic t1:4:2 --topic t2:3

# ---- the traces ------------------------------------------------------------------------------
python3 - "$TMP" <<'PY'
import json, random, sys
tmp = sys.argv[1]
keys = [("ACC%d" % (i % 4), "B_C" if i % 2 else "EQ", "SEC%d" % i) for i in range(20)]
def trace(topic, seed, n):
    rng = random.Random(seed)
    out, open_, next_id = [], [], 0
    def emit(t, typ):
        a, b, s = keys[t["k"]]
        e = {"trade_id": t["id"], "version": t["v"], "type": typ, "account": a, "book": b,
             "security": s}
        if typ != "CANCEL":
            e.update(side=rng.choice(["BUY", "SELL"]),
                     quantity="%d%s" % (rng.randint(1, 500), rng.choice(["", ".25"])),
                     price="%d.%02d" % (rng.randint(1, 99), rng.randint(0, 99)))
        out.append(json.dumps(e))
    while len(out) < n:
        r = rng.randrange(100)
        if r < 35 or not open_:
            t = {"id": "%s-T%d" % (topic, next_id), "k": rng.randrange(len(keys)), "v": 1}
            next_id += 1
            emit(t, "NEW")
            open_.append(t)
        elif r < 80:
            t = rng.choice(open_)
            t["v"] += 1
            emit(t, "AMEND")
        elif r < 88:
            t = open_.pop(rng.randrange(len(open_)))
            t["v"] += 1
            emit(t, "CANCEL")
        else:
            out.append(rng.choice(out))  # an exact resend: DUPLICATE
    with open("%s/%s.jsonl" % (tmp, topic), "w") as f:
        f.write("\n".join(out) + "\n")
trace("t1", 901, 2000)
trace("t2", 902, 2000)
PY
for t in t1 t2; do
  "$MOCK" produce --brokers "$BOOT" --topic "$t" --mapping "$TMP/$t.map" "$TMP/$t.jsonl"
done
N=$(($(wc -l <"$TMP/t1.map") + $(wc -l <"$TMP/t2.map")))
# Every event is accepted whatever the order of the topics: the model's positions of one order
# are the positions of every order.
cat "$TMP/t1.jsonl" "$TMP/t2.jsonl" >"$TMP/all.jsonl"
model run --outcomes "$TMP/model.outcomes" --positions "$TMP/model.positions" "$TMP/all.jsonl"
python3 - "$TMP/model.outcomes" <<'PY' || fail "the traces are not all ACCEPTED/DUPLICATE"
import json, sys
kinds = {json.loads(l)["outcome"] for l in open(sys.argv[1])}
assert kinds == {"ACCEPTED", "DUPLICATE"}, kinds
PY

# "TOPIC PARTITION END" per Kafka partition, from the produce mappings.
for t in t1 t2; do
  awk -v t="$t" '{ if ($3 + 1 > e[$2]) e[$2] = $3 + 1 } END { for (p in e) print t, p, e[p] }' \
    "$TMP/$t.map"
done | sort >"$TMP/end.offsets"

stored_offsets() {
  { sqlite3 "$1" "SELECT topic, partition, next_offset FROM source_offsets WHERE consumer = '$2' \
    ORDER BY topic, partition" 2>/dev/null || true; } | tr '|' ' ' | sort
}

# Small batches and in-flight windows so that there is work left when the kill comes. Without a
# results topic every REJECTED outcome is a warning in the log.
CONSUME_ARGS=(--brokers "$BOOT" --topic t1 --topic t2 --group g --store "sqlite:$TMP/topics.db"
  --kafka-config session.timeout.ms=3000 --kafka-config heartbeat.interval.ms=200
  --progress-interval-ms 0 --batch 2 --max-in-flight 16 --threads 2 --log-level warn)

"$TC" consume "${CONSUME_ARGS[@]}" 2>"$TMP/a.err" &
A=$!
PIDS+=($A)
"$TC" consume "${CONSUME_ARGS[@]}" 2>"$TMP/b.err" &
B=$!
PIDS+=($B)
kill_mid_run "$TMP/topics.db" g "$N" 60 "$A" A
sleep 1
"$TC" consume "${CONSUME_ARGS[@]}" 2>"$TMP/a2.err" &
A2=$!
PIDS+=($A2)
wait_stored "$TMP/topics.db" g 180 || fail "the stored offsets are not the end offsets"
stop_ok "$A2" a2
stop_ok "$B" b
grep -ah "replayed after a restart" "$TMP/b.err" "$TMP/a2.err" >&2 || true
if grep -ah "REJECTED" "$TMP/a.err" "$TMP/b.err" "$TMP/a2.err" >"$TMP/rejected.txt"; then
  head -n 5 "$TMP/rejected.txt" >&2
  fail "$(wc -l <"$TMP/rejected.txt") valid events were REJECTED"
fi

dump_ok positions "sqlite:$TMP/topics.db" "$TMP/topics.positions"
dump_ok events "sqlite:$TMP/topics.db" "$TMP/topics.events"
python3 "$HERE/check_store.py" "$TMP/topics.events" "$TMP/topics.positions" ||
  fail "the store breaks an invariant"
check_same "$TMP/model.positions" "$TMP/topics.positions" "two topics: positions"
python3 - "$TMP" <<'PY' || fail "the stored events are not the produced ones, once each, in order"
import decimal, json, sys
tmp = sys.argv[1]
D = decimal.Decimal
produced = {}  # (trade_id, version) -> (event, topic, partition, offset), first copy
for t in ("t1", "t2"):
    lines = open("%s/%s.jsonl" % (tmp, t)).read().split("\n")
    for m in open("%s/%s.map" % (tmp, t)):
        line, part, off = map(int, m.split())
        e = json.loads(lines[line - 1])
        produced.setdefault((e["trade_id"], e["version"]), (e, t, part, off))
stored, last, errors = set(), {}, []
for text in open("%s/topics.events" % tmp):
    s = json.loads(text)
    key = (s["trade_id"], s["version"])
    if key in stored:
        errors.append("stored twice: %s" % (key,))
    stored.add(key)
    if key not in produced:
        errors.append("never produced: %s" % (key,))
        continue
    e, topic, part, off = produced[key]
    same = all(s[f] == e[f] for f in ("type", "account", "book", "security"))
    if e["type"] != "CANCEL":
        same = same and s["side"] == e["side"] and D(s["quantity"]) == D(e["quantity"]) \
            and D(s["price"]) == D(e["price"])
    if not same:
        errors.append("other content: %s" % (key,))
    # Within a trade partition (the events come sorted by partition, then seq), each Kafka
    # partition's events in production order.
    src = (s["account"], s["book"], s["security"], topic, part)
    if src in last and last[src] >= off:
        errors.append("out of order in %s: offset %d after %d" % (src, off, last[src]))
    last[src] = off
missing = set(produced) - stored
if missing:
    errors.append("%d produced events not stored, e.g. %s" % (len(missing), sorted(missing)[:3]))
shared = {}
for (e, topic, _, _) in produced.values():
    shared.setdefault((e["account"], e["book"], e["security"]), set()).add(topic)
if not any(len(t) == 2 for t in shared.values()):
    errors.append("no trade partition got events from both topics")
for e in errors[:10]:
    print(e, file=sys.stderr)
print("stored %d events, %d produced (first copies)" % (len(stored), len(produced)))
sys.exit(1 if errors else 0)
PY
echo "ok: kafka topics"
