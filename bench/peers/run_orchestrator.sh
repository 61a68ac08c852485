#!/usr/bin/env bash
# W1/W2 for Orchestrator (our server), through its SDK as a user would use it:
# the server (`orchestrator serve`, SQLite in WAL by default, BENCH_DATABASE=
# postgres for a fresh PostgreSQL database per run), one worker
# (`orchestrator worker peer_orchestrator:make_worker`, BENCH_CONC slots), then
# the client. ORCH_REPO is the project's checkout (its .venv runs everything,
# its bench package is importable).
# Stops only what it started: the worker (lib.sh), then the server, by pid.
source "$(dirname "$0")/lib.sh"
: "${ORCH_REPO:?set ORCH_REPO to the project checkout (make bench-peers does)}"
ORCH_PYTHON="$ORCH_REPO/.venv/bin/python"
export PYTHONPATH="$PYTHONPATH:$ORCH_REPO"
export BENCH_DATABASE=${BENCH_DATABASE:-sqlite}
export BENCH_ADMIN_USERNAME=admin BENCH_ADMIN_PASSWORD=bench-password-1
cd "$HERE"

# The server's settings come from here only, never from the calling shell.
for v in $(compgen -e); do
  case "$v" in ORCHESTRATOR_*|DATABASE_URL|JWT_*|MAX_CONNECTIONS|STREAM_BUFFER_SIZE) unset "$v";; esac
done
_DB=""
drop_db() {
  [ -n "$_DB" ] || return 0
  PGOPTIONS="-c client_min_messages=warning" psql -q "$PG_DSN_ADMIN" \
    -c "DROP DATABASE IF EXISTS $_DB WITH (FORCE)" >/dev/null
}
if [ "$BENCH_DATABASE" = postgres ]; then
  ensure_pg
  _DB=peers_orchestrator   # fresh per run: no leftover rows or planner statistics
  drop_db
  psql -q "$PG_DSN_ADMIN" -c "CREATE DATABASE $_DB" >/dev/null
  DATABASE_URL="postgresql://postgres@127.0.0.1:5432/$_DB"
else
  DATABASE_URL="sqlite:$BENCH_DIR/orchestrator.db"
fi

_SERVER_PID=""
stop_server() {
  [ -n "$_SERVER_PID" ] || return 0
  kill -TERM "$_SERVER_PID" 2>/dev/null
  for _ in $(seq 150); do kill -0 "$_SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$_SERVER_PID" 2>/dev/null
  wait "$_SERVER_PID" 2>/dev/null
  log "server pid $_SERVER_PID stopped"
  _SERVER_PID=""
}
# Anything our server or worker said at WARNING or above goes with the run's
# stderr (lib.sh removes BENCH_DIR and its logs on exit).
report_logs() {
  for f in server worker; do
    [ -f "$BENCH_DIR/$f.log" ] || continue
    grep -E ' (WARNING|ERROR|CRITICAL) |Traceback' "$BENCH_DIR/$f.log" | sed "s/^/[$f] /" >&2
  done
  return 0
}
trap 'stop_worker; stop_server; report_logs; drop_db; cleanup' EXIT

# INFO: the `listening on HOST:PORT` line (the port ORCHESTRATOR_PORT=0 got)
# is an INFO line; the server logs nothing per task at INFO.
setsid env ORCHESTRATOR_HOST=127.0.0.1 ORCHESTRATOR_PORT=0 DATABASE_URL="$DATABASE_URL" \
  JWT_SECRET=bench-jwt-secret-0123456789-abcdefghijkl \
  ORCHESTRATOR_ADMIN_USERNAME=$BENCH_ADMIN_USERNAME ORCHESTRATOR_ADMIN_PASSWORD=$BENCH_ADMIN_PASSWORD \
  ORCHESTRATOR_LOG_LEVEL=INFO ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS=2 \
  "$ORCH_PYTHON" -m orchestrator serve >"$BENCH_DIR/server.log" 2>&1 &
_SERVER_PID=$!
PORT=""
for _ in $(seq 600); do
  PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]\+\).*/\1/p' "$BENCH_DIR/server.log" | head -1)
  [ -n "$PORT" ] && break
  kill -0 "$_SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$PORT" ]; then
  log "server did not start:"; tail -20 "$BENCH_DIR/server.log" >&2
  echo "{\"peer\": \"orchestrator-$BENCH_DATABASE\", \"error\": \"server did not start\"}"
  exit 1
fi
export ORCHESTRATOR_URL="127.0.0.1:$PORT"
log "server pid $_SERVER_PID on $ORCHESTRATOR_URL ($BENCH_DATABASE)"

ORCHESTRATOR_TOKEN=$("$ORCH_PYTHON" peer_orchestrator.py token) || exit 1
# WARNING: the worker logs every task at INFO.
ORCHESTRATOR_TOKEN=$ORCHESTRATOR_TOKEN ORCHESTRATOR_LOG_LEVEL=WARNING \
  start_worker "$ORCH_REPO/.venv/bin/orchestrator" worker peer_orchestrator:make_worker --slots "$BENCH_CONC"
export BENCH_SERVER_PID=$_SERVER_PID BENCH_WORKER_PID=$_WORKER_PID
"$ORCH_PYTHON" peer_orchestrator.py
