#!/usr/bin/env bash
# Wake-ups and CPU per replicated write at one connection: a three-node Tandem cluster (with its three example-kv
# apps) and a three-member etcd cluster side by side, on loopback with their data on the same disk, each written to
# by one client sending N writes one after another (bench/sequential-writes.py), through the leader and through a
# follower, ROUNDS times. For every run it sums, over all threads of all processes of that system, the scheduler's
# on-CPU time and its count of times a thread was scheduled in (/proc/<pid>/task/<tid>/schedstat: nanoseconds, not
# the tick-sampled utime/stime), and divides by N. At one connection a write is a chain of wake-ups from client to
# disk to peers and back, so on a machine where waking a thread is expensive this is where the time goes.
# Usage: [BIN=.build/release] bench/write-wakeups.sh [writes per run, default 2000] [rounds, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
WRITES=${1:-2000}
ROUNDS=${2:-2}
scripts/ensure-deps.sh
source bench/lib.sh
bench_install etcd etcd-server
bench_binaries
source scripts/lib.sh
trap 'bench_keep_logs; cleanup; bench_remove_data' EXIT
bench_data_root

start_tandem_and_etcd_clusters
FOLLOWER=$(first_other "$LEADER" "${NODES[@]}")
ETCD_FOLLOWER_NAME=$(first_other "$ETCD_LEADER_NAME" "${ETCD_MEMBERS[@]}")
TANDEM_PIDS=()
for n in "${NODES[@]}"; do TANDEM_PIDS+=("${TPID[$n]}" "${APPPID[$n]}"); done
ETCD_PIDS=()
for m in "${ETCD_MEMBERS[@]}"; do ETCD_PIDS+=("${ETCD_PID[$m]}"); done

# measure SYSTEM ROLE KIND PORT PID...: one run; prints a table row.
measure() {
  local system=$1 role=$2 kind=$3 port=$4 out p50 p99 run0 slices0 run1 slices1
  shift 4
  read -r run0 slices0 < <(schedstat_sum "$@")
  out=$(python3 bench/sequential-writes.py "$kind" "$port" "$WRITES")  # a refused write stops the script here
  read -r p50 p99 <<<"$out"
  read -r run1 slices1 < <(schedstat_sum "$@")
  awk -v s="$system" -v r="$role" -v p50="$p50" -v p99="$p99" -v run=$((run1 - run0)) -v sl=$((slices1 - slices0)) \
    -v n="$WRITES" 'BEGIN { printf "| %s | %s | %s | %s | %.0f | %.1f |\n", s, r, p50, p99, run / n / 1000, sl / n }'
}

python3 bench/sequential-writes.py tandem "${CLIENT[$LEADER]}" 300 >/dev/null
python3 bench/sequential-writes.py etcd "${ETCD_CLIENT[$ETCD_LEADER_NAME]}" 300 >/dev/null
echo
echo "One client writing one after another, $WRITES writes per row, $ROUNDS rounds; $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores," \
  "tandem $(tandem_commit_label), $(etcd --version | head -1); load average $(loadavg)"
echo
echo "| system | through | p50 ms | p99 ms | CPU us per write, all processes | wake-ups per write, all threads |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
for _ in $(seq 1 "$ROUNDS"); do
  measure "Tandem (3 tandems + 3 apps)" leader tandem "${CLIENT[$LEADER]}" "${TANDEM_PIDS[@]}"
  measure "etcd (3 members)" leader etcd "${ETCD_CLIENT[$ETCD_LEADER_NAME]}" "${ETCD_PIDS[@]}"
  measure "Tandem (3 tandems + 3 apps)" follower tandem "${CLIENT[$FOLLOWER]}" "${TANDEM_PIDS[@]}"
  measure "etcd (3 members)" follower etcd "${ETCD_CLIENT[$ETCD_FOLLOWER_NAME]}" "${ETCD_PIDS[@]}"
done
