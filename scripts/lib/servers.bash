# Throwaway PostgreSQL and Redis servers for shell tests and benchmarks (source this file).
# Each server gets a temporary directory, 127.0.0.1 and a free port; tc_stop_servers stops them
# by PID. A server that cannot start makes the caller fail loudly (with its log).
#
#   source scripts/lib/servers.bash
#   trap tc_stop_servers EXIT
#   tc_start_redis            # sets TC_REDIS_PORT, TC_REDIS_URI
#   tc_start_postgres         # sets TC_PG_PORT, TC_PG_URI
#   tc_restart_redis; tc_restart_postgres

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
TC_SERVERS_DIR=${TC_SERVERS_DIR:-$(mktemp -d /tmp/tc-servers-XXXXXX)}
chmod 755 "$TC_SERVERS_DIR"

tc_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

tc_wait_port() {  # port pid name log
  local port=$1 pid=$2 name=$3 log=$4 i
  for i in $(seq 1 500); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.02
  done
  echo "FATAL: $name did not start on 127.0.0.1:$port; its log:" >&2
  cat "$log" >&2 || true
  return 1
}

tc_as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

tc_start_redis() {
  TC_REDIS_DIR=$TC_SERVERS_DIR/redis
  mkdir -p "$TC_REDIS_DIR"
  TC_REDIS_PORT=${TC_REDIS_PORT:-$(tc_free_port)}
  redis-server --port "$TC_REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$TC_REDIS_DIR" --daemonize no >>"$TC_REDIS_DIR/redis.log" 2>&1 &
  TC_REDIS_PID=$!
  tc_wait_port "$TC_REDIS_PORT" "$TC_REDIS_PID" redis-server "$TC_REDIS_DIR/redis.log"
  TC_REDIS_URI="redis://127.0.0.1:$TC_REDIS_PORT"
  export TC_REDIS_PORT TC_REDIS_URI TC_REDIS_PID
}

tc_stop_redis() {
  if [ -n "${TC_REDIS_PID:-}" ]; then
    kill "$TC_REDIS_PID" 2>/dev/null || true
    wait "$TC_REDIS_PID" 2>/dev/null || true
    TC_REDIS_PID=
  fi
}

tc_restart_redis() { tc_stop_redis; tc_start_redis; }

tc_start_postgres() {
  TC_PG_DIR=$TC_SERVERS_DIR/pg
  if [ ! -d "$TC_PG_DIR/data" ]; then
    mkdir -p "$TC_PG_DIR"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$TC_PG_DIR"
    tc_as_postgres "$PG_BIN/initdb" -D "$TC_PG_DIR/data" -A trust -U postgres --no-sync \
      -E UTF8 --locale=C >"$TC_SERVERS_DIR/initdb.log" 2>&1 || {
      echo "FATAL: initdb failed:" >&2; cat "$TC_SERVERS_DIR/initdb.log" >&2; return 1; }
    TC_PG_FRESH=1
  fi
  TC_PG_PORT=${TC_PG_PORT:-$(tc_free_port)}
  local as=()
  [ "$(id -u)" -ne 0 ] || as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  # Started directly (no shell function in between) so that $! is the postmaster's PID.
  "${as[@]}" "$PG_BIN/postgres" -D "$TC_PG_DIR/data" -p "$TC_PG_PORT" -k "$TC_PG_DIR" \
    -c listen_addresses=127.0.0.1 -c max_connections=200 >>"$TC_SERVERS_DIR/postgres.log" 2>&1 &
  TC_PG_PID=$!
  tc_wait_port "$TC_PG_PORT" "$TC_PG_PID" postgres "$TC_SERVERS_DIR/postgres.log"
  local i
  for i in $(seq 1 200); do
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$TC_PG_PORT" -U postgres && break
    sleep 0.05
  done
  if [ "${TC_PG_FRESH:-0}" = 1 ]; then
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$TC_PG_PORT" -U postgres tradecapture
    TC_PG_FRESH=0
  fi
  TC_PG_URI="postgresql://postgres@127.0.0.1:$TC_PG_PORT/tradecapture"
  export TC_PG_PORT TC_PG_URI TC_PG_PID
}

tc_stop_postgres() {
  if [ -n "${TC_PG_PID:-}" ]; then
    kill -INT "$TC_PG_PID" 2>/dev/null || true
    wait "$TC_PG_PID" 2>/dev/null || true
    TC_PG_PID=
  fi
}

tc_restart_postgres() { tc_stop_postgres; tc_start_postgres; }

tc_psql() { psql -X -q -A -t -h 127.0.0.1 -p "$TC_PG_PORT" -U postgres -d tradecapture "$@"; }

tc_stop_servers() {
  tc_stop_redis
  tc_stop_postgres
  rm -rf "$TC_SERVERS_DIR"
}
