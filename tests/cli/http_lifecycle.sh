#!/usr/bin/env bash
# The gateway `tradecapture serve` over real sockets, part 2: bearer tokens; slow and idle
# clients, the connection limit and a chunked body over the limit; back-pressure (a request is
# refused whole with 503 + Retry-After, nothing applied); a big request racing SIGTERM (a complete
# 200 or a clean 503, exit 0, and the store holds exactly the ACCEPTED events); configuration by
# environment variables and --help. Part 1 is http_api.sh.
source "$(dirname "$0")/common.bash" "$1"
source "$HERE/http_common.bash"

# ---- 1. bearer token ----------------------------------------------------------------------
printf 's3cr3t-t0ken\n' >"$TMP/token"
TRADECAPTURE_AUTH_TOKEN_FILE="$TMP/token" start_server auth --store memory:
client check-auth "$PORT" s3cr3t-t0ken
client check-status "$PORT" s3cr3t-t0ken light >/dev/null
echo "ok: every status-code check also passes with a bearer token"
stop_server "$SERVER_PID" auth

# ---- 2. timeouts, connection limit, chunked body limit --------------------------------------
start_server limits --store memory: --read-timeout-ms 1500 --idle-timeout-ms 2000 \
  --max-connections 6 --max-body-bytes 1048576
client check-timeouts "$PORT" 1500 2000 6 1048576
grep -q "not read within 1500 ms" "$TMP/limits.log" || fail "no log line for the slow client"
stop_server "$SERVER_PID" limits

# ---- 3. back-pressure: whole requests refused with 503 --------------------------------------
start_server overload --store memory: --max-in-flight 1
client check-overload "$PORT"
stop_server "$SERVER_PID" overload

# ---- 4. a big request racing SIGTERM ----------------------------------------------------
for mode in after-body mid-body in-flight; do
  # Small batches make the in-flight request last long enough to be caught by /metrics.
  start_server "drain-$mode" --store "sqlite:$TMP/drain-$mode.db" --batch 16
  client drain-race "$PORT" "$SERVER_PID" "$mode" "$TMP/drain-$mode.accepted"
  wait_exit "$SERVER_PID" "drain-$mode"
  dump_ok events "sqlite:$TMP/drain-$mode.db" "$TMP/drain-$mode.events"
  python3 -c '
import json, sys
stored = sorted("%s %d" % (e["trade_id"], e["version"]) for e in map(json.loads, open(sys.argv[1])))
reported = sorted(l.strip() for l in open(sys.argv[2]) if l.strip())
if stored != reported:
    sys.exit("FAIL: the store holds %d events, the response reported %d ACCEPTED" % (len(stored), len(reported)))
print("ok: the store holds exactly the %d events reported ACCEPTED" % len(stored))
' "$TMP/drain-$mode.events" "$TMP/drain-$mode.accepted"
done

# ---- 5. configuration from the environment, and --help ------------------------------------------
"$TC" serve --help >"$TMP/help" 2>&1 || fail "serve --help exited non-zero"
for w in --listen --store --lock --threads --max-in-flight --batch --instance-id --lease-ms \
  --log-level --http-threads --max-connections --max-body-bytes --idle-timeout-ms \
  --read-timeout-ms --auth-token-file --port-file TRADECAPTURE_LISTEN TRADECAPTURE_STORE \
  "POST /v1/trades" "GET  /v1/positions" /health/ready /metrics 127.0.0.1:8080; do
  grep -qF -- "$w" "$TMP/help" || fail "serve --help does not mention $w"
done
echo "ok: serve --help documents the flags, environment variables and endpoints"
TRADECAPTURE_LISTEN=127.0.0.1:0 TRADECAPTURE_STORE="sqlite:$TMP/env.db" \
  TRADECAPTURE_PORT_FILE="$TMP/env.port" "$TC" serve 2>"$TMP/env.log" &
SERVER_PID=$!
SERVER_PIDS+=("$SERVER_PID")
for i in $(seq 1 750); do [[ -s $TMP/env.port ]] && break; sleep 0.02; done
[[ -s $TMP/env.port ]] || { cat "$TMP/env.log" >&2; fail "serve configured by environment did not start"; }
python3 - "$(cat "$TMP/env.port")" <<'EOF'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
c.request("POST", "/v1/trades", body=json.dumps({"trade_id": "ENV1", "version": 1, "type": "NEW",
          "account": "A", "book": "B", "security": "S", "side": "BUY", "quantity": "1", "price": "1"}),
          headers={"Content-Type": "application/json"})
r = c.getresponse()
assert r.status == 200 and json.loads(r.read())["outcomes"][0]["outcome"] == "ACCEPTED", r.status
EOF
kill -INT "$SERVER_PID"
wait_exit "$SERVER_PID" env
dump_ok events "sqlite:$TMP/env.db" "$TMP/env.events"
grep -q '"ENV1"' "$TMP/env.events" || fail "TRADECAPTURE_STORE was not used"
echo "ok: TRADECAPTURE_LISTEN/STORE/PORT_FILE configure serve; SIGINT drains and exits 0"

echo "PASS http_lifecycle"
