# Shared set-up of the gateway tests http_api.sh and http_lifecycle.sh (sourced after
# common.bash; not run by CTest, which runs only *.sh): start and stop `tradecapture serve` on a
# free loopback port, and the HTTP client tests/cli/http_client.py.

client() { timeout 300 python3 "$HERE/http_client.py" "$@"; }

SERVER_PIDS=()
cleanup() {
  kill_all "${SERVER_PIDS[@]}"
  rm -rf "$TMP"
}
trap cleanup EXIT

# start_server NAME ARGS...: starts `tradecapture serve` on a free loopback port; sets PORT and
# SERVER_PID. Fails loudly (with the server's log) when it does not come up within 15 s.
start_server() {
  local name=$1 i
  shift
  rm -f "$TMP/$name.port"
  "$TC" serve --listen 127.0.0.1:0 --port-file "$TMP/$name.port" "$@" 2>"$TMP/$name.log" &
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
  for i in $(seq 1 750); do
    [[ -s $TMP/$name.port ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/$name.log" >&2; fail "serve ($name) exited at start"; }
    sleep 0.02
  done
  [[ -s $TMP/$name.port ]] || { cat "$TMP/$name.log" >&2; fail "serve ($name) did not start within 15 s"; }
  PORT=$(cat "$TMP/$name.port")
  grep -q "listening on 127.0.0.1:$PORT\$" "$TMP/$name.log" ||
    { cat "$TMP/$name.log" >&2; fail "serve ($name) did not log 'listening on 127.0.0.1:$PORT'"; }
  echo "ok: serve ($name) listening on 127.0.0.1:$PORT"
}

# wait_exit PID NAME: the server must exit 0 within 30 s (after a SIGTERM sent by the caller).
wait_exit() {
  local pid=$1 name=$2 i rc=0
  for i in $(seq 1 1500); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    cat "$TMP/$name.log" >&2
    fail "serve ($name) did not exit within 30 s of SIGTERM"
  fi
  wait "$pid" || rc=$?
  [[ $rc -eq 0 ]] || { cat "$TMP/$name.log" >&2; fail "serve ($name) exited $rc after SIGTERM"; }
  echo "ok: serve ($name) drained and exited 0"
}

stop_server() {  # PID NAME
  kill -TERM "$1"
  wait_exit "$1" "$2"
}

