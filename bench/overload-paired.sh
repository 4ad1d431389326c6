#!/usr/bin/env bash
# Goodput at two offered loads measured in pairs, against one tandem in front of example-kv (replicated writes,
# POST /counters/load/incr, fsync on disk): each round runs wrk at LOW connections then at HIGH, and prints both
# goodputs and HIGH / LOW of that round; the summary is the median of those per-round ratios.
# Why pairs: on a shared 2-core machine the write rate drifts by 10-20 % over tens of seconds, so two steps measured
# a minute apart (scripts/bench-overload.sh) compare the machine's moods as much as the loads. The two halves of a
# pair are seconds apart; the median of many pairs is what the load costs.
# Usage: BIN=<dir with tandem and example-kv> bench/overload-paired.sh [rounds] [seconds] [low] [high]
#        (defaults 8 rounds of 5 s, 256 against 1280 connections: 2x and 10x of scripts/bench-overload.sh's base 128).
# BENCH_TANDEM_ENV adds settings to the node, as in scripts/bench-overload.sh.
# With BENCH_PIN=1 (pin_servers in bench/lib.sh) tandem, all its threads, and the app run on the last CPU and wrk on
# the others, as clients on other machines would: wrk's own CPU grows with its connections, and unpinned it takes
# that from the node measured.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-8}
SECONDS_PER_STEP=${2:-5}
LOW=${3:-256}
HIGH=${4:-1280}
source bench/lib.sh
bench_binaries
source scripts/lib.sh
command -v wrk >/dev/null || bench_install wrk

read -r -a TANDEM_ENV_EXTRA <<<"${BENCH_TANDEM_ENV:-}"
start_app app
start_tandem n1 "$APP_PORT" "${TANDEM_ENV_EXTRA[@]}"
wait_ready_port "$ADMIN_PORT"
pin_servers "$APP_PID" "$TANDEM_PID"

# goodput CONNECTIONS: prints "2xx/s 503/s" of one wrk run.
goodput() {
  wrk -t2 -c"$1" -d"${SECONDS_PER_STEP}s" --timeout 10s -s bench/count-status.lua \
    "http://127.0.0.1:$CLIENT_PORT" >"$WORKDIR/wrk.out" 2>&1
  awk -v s="$SECONDS_PER_STEP" '/^STATUS/ { split($2, ok, "="); split($3, shed, "=");
    printf "%.0f %.0f\n", ok[2] / s, shed[2] / s }' "$WORKDIR/wrk.out"
}

echo "pairs: wrk -t2 -c$LOW then -c$HIGH, ${SECONDS_PER_STEP}s each, $ROUNDS rounds, $CORES cores, load $(loadavg)$PINNING"
echo
echo "| round | $LOW conns 2xx/s | $HIGH conns 2xx/s | $HIGH conns 503/s | $HIGH / $LOW |"
echo "| ---: | ---: | ---: | ---: | ---: |"
RATIOS=()
for round in $(seq 1 "$ROUNDS"); do
  read -r low _ < <(goodput "$LOW")
  read -r high shed < <(goodput "$HIGH")
  r=$(ratio "$high" "$low")
  RATIOS+=("$r")
  echo "| $round | $low | $high | $shed | $r |"
done
echo
printf '%s\n' "${RATIOS[@]}" | sort -n | awk '{ v[NR] = $1 } END {
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "median of the per-round ratios: %.2f (lowest %.2f, highest %.2f)\n", m, v[1], v[NR] }'
counter=$(curl -s "http://127.0.0.1:$APP_PORT/counters/load")
echo "app counter after the run: $counter"
