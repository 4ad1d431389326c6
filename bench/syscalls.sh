#!/usr/bin/env bash
# System calls per proxied read, tandem against haproxy, counted by `strace -c` over exactly N requests from
# bench/fixed-load.py on C keep-alive connections (after 300 for warm-up). strace slows both proxies alike; the counts,
# not the times, are what to compare.
# Usage: BIN=<dir with tandem and example-kv> bench/syscalls.sh [connections] [requests]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-1}
REQUESTS=${2:-3000}
source bench/lib.sh
bench_binaries
source scripts/lib.sh
command -v strace >/dev/null || bench_install strace

start_read_proxies
for proxy in "tandem $CLIENT_PORT $TANDEM_PID" "haproxy $HAPROXY_PORT $HAPROXY_PID"; do
  read -r label port pid <<<"$proxy"
  python3 bench/fixed-load.py 127.0.0.1 "$port" /kv/bench "$CONNECTIONS" 300 >/dev/null
  strace -c -f -p "$pid" -o "$WORKDIR/$label.strace" &
  SPID=$!
  PIDS+=("$SPID")
  sleep 0.5
  python3 bench/fixed-load.py 127.0.0.1 "$port" /kv/bench "$CONNECTIONS" "$REQUESTS" >/dev/null
  kill -INT "$SPID"
  wait "$SPID" 2>/dev/null || true
  echo "$label: system calls per request ($REQUESTS requests over $CONNECTIONS connections)"
  awk -v n="$REQUESTS" 'NR > 2 && $NF != "total" && $4 ~ /^[0-9]+$/ && $4 / n >= 0.01 {
      printf "  %-16s %6.2f\n", $NF, $4 / n }' "$WORKDIR/$label.strace" | sort -k2 -rn
done
