#!/usr/bin/env bash
# The README's demo: builds Tandem, puts one tandem in front of example-kv, and runs a short scripted session
# that shows reads, writes and the metrics. Everything it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
echo "== building (release)"
swift build -c release 2>&1 | tail -1
BIN=.build/release
source scripts/lib.sh

start_app app
start_tandem n1 "$APP_PORT"
echo "== example-kv on 127.0.0.1:$APP_PORT, tandem client port $CLIENT_PORT, admin port $ADMIN_PORT"

show() { echo; echo "\$ $*"; "$@"; echo; }
show curl -s -X PUT "http://127.0.0.1:$CLIENT_PORT/kv/greeting" --data 'hello, tandem'
show curl -s "http://127.0.0.1:$CLIENT_PORT/kv/greeting"
show curl -s -X POST "http://127.0.0.1:$CLIENT_PORT/kv/log/append" --data 'a'
show curl -s -X POST "http://127.0.0.1:$CLIENT_PORT/kv/log/append" --data 'b'
for _ in 1 2 3; do curl -s -X POST "http://127.0.0.1:$CLIENT_PORT/counters/visits/incr" >/dev/null; done
show curl -s "http://127.0.0.1:$CLIENT_PORT/counters/visits"
show curl -s "http://127.0.0.1:$CLIENT_PORT/dump"
echo "\$ curl -s -i -X PUT .../kv/x -H 'Content-Length: 1' -H 'Transfer-Encoding: chunked'   # smuggling attempt"
curl -s -i -X PUT "http://127.0.0.1:$CLIENT_PORT/kv/x" -H 'Content-Length: 1' -H 'Transfer-Encoding: chunked' --data 'z' | sed -n '1p;$p'
echo
show curl -s "http://127.0.0.1:$ADMIN_PORT/readyz"
show curl -s "http://127.0.0.1:$ADMIN_PORT/status"
echo "\$ curl -s http://127.0.0.1:$ADMIN_PORT/metrics | grep -E '^tandem_(requests_total|open_connections|upstream_errors)'"
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -E '^tandem_(requests_total|open_connections|upstream_errors)'
echo
echo "== stopping tandem with SIGTERM (drains, exits 0)"
kill -TERM "$TANDEM_PID"
wait "$TANDEM_PID" && echo "tandem exited with status 0"
