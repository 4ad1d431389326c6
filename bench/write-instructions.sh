#!/usr/bin/env bash
# Instructions per replicated write, counted by valgrind's callgrind: one tandem (a one-node cluster, WAL with fsync)
# in front of example-kv, wrk sending PUT /kv/<random key> with a 256-byte body (bench/put-kv.lua, the write of
# scripts/bench-writes.sh) for SECONDS after a 5 s warm-up. The count is the whole process's (loop, timers and the
# disk thread included) divided by the writes done, so it ranks two builds on a busy machine the way
# bench/instructions.sh does for reads; compare runs with the same connections and seconds.
# Usage: BIN=<dir with tandem and example-kv> bench/write-instructions.sh [connections] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-16}
DURATION=${2:-20}
source bench/lib.sh
bench_install wrk
bench_binaries
source scripts/lib.sh
command -v valgrind >/dev/null || bench_install valgrind

start_app app
start_tandem_under_callgrind
port=$CLIENT_PORT
wait_ready_port "$ADMIN_PORT"
wrk -t1 -c"$CONNECTIONS" -d5s -s bench/put-kv.lua "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
rm -f "$WORKDIR"/tandem.cg.*
callgrind_control --zero "$TPID" >/dev/null 2>&1
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s bench/put-kv.lua "http://127.0.0.1:$port/" >"$WORKDIR/wrk.out" 2>&1 || true
callgrind_control --dump "$TPID" >/dev/null 2>&1
sleep 1
writes=$(awk '/requests in/ {print $1}' "$WORKDIR/wrk.out")
failed=$(awk '/Non-2xx or 3xx responses/ {print $5}' "$WORKDIR/wrk.out")
events=$(cat "$WORKDIR"/tandem.cg.* 2>/dev/null | awk '/^summary:/ {s += $2} END {print s}')
[ "${writes:-0}" -gt 0 ] || { echo "no writes were answered" >&2; exit 1; }
echo "tandem: $((events / writes)) instructions per write ($writes writes in ${DURATION}s over $CONNECTIONS connections, ${failed:-0} not 2xx)"
echo "  per function: callgrind_annotate $WORKDIR/tandem.cg.1 (kept with KEEP_LOGS=1)"
