#!/usr/bin/env bash
# Reproduces a false divergence flag found by scripts/bench-failover.sh (not a benchmark; a bug report you can run):
# in a three-node cluster with TANDEM_APP_STATE=durable (the default), kill -9 a follower's tandem, write, restart
# it (it resumes after its recorded applied index), hand it the leadership, write again. The two other followers
# are then flagged DIVERGED (/readyz 503) although the three apps' /dump are byte-identical.
# Usage: [BIN=.build/release] bench/repro-false-divergence.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
bench_binaries
source scripts/lib.sh
trap 'cleanup' EXIT
bench_data_root
start_tandem_cluster 3
for n in "${NODES[@]}"; do wait_ready "$n"; done
L=$(wait_cluster_leader "${NODES[@]}")
F=""
for n in "${NODES[@]}"; do [ "$n" = "$L" ] && continue; [ -z "$F" ] && F=$n; done
put() { for i in $(seq "$1" "$2"); do curl -s -o /dev/null -X PUT "http://127.0.0.1:${CLIENT[$L]}/kv/k$i" --data "v$i"; done; }
put 1 50
echo "leader $L; kill -9 follower $F's tandem, write 50 more, restart it (durable: resumes after its recorded applied index)"
kill -KILL "${TPID[$F]}"; forget_pid "${TPID[$F]}"
put 51 100
start_cluster_tandem "$F"; wait_ready "$F"
echo "$F status: $(curl -s "http://127.0.0.1:${ADMIN[$F]}/status" | cut -c1-200)"
echo "transfer leadership $L -> $F: $(curl -s -X POST "http://127.0.0.1:${ADMIN[$L]}/admin/transfer-leadership?to=$F")"
for _ in $(seq 1 50); do [ "$(tandem_status "${ADMIN[$F]}" role)" = leader ] && break; sleep 0.1; done
L=$F
put 101 110
sleep 3
for n in "${NODES[@]}"; do echo "$n: role $(tandem_status "${ADMIN[$n]}" role), diverged $(tandem_status "${ADMIN[$n]}" diverged), digest $(tandem_status "${ADMIN[$n]}" digest) at $(tandem_status "${ADMIN[$n]}" digestIndex), readyz $(curl -s "http://127.0.0.1:${ADMIN[$n]}/readyz")"; done
d1=$(curl -s "http://127.0.0.1:${APP[n1]}/dump" | md5sum); d2=$(curl -s "http://127.0.0.1:${APP[n2]}/dump" | md5sum); d3=$(curl -s "http://127.0.0.1:${APP[n3]}/dump" | md5sum)
echo "app dumps md5: $d1 / $d2 / $d3"
grep -h DIVERGED "$WORKDIR"/n*.log | cut -c1-250 || true
