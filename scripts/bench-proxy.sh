#!/usr/bin/env bash
# Reads through a proxy, side by side in one run: wrk GET /kv/bench (a 128-byte value) against example-kv directly,
# through a one-node tandem (TANDEM_PEERS empty, read level local: a read is proxied to the local app), and through
# haproxy configured as an equivalent HTTP reverse proxy (keep-alive to the app, one thread like tandem).
# For each: requests/s, p50, p99, errors, the proxy's CPU per 1000 requests and its peak RSS, with the load
# average. Prints Markdown tables for BENCHMARKS.md.
# Tandem and haproxy are measured BENCH_ROUNDS times (default 3) each, alternating which goes first, and each figure
# is the median of its rounds (errors: the sum): on a shared 2-core machine one 10 s run of each swung the ratio by
# up to 0.3, with wrk, the proxy and the app placed on the two cores differently from run to run.
# BENCH_HAPROXY_FORWARDED=1 has haproxy add the X-Forwarded-For and Forwarded fields Tandem adds (by default it
# forwards the request without them, less work than Tandem's).
# Usage: [BIN=.build/release] [BENCH_ROUNDS=3] [BENCH_HAPROXY_FORWARDED=1] scripts/bench-proxy.sh [seconds-per-run] [connection counts, e.g. "50"]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNECTION_COUNTS=${2:-"50"}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP_SECONDS=2
scripts/ensure-deps.sh
source bench/lib.sh
bench_install wrk
bench_binaries
source scripts/lib.sh
trap 'bench_keep_logs; cleanup' EXIT

start_read_proxies

declare -A RESULT
measure() { # label connections port pid-of-the-proxy (the app's for the direct row)
  local label=$1 conns=$2 port=$3 pid=$4 before after threads=2 r
  [ "$conns" -lt 2 ] && threads=1
  run_wrk "$threads" "$conns" "$WARMUP_SECONDS" "http://127.0.0.1:$port/kv/bench" >/dev/null
  before=$(cpu_ms "$pid")
  r=$(run_wrk "$threads" "$conns" "$DURATION" "http://127.0.0.1:$port/kv/bench")
  after=$(cpu_ms "$pid")
  RESULT[$label,$conns]="$r $(load1) $(per_k_requests "$before" "$after" "$(echo "$r" | cut -d' ' -f5)")"
  echo "   $label c=$conns: ${RESULT[$label,$conns]}  (rps p50ms p99ms errors requests load1 cpu-ms/1k)"
}
# median_of_rounds LABEL CONNECTIONS: the per-field median of RESULT[LABEL,CONNECTIONS,1..ROUNDS] (errors summed).
median_of_rounds() {
  local label=$1 conns=$2 field_index r values out=""
  for field_index in 1 2 3 4 5 6 7; do
    values=""
    for r in $(seq 1 "$ROUNDS"); do values+="$(echo "${RESULT[$label,$conns,$r]}" | cut -d' ' -f"$field_index") "; done
    if [ "$field_index" = 4 ]; then
      out+="$(echo "$values" | tr ' ' '\n' | awk 'NF {s += $1} END {print s + 0}') "
    else
      out+="$(echo "$values" | tr ' ' '\n' | awk 'NF' | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}') "
    fi
  done
  echo "${out% }"
}
LOAD_BEFORE=$(loadavg)
for c in $CONNECTION_COUNTS; do
  echo "== $c connections, ${DURATION}s each after ${WARMUP_SECONDS}s warm-up"
  measure direct "$c" "$APP_PORT" "$APP_PID"
  for round in $(seq 1 "$ROUNDS"); do
    order="tandem haproxy"
    [ $((round % 2)) = 0 ] && order="haproxy tandem"
    for proxy in $order; do
      if [ "$proxy" = tandem ]; then
        measure tandem "$c" "$CLIENT_PORT" "$TANDEM_PID"
      else
        measure haproxy "$c" "$HAPROXY_PORT" "$HAPROXY_PID"
      fi
      RESULT[$proxy,$c,$round]=${RESULT[$proxy,$c]}
    done
    echo "   round $round c=$c: tandem/haproxy requests/s $(ratio "$(echo "${RESULT[tandem,$c,$round]}" | cut -d' ' -f1)" "$(echo "${RESULT[haproxy,$c,$round]}" | cut -d' ' -f1)")"
  done
  RESULT[tandem,$c]=$(median_of_rounds tandem "$c")
  RESULT[haproxy,$c]=$(median_of_rounds haproxy "$c")
done
peak_rss_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
field() { echo "${RESULT[$1,$2]}" | cut -d' ' -f"$3"; }

echo
echo "wrk -t2 (-t1 for one connection) --latency GET /kv/bench (128-byte value), ${DURATION}s per run after ${WARMUP_SECONDS}s warm-up, tandem and haproxy the median of $ROUNDS alternating runs each;" \
  "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, tandem $(tandem_commit_label), $(haproxy -v | head -1 | cut -d' ' -f1-3)$([ "${BENCH_HAPROXY_FORWARDED:-0}" = 1 ] && echo ' adding X-Forwarded-For and Forwarded like tandem');" \
  "load average before $LOAD_BEFORE, after $(loadavg)"
echo
echo "| path | connections | requests/s | p50 ms | p99 ms | errors | vs direct | proxy CPU ms per 1k requests | peak RSS MiB | load (1 min) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for c in $CONNECTION_COUNTS; do
  echo "| example-kv directly | $c | $(field direct $c 1) | $(field direct $c 2) | $(field direct $c 3) | $(field direct $c 4) | 1.00 | (app: $(field direct $c 7)) | $(peak_rss_mib "$APP_PID") (app) | $(field direct $c 6) |"
  echo "| through tandem | $c | $(field tandem $c 1) | $(field tandem $c 2) | $(field tandem $c 3) | $(field tandem $c 4) | $(ratio "$(field tandem $c 1)" "$(field direct $c 1)") | $(field tandem $c 7) | $(peak_rss_mib "$TANDEM_PID") | $(field tandem $c 6) |"
  echo "| through haproxy (nbthread 1) | $c | $(field haproxy $c 1) | $(field haproxy $c 2) | $(field haproxy $c 3) | $(field haproxy $c 4) | $(ratio "$(field haproxy $c 1)" "$(field direct $c 1)") | $(field haproxy $c 7) | $(peak_rss_mib "$HAPROXY_PID") | $(field haproxy $c 6) |"
done
echo
echo "| tandem / haproxy | connections | requests/s (>1: tandem faster) | p50 (<1: tandem faster) | p99 | CPU per request | peak RSS |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for c in $CONNECTION_COUNTS; do
  echo "| | $c | $(ratio "$(field tandem $c 1)" "$(field haproxy $c 1)") | $(ratio "$(field tandem $c 2)" "$(field haproxy $c 2)") | $(ratio "$(field tandem $c 3)" "$(field haproxy $c 3)") | $(ratio "$(field tandem $c 7)" "$(field haproxy $c 7)") | $(ratio "$(peak_rss_mib "$TANDEM_PID")" "$(peak_rss_mib "$HAPROXY_PID")") |"
done
