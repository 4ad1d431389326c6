#!/usr/bin/env bash
# The README's demo: builds Tandem, starts three example-kv apps with a tandem beside each on localhost, runs a
# workload through all three nodes, kills the leader (app and sidecar, like a crashed pod), shows the new leader,
# restarts the dead replica, and checks that no acknowledged write was lost and that the replicas agree.
# Everything it starts, it stops (by PID).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
echo "== building (release)"
swift build -c release 2>&1 | tail -1
BIN=.build/release
source scripts/lib.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
declare -A PEER CLIENT ADMIN APP APPPID TPID
for n in n1 n2 n3; do PEER[$n]=$(free_port); done
PEERS="n1=127.0.0.1:${PEER[n1]},n2=127.0.0.1:${PEER[n2]},n3=127.0.0.1:${PEER[n3]}"

start_pair() { # node
  local n=$1
  start_app "app-$n"; APP[$n]=$APP_PORT; APPPID[$n]=$APP_PID
  start_tandem "$n" "${APP[$n]}" TANDEM_PEERS="$PEERS" TANDEM_PEER_LISTEN="127.0.0.1:${PEER[$n]}" \
    TANDEM_CLUSTER_SECRET=demo-cluster-secret-0123456789 TANDEM_APP_STATE=memory \
    "TANDEM_SNAPSHOT_SAVE=GET /snapshot" "TANDEM_SNAPSHOT_RESTORE=PUT /snapshot"
  CLIENT[$n]=$CLIENT_PORT; ADMIN[$n]=$ADMIN_PORT; TPID[$n]=$TANDEM_PID
}
for n in n1 n2 n3; do start_pair $n; done
for n in n1 n2 n3; do
  echo "== $n: app 127.0.0.1:${APP[$n]}  client 127.0.0.1:${CLIENT[$n]}  admin 127.0.0.1:${ADMIN[$n]}  peer 127.0.0.1:${PEER[$n]}"
done

leader() { # prints the leader id as seen by the given nodes
  for n in "$@"; do
    curl -s --max-time 1 "http://127.0.0.1:${ADMIN[$n]}/status" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["leader"] or "")' 2>/dev/null && return 0
  done
}
wait_leader() {
  for _ in $(seq 1 300); do
    l=$(leader "$@" || true)
    if [ -n "$l" ] && curl -s --max-time 1 "http://127.0.0.1:${ADMIN[$l]}/status" | grep -q '"role":"leader"'; then echo "$l"; return 0; fi
    sleep 0.1
  done
  return 1
}
LEADER=$(wait_leader n1 n2 n3)
echo "== leader elected: $LEADER"
"$BIN/tandem" status --admin "127.0.0.1:${ADMIN[$LEADER]}"

ACKED="$WORKDIR/acked"; : >"$ACKED"
write() { # node op-number: an increment with an Idempotency-Key, retried on every node until acknowledged
  local op=$1 try=0
  while [ $try -lt 60 ]; do
    for n in n1 n2 n3; do
      code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 -X POST -H "Idempotency-Key: demo-$op" \
        "http://127.0.0.1:${CLIENT[$n]}/counters/demo/incr" || true)
      if [ "$code" = "200" ]; then echo "$op" >>"$ACKED"; return 0; fi
    done
    try=$((try + 1)); sleep 0.1
  done
  echo "write $op was never acknowledged" >&2
}

echo "== writing 100 increments through all three nodes (each with an Idempotency-Key)"
for op in $(seq 1 100); do write "$op"; done
echo "== killing the leader $LEADER (kill -9 of its tandem and its app) while writing 100 more"
( for op in $(seq 101 200); do write "$op"; done ) &
WRITER=$!
PIDS+=("$WRITER")  # stopped with everything else if the demo ends early
sleep 0.5
T0=$(date +%s%N)
kill -KILL "${TPID[$LEADER]}" "${APPPID[$LEADER]}"
REST=$(for n in n1 n2 n3; do if [ "$n" != "$LEADER" ]; then echo -n "$n "; fi; done)
NEW=$(wait_leader $REST) || { echo "== no new leader within 30 s among $REST" >&2; exit 1; }
T1=$(date +%s%N)
echo "== new leader: $NEW, elected $(( (T1 - T0) / 1000000 )) ms after the kill"
wait "$WRITER"
echo "== restarting $LEADER (it catches up from the others and replays the log into its fresh app)"
start_pair "$LEADER"
sleep 2
"$BIN/tandem" status --admin "127.0.0.1:${ADMIN[$NEW]}"

ACKED_COUNT=$(sort -u "$ACKED" | wc -l)
echo
echo "== acknowledged increments: $ACKED_COUNT"
OK=1
for _ in $(seq 1 50); do
  D1=$(curl -s "http://127.0.0.1:${APP[n1]}/dump"); D2=$(curl -s "http://127.0.0.1:${APP[n2]}/dump"); D3=$(curl -s "http://127.0.0.1:${APP[n3]}/dump")
  [ "$D1" = "$D2" ] && [ "$D2" = "$D3" ] && break
  sleep 0.2
done
for n in n1 n2 n3; do
  V=$(curl -s "http://127.0.0.1:${APP[$n]}/counters/demo")
  echo "   $n app says $V"
  echo "$V" | grep -q "\"value\":$ACKED_COUNT}" || OK=0
done
if [ "$D1" = "$D2" ] && [ "$D2" = "$D3" ]; then echo "== the three apps' /dump are byte-identical"; else echo "== REPLICAS DIFFER"; OK=0; fi
if [ $OK = 1 ]; then
  echo "== no acknowledged write was lost, none was applied twice, and the replicas agree"
else
  echo "== CHECK FAILED"; exit 1
fi
