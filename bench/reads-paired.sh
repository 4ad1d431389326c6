#!/usr/bin/env bash
# Reads through Tandem against reads through haproxy, measured in pairs seconds apart: one example-kv, one tandem
# and one haproxy (one thread) in front of it, and for each connection count ROUNDS pairs of short wrk runs (GET
# /kv/bench, 128-byte value), tandem then haproxy in odd rounds and haproxy then tandem in even ones. Each pair gives
# three ratios, tandem / haproxy: requests/s, p99, and CPU per request (the proxy's on-CPU time from schedstat, in
# nanoseconds, over the requests wrk counted). The summary per connection count is the median of each ratio.
# Why pairs: scripts/bench-proxy.sh runs each proxy for 5 s, about 15 s apart, and on a shared 2-core host the cost
# of waking a process moves tenfold from one minute to the next; single rounds of the same build then range from
# 0.5x to 1.8x. Two halves of a pair share the host's state far more often than two runs 15 s apart do.
# With BENCH_HAPROXY_FORWARDED=1 haproxy adds the two forwarding fields Tandem adds, so that the app is sent the same
# request through both (by default haproxy forwards it as it came, and the app has two fields less to parse).
# With BENCH_PIN=1 the app and both proxies run on the last CPU and wrk on the others (taskset): where the scheduler
# puts each process, and what waking a process on the other CPU costs under a hypervisor, then no longer moves from
# one half to the next; without it the figures are of the machine as it schedules them.
# Usage: BIN=<dir with tandem and example-kv> bench/reads-paired.sh [rounds] [seconds] [connections...]
#        (defaults 10 rounds of 2 s per half, connections "1 50 256").
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
SECONDS_PER_HALF=${2:-2}
shift 2 2>/dev/null || shift $#
CONNECTIONS=${*:-1 50 256}
source bench/lib.sh
bench_binaries
source scripts/lib.sh
bench_install wrk

start_read_proxies
pin_servers "$APP_PID" "$TANDEM_PID" "$HAPROXY_PID"

# half NAME PORT PID CONNECTIONS: prints "rps p99ms errors proxy-cpu-us-per-request app-cpu-us-per-request" of one
# wrk run through one proxy. The app's CPU is shown because the proxies do not send it the same bytes: Tandem adds
# X-Forwarded-For and Forwarded to every request (BENCH_HAPROXY_FORWARDED=1 makes haproxy add them too).
half() {
  local port=$2 pid=$3 conns=$4 threads=2 before after app_before app_after result
  [ "$conns" -eq 1 ] && threads=1
  before=$(schedstat_sum "$pid"); app_before=$(schedstat_sum "$APP_PID")
  result=$(run_wrk "$threads" "$conns" "$SECONDS_PER_HALF" "http://127.0.0.1:$port/kv/bench")
  after=$(schedstat_sum "$pid"); app_after=$(schedstat_sum "$APP_PID")
  read -r rps _ p99 errors requests <<<"$result"
  awk -v r="$rps" -v p="$p99" -v e="$errors" -v n="$requests" -v a="${before%% *}" -v b="${after%% *}" \
    -v c="${app_before%% *}" -v d="${app_after%% *}" \
    'BEGIN { printf "%s %s %s %.1f %.1f\n", r, p, e, (n > 0) ? (b - a) / 1000 / n : 0, (n > 0) ? (d - c) / 1000 / n : 0 }'
}

# median: the median of the numbers on stdin, one per line.
median() {
  sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "n/a"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f", m }'
}

echo "reads in pairs: wrk GET /kv/bench (128-byte value), ${SECONDS_PER_HALF}s per half, $ROUNDS rounds per" \
  "connection count, tandem $(tandem_commit_label), $(haproxy -v | head -1 | cut -d' ' -f1-3), $CORES cores," \
  "load $(loadavg)$([ "${BENCH_HAPROXY_FORWARDED:-0}" = 1 ] && echo ', haproxy adding X-Forwarded-For and Forwarded like tandem')$PINNING"
SUMMARY=()
for conns in $CONNECTIONS; do
  # Warm both paths (connections to the app, caches) before the first pair.
  half tandem "$CLIENT_PORT" "$TANDEM_PID" "$conns" >/dev/null
  half haproxy "$HAPROXY_PORT" "$HAPROXY_PID" "$conns" >/dev/null
  echo
  echo "$conns connection(s):"
  echo
  echo "| round | tandem req/s | haproxy req/s | tandem p99 ms | haproxy p99 ms | tandem CPU us/req | haproxy CPU us/req | app CPU us/req behind tandem / haproxy | req/s ratio | p99 ratio | CPU ratio |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  : >"$WORKDIR/ratios"
  for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
      read -r t_rps t_p99 t_err t_cpu t_app < <(half tandem "$CLIENT_PORT" "$TANDEM_PID" "$conns")
      read -r h_rps h_p99 h_err h_cpu h_app < <(half haproxy "$HAPROXY_PORT" "$HAPROXY_PID" "$conns")
    else
      read -r h_rps h_p99 h_err h_cpu h_app < <(half haproxy "$HAPROXY_PORT" "$HAPROXY_PID" "$conns")
      read -r t_rps t_p99 t_err t_cpu t_app < <(half tandem "$CLIENT_PORT" "$TANDEM_PID" "$conns")
    fi
    if [ "$t_err" != 0 ] || [ "$h_err" != 0 ]; then
      echo "round $round at $conns connections: errors (tandem $t_err, haproxy $h_err)" >&2
      exit 1
    fi
    r_rps=$(ratio "$t_rps" "$h_rps"); r_p99=$(ratio "$t_p99" "$h_p99"); r_cpu=$(ratio "$t_cpu" "$h_cpu")
    echo "$r_rps $r_p99 $r_cpu $(ratio "$t_app" "$h_app")" >>"$WORKDIR/ratios"
    echo "| $round | $t_rps | $h_rps | $t_p99 | $h_p99 | $t_cpu | $h_cpu | $t_app / $h_app | $r_rps | $r_p99 | $r_cpu |"
  done
  m_rps=$(awk '{ print $1 }' "$WORKDIR/ratios" | median)
  m_p99=$(awk '{ print $2 }' "$WORKDIR/ratios" | median)
  m_cpu=$(awk '{ print $3 }' "$WORKDIR/ratios" | median)
  m_app=$(awk '{ print $4 }' "$WORKDIR/ratios" | median)
  tandem_ahead=$(awk '$1 > 1 { n++ } END { print n + 0 }' "$WORKDIR/ratios")
  SUMMARY+=("| | $conns | $m_rps | $m_p99 | $m_cpu | $m_app | $tandem_ahead of $ROUNDS |")
done
echo
echo "Medians of the per-pair ratios, tandem / haproxy:"
echo
echo "| tandem / haproxy | connections | requests/s | p99 | CPU per request | the app's CPU per request behind each | pairs with tandem faster |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${SUMMARY[@]}"
