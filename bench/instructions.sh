#!/usr/bin/env bash
# Instructions per proxied read, counted by valgrind's callgrind: unlike seconds, the count does not move with
# whatever else the machine is doing, so two builds can be compared on a busy machine. Starts example-kv and a
# one-node tandem under callgrind (and, for comparison, haproxy under callgrind), warms up, then counts only
# while bench/fixed-load.py sends exactly REQUESTS GETs over CONNECTIONS keep-alive connections.
# Counts user-space instructions only (the kernel's share is not seen by valgrind); the count per request also
# depends on how many requests share a loop turn, so compare runs at the same connection count.
# Usage: BIN=<dir with tandem and example-kv> bench/instructions.sh [connections] [requests] [tandem|haproxy|both]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-50}
REQUESTS=${2:-5000}
WHICH=${3:-tandem}
source bench/lib.sh
bench_binaries
source scripts/lib.sh
command -v valgrind >/dev/null || bench_install valgrind

start_app app
curl -s -X PUT "http://127.0.0.1:$APP_PORT/kv/bench" --data "$(head -c 128 /dev/zero | tr '\0' 'v')" >/dev/null

count() { # label port pid callgrind-out
  local label=$1 port=$2 pid=$3 out=$4
  for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/kv/bench")" = 200 ] && break
    sleep 0.1
  done
  python3 bench/fixed-load.py 127.0.0.1 "$port" /kv/bench "$CONNECTIONS" 500 >/dev/null
  callgrind_control --zero "$pid" >/dev/null 2>&1
  python3 bench/fixed-load.py 127.0.0.1 "$port" /kv/bench "$CONNECTIONS" "$REQUESTS" >/dev/null
  callgrind_control --dump "$pid" >/dev/null 2>&1
  sleep 0.5
  local events
  events=$(cat "$out".* 2>/dev/null | awk '/^summary:/ {s += $2} END {print s}')
  echo "$label: $((events / REQUESTS)) instructions per request ($REQUESTS requests over $CONNECTIONS connections)"
}

if [ "$WHICH" != haproxy ]; then
  start_tandem_under_callgrind
  count tandem "$CLIENT_PORT" "$TPID" "$WORKDIR/tandem.cg"
  echo "  per function: callgrind_annotate $WORKDIR/tandem.cg.1 (kept with KEEP_LOGS=1)"
fi
if [ "$WHICH" != tandem ]; then
  HAPROXY_PORT=$(free_port)
  haproxy_reverse_proxy_config "$HAPROXY_PORT" "$APP_PORT" >"$WORKDIR/haproxy.cfg"
  valgrind --tool=callgrind --callgrind-out-file="$WORKDIR/haproxy.cg" haproxy -f "$WORKDIR/haproxy.cfg" -db \
    >"$WORKDIR/haproxy.log" 2>&1 &
  HPID=$!
  PIDS+=("$HPID")
  count haproxy "$HAPROXY_PORT" "$HPID" "$WORKDIR/haproxy.cg"
fi
