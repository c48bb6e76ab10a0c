#!/usr/bin/env bash
# The gateway `tradecapture serve` (spec section 5) over real sockets, part 1: outcomes of
# adversarial traces sent as a JSON array, as NDJSON and as single-event POSTs equal the
# independent model's and, byte for byte, the `replay --outcomes` lines; positions and trades read
# back over HTTP equal the model's; every status code (400, 404, 405, 413, 415, 431); hostile
# bodies (100k-deep nesting, 10 MB strings, invalid UTF-8, 100,000 events in one body);
# keep-alive, pipelining, 100-continue, chunked bodies. Part 2 is http_lifecycle.sh; the HTTP
# side of both is tests/cli/http_client.py.
source "$(dirname "$0")/common.bash" "$1"
source "$HERE/http_common.bash"

# ---- 1. model conformance: the same traces as a JSON array, as NDJSON, as single POSTs --------
gen --seed 4101 --lines 2000 --crlf 0 --out "$TMP/a.jsonl"
gen --seed 4102 --lines 2000 --bom --crlf 0.3 --out "$TMP/b.jsonl"
gen --seed 4103 --lines 350 --crlf 0 --no-whale --out "$TMP/c.jsonl"

start_server main --store "sqlite:$TMP/main.db" --threads 2 --max-body-bytes $((48 << 20))
MAIN_PID=$SERVER_PID
MAIN_PORT=$PORT
client post-array "$MAIN_PORT" "$TMP/a.jsonl" "$TMP/a"
client post-ndjson "$MAIN_PORT" "$TMP/b.jsonl" "$TMP/b"
client post-singles "$MAIN_PORT" "$TMP/c.jsonl" "$TMP/c"

# The independent model, one replay after the other into one store, as the server saw them.
model run --outcomes "$TMP/model.a" --outcomes "$TMP/model.b" --outcomes "$TMP/model.c" \
  --positions "$TMP/model.positions" --events "$TMP/model.events" \
  "$TMP/a.input" "$TMP/b.input" "$TMP/c.input"
for what in '"ACCEPTED"' '"DUPLICATE"' '"STALE"' '"conflict:' '"unknown trade"' \
  '"trade cancelled"' '"invalid:' '"out of range'; do
  grep -qF -- "$what" "$TMP/model.a" || fail "the array trace exercises no $what"
done
check_same "$TMP/model.a" "$TMP/a.outcomes" "JSON array outcomes"
check_same "$TMP/model.b" "$TMP/b.outcomes" "NDJSON outcomes"
check_same "$TMP/model.c" "$TMP/c.outcomes" "single-event POST outcomes"

# Byte for byte what `replay --outcomes` writes for the same inputs, in the same order.
replay_ok --store "sqlite:$TMP/replay.db" --outcomes "$TMP/replay.a" "$TMP/a.input"
replay_ok --store "sqlite:$TMP/replay.db" --outcomes "$TMP/replay.b" "$TMP/b.input"
replay_ok --store "sqlite:$TMP/replay.db" --outcomes "$TMP/replay.c" "$TMP/c.input"
client expect-bodies array "$TMP/replay.a" "$TMP/a"
client expect-bodies ndjson "$TMP/replay.b" "$TMP/b"
client expect-bodies singles "$TMP/replay.c" "$TMP/c"

# Reading back: positions (all, filtered) and trades by id.
client positions "$MAIN_PORT" "$TMP/http.positions"
check_same "$TMP/model.positions" "$TMP/http.positions" "GET /v1/positions"
client check-position-filters "$MAIN_PORT" "$TMP/model.positions"
client check-trades-by-id "$MAIN_PORT" "$TMP/model.events"
dump_ok events "sqlite:$TMP/main.db" "$TMP/main.events"
check_same "$TMP/model.events" "$TMP/main.events" "the store's events (read while serving)"

# ---- 2. status codes, hostile bodies, connection handling ------------------------------------
client check-status "$MAIN_PORT" -
client check-connection "$MAIN_PORT"
client check-conventions "$MAIN_PORT"
stop_server "$MAIN_PID" main

echo "PASS http_api"
