#!/usr/bin/env bash
# Reads through a proxy, side by side in one run: wrk against example-kv directly, through tandem, and through
# haproxy configured as an equivalent HTTP reverse proxy (keep-alive to the app, one thread like tandem).
# Prints a Markdown table for BENCHMARKS.md. Usage: scripts/bench-proxy.sh [duration-seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNECTIONS=${2:-50}
scripts/ensure-deps.sh
for tool in wrk haproxy; do
  command -v $tool >/dev/null || { apt-get install -y --no-install-recommends $tool >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y --no-install-recommends $tool >/dev/null; }; }
done
swift build -c release 2>&1 | tail -1
BIN=.build/release
source scripts/lib.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

start_app app
curl -s -X PUT "http://127.0.0.1:$APP_PORT/kv/bench" --data "$(head -c 128 /dev/zero | tr '\0' 'v')" >/dev/null
start_tandem n1 "$APP_PORT"
TANDEM_PORT=$CLIENT_PORT

HAPROXY_PORT=$(free_port)
cat >"$WORKDIR/haproxy.cfg" <<CFG
global
  maxconn 8000
  nbthread 1
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend be
backend be
  server app 127.0.0.1:$APP_PORT maxconn 1000
CFG
haproxy -f "$WORKDIR/haproxy.cfg" -db >"$WORKDIR/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
sleep 0.5

run_wrk() { # name port -> "rps p50 p99"
  local out
  out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$2/kv/bench")
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "$rps $p50 $p99"
}
to_ms() { # wrk latency like 1.23ms / 456.00us / 1.02s -> ms
  echo "$1" | awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v+0 } else { sub(/s$/,"",v); print v*1000 } }'
}
peak_rss_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

wrk -t2 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$APP_PORT/kv/bench" >/dev/null  # warm-up
read -r direct_rps direct_p50 direct_p99 < <(run_wrk direct "$APP_PORT")
read -r tandem_rps tandem_p50 tandem_p99 < <(run_wrk tandem "$TANDEM_PORT")
read -r haproxy_rps haproxy_p50 haproxy_p99 < <(run_wrk haproxy "$HAPROXY_PORT")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a/b }'; }
echo
echo "wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency GET /kv/bench (128-byte value), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
echo
echo "| path | requests/s | p50 ms | p99 ms | throughput vs direct | peak RSS MiB |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
echo "| example-kv directly | $direct_rps | $(to_ms $direct_p50) | $(to_ms $direct_p99) | 1.00 | $(peak_rss_mib $APP_PID) (app) |"
echo "| through tandem | $tandem_rps | $(to_ms $tandem_p50) | $(to_ms $tandem_p99) | $(ratio $tandem_rps $direct_rps) | $(peak_rss_mib $TANDEM_PID) |"
echo "| through haproxy (nbthread 1) | $haproxy_rps | $(to_ms $haproxy_p50) | $(to_ms $haproxy_p99) | $(ratio $haproxy_rps $direct_rps) | $(peak_rss_mib $HAPROXY_PID) |"
echo
echo "tandem / haproxy throughput: $(ratio $tandem_rps $haproxy_rps); p99 tandem / haproxy: $(ratio $(to_ms $tandem_p99) $(to_ms $haproxy_p99))"
