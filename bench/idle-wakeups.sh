#!/usr/bin/env bash
# What an idle cluster costs: a three-node Tandem cluster (with its three example-kv apps) and a three-member etcd
# cluster side by side, on loopback, both left alone for SECONDS after they settle. For each process it reads the
# scheduler's counters of every thread (/proc/<pid>/task/<tid>/schedstat: on-CPU nanoseconds and times scheduled
# in) before and after, and prints the wake-ups and the CPU milliseconds per second. A sidecar runs beside every
# replica of a service, most of them idle most of the time: what it costs doing nothing is paid everywhere.
# Usage: [BIN=.build/release] bench/idle-wakeups.sh [seconds, default 10] [rounds, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_IDLE=${1:-10}
ROUNDS=${2:-2}
scripts/ensure-deps.sh
source bench/lib.sh
bench_install etcd etcd-server
bench_binaries
source scripts/lib.sh
trap 'bench_keep_logs; cleanup; bench_remove_data' EXIT
bench_data_root

start_tandem_and_etcd_clusters
sleep 3  # the elections' and the first connections' work is not what this measures

# row SYSTEM PROCESS PID: one process's wake-ups and CPU per second over the idle window, from the two samples
# BEFORE[PID] and AFTER[PID].
declare -A BEFORE AFTER
row() {
  local run0 slices0 run1 slices1
  read -r run0 slices0 <<<"${BEFORE[$3]}"
  read -r run1 slices1 <<<"${AFTER[$3]}"
  awk -v s="$1" -v p="$2" -v run=$((run1 - run0)) -v sl=$((slices1 - slices0)) -v t="$SECONDS_IDLE" \
    'BEGIN { printf "| %s | %s | %.0f | %.2f |\n", s, p, sl / t, run / t / 1e6 }'
}

echo
echo "Idle for $SECONDS_IDLE s per round, $ROUNDS rounds; $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores," \
  "tandem $(tandem_commit_label), $(etcd --version | head -1); load average $(loadavg)"
echo
echo "| system | process | wake-ups per second, all threads | CPU ms per second |"
echo "| --- | --- | ---: | ---: |"
ALL_PIDS=()
for n in "${NODES[@]}"; do ALL_PIDS+=("${TPID[$n]}" "${APPPID[$n]}"); done
for m in "${ETCD_MEMBERS[@]}"; do ALL_PIDS+=("${ETCD_PID[$m]}"); done
for _ in $(seq 1 "$ROUNDS"); do
  for pid in "${ALL_PIDS[@]}"; do BEFORE[$pid]=$(schedstat_sum "$pid"); done
  sleep "$SECONDS_IDLE"
  for pid in "${ALL_PIDS[@]}"; do AFTER[$pid]=$(schedstat_sum "$pid"); done
  for n in "${NODES[@]}"; do
    role=follower
    [ "$n" = "$LEADER" ] && role=leader
    row Tandem "tandem $n ($role)" "${TPID[$n]}"
  done
  for n in "${NODES[@]}"; do row Tandem "example-kv of $n" "${APPPID[$n]}"; done
  for m in "${ETCD_MEMBERS[@]}"; do
    role=follower
    [ "$m" = "$ETCD_LEADER_NAME" ] && role=leader
    row etcd "etcd $m ($role)" "${ETCD_PID[$m]}"
  done
done
