#!/usr/bin/env bash
# Helpers shared by the demo and benchmark scripts: start processes on free ports, remember their PIDs, and
# stop exactly those PIDs on exit (never by name).

PIDS=()
WORKDIR=$(mktemp -d -t tandem-XXXXXX)

cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.3
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -n "${KEEP_LOGS:-}" ]; then echo "logs kept in $WORKDIR" >&2; else rm -rf "$WORKDIR"; fi
}
trap cleanup EXIT

# wait_for_line FILE PATTERN: waits up to WAIT_FOR_LINE_SECONDS (default 20) for PATTERN in FILE, prints the first
# matching line.
wait_for_line() {
  local file=$1 pattern=$2
  for _ in $(seq 1 $(( ${WAIT_FOR_LINE_SECONDS:-20} * 20 ))); do
    if grep -q "$pattern" "$file" 2>/dev/null; then grep -m1 "$pattern" "$file"; return 0; fi
    sleep 0.05
  done
  echo "timed out waiting for '$pattern' in $file:" >&2
  cat "$file" >&2
  return 1
}

# start_app NAME: starts example-kv on a free port; sets APP_PORT and APP_PID.
start_app() {
  local log="$WORKDIR/$1.log"
  # EXAMPLE_KV_ARGS: more options for every app (a benchmark with huge snapshots lengthens --idle-timeout).
  # shellcheck disable=SC2086
  "$BIN/example-kv" --port 0 ${EXAMPLE_KV_ARGS:-} >"$log" 2>&1 &
  APP_PID=$!
  disown "$APP_PID"  # no job-control notices when the demo kills it on purpose
  PIDS+=("$APP_PID")
  APP_PORT=$(wait_for_line "$log" "listening on" | sed 's/.*://')
}

# start_tandem NAME UPSTREAM_PORT [VAR=VALUE ...]: starts tandem on free ports; sets CLIENT_PORT, ADMIN_PORT, TANDEM_PID.
# RUN_TANDEM_UNDER, if set, is the command (words split on spaces) that runs the binary, e.g. a profiler (not a
# TANDEM_ name: tandem refuses variables of its prefix that it does not know).
start_tandem() {
  local name=$1 upstream=$2
  shift 2
  local log="$WORKDIR/$name.log"
  # shellcheck disable=SC2086
  env TANDEM_LISTEN=127.0.0.1:0 TANDEM_ADMIN_LISTEN=127.0.0.1:0 TANDEM_PEER_LISTEN=127.0.0.1:0 \
    TANDEM_UPSTREAM="127.0.0.1:$upstream" TANDEM_LOG_FORMAT=json TANDEM_NODE_ID="$name" \
    TANDEM_DATA_DIR="$WORKDIR/$name-data" "$@" ${RUN_TANDEM_UNDER:-} "$BIN/tandem" >"$log" 2>&1 &
  TANDEM_PID=$!
  disown "$TANDEM_PID"
  PIDS+=("$TANDEM_PID")
  local line
  line=$(wait_for_line "$log" '"msg":"listening"')
  CLIENT_PORT=$(echo "$line" | sed 's/.*"client":"[^"]*:\([0-9]*\)".*/\1/')
  ADMIN_PORT=$(echo "$line" | sed 's/.*"admin":"[^"]*:\([0-9]*\)".*/\1/')
}
