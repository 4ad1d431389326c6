#!/usr/bin/env bash
# Flame graphs of two tandem builds proxying reads, made one right after the other in front of one example-kv:
# each one-node tandem (read level local) is profiled by `perf record` (cpu-clock, 999 Hz, DWARF call graphs) for
# SECONDS of `wrk --latency GET /kv/bench` on CONNECTIONS keep-alive connections, after a 2 s warm-up. Writes, for
# each build, LABEL-<name>.svg into OUT (bench/profiles by default; the folded stacks, <name>.folded, stay in the
# run's directory, kept with KEEP_LOGS=1) and prints the requests/s, the samples per 1000 requests (CPU time per
# request at 999 Hz, in ms) and the hottest frames.
# Usage: BEFORE=<dir with tandem> AFTER=<dir with tandem> [BIN=<dir with example-kv>] \
#        bench/profile-reads.sh [connections] [seconds] [label] [out dir]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-1}
SECONDS_PER_RUN=${2:-8}
LABEL=${3:-reads-${CONNECTIONS}conn}
OUT=${4:-bench/profiles}
: "${BEFORE:?set BEFORE to the directory of the first tandem build}"
: "${AFTER:?set AFTER to the directory of the second tandem build}"
BIN=${BIN:-$AFTER}
source bench/lib.sh
bench_binaries
source scripts/lib.sh
command -v perf >/dev/null || bench_install perf linux-perf
command -v wrk >/dev/null || bench_install wrk
trap cleanup EXIT
mkdir -p "$OUT"

start_app app
curl -s -X PUT "http://127.0.0.1:$APP_PORT/kv/bench" --data "$(head -c 128 /dev/zero | tr '\0' 'v')" >/dev/null
threads=2
[ "$CONNECTIONS" -lt 2 ] && threads=1

for name in before after; do
  if [ "$name" = before ]; then dir=$BEFORE; else dir=$AFTER; fi
  BIN=$dir start_tandem "$name" "$APP_PORT"
  wait_ready_port "$ADMIN_PORT" "$name"
  url="http://127.0.0.1:$CLIENT_PORT/kv/bench"
  run_wrk "$threads" "$CONNECTIONS" 2 "$url" >/dev/null
  perf record -F 999 -g --call-graph dwarf,16384 -p "$TANDEM_PID" -o "$WORKDIR/$name.data" \
    -- sleep "$SECONDS_PER_RUN" >/dev/null 2>&1 &
  perf_pid=$!
  result=$(run_wrk "$threads" "$CONNECTIONS" "$SECONDS_PER_RUN" "$url")
  wait "$perf_pid" || true
  perf script -i "$WORKDIR/$name.data" 2>/dev/null >"$WORKDIR/$name.txt"
  samples=$(grep -c ' cpu-clock' "$WORKDIR/$name.txt" || true)
  requests=$(echo "$result" | cut -d' ' -f5)
  echo "== $name ($dir): $(echo "$result" | cut -d' ' -f1) requests/s, $requests requests," \
    "$samples samples, $(awk -v s="$samples" -v n="$requests" 'BEGIN { printf "%.1f", s * 1000 / n }') per 1000 requests"
  python3 bench/flamegraph.py --svg "$OUT/$LABEL-$name.svg" --folded "$WORKDIR/$name.folded" \
    --title "tandem, GET /kv/bench, $CONNECTIONS connection(s), $name ($(basename "$dir"))" --top 25 <"$WORKDIR/$name.txt"
  kill -TERM "$TANDEM_PID" 2>/dev/null || true
done
echo "SVGs in $OUT/$LABEL-before.svg and $OUT/$LABEL-after.svg"
