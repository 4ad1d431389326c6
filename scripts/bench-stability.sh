#!/usr/bin/env bash
# The counter-measure to fast failover: elections where nothing failed. A three-node Tandem cluster on loopback
# (default timing settings, WAL on a real disk) takes a steady trickle of writes (20 per second through every
# node in turn) through two phases of MINUTES each, and the script counts elections and leader changes:
#   cpu        - stress-ng burns 2x the machine's cores (--cpu N --cpu-method matrixprod) for the whole phase;
#   slow disk  - one follower's tandem is moved into a blkio cgroup whose writes are throttled to 20 IOPS on the
#                data disk (cgroup v1 blkio.throttle.write_iops_device): its fsyncs take ~200 ms instead of ~1.
# A correct detector reports zero elections in both. The writes' answers are counted too (a write that fails is a
# sign of trouble even without an election). Needs root for the cgroup (the slow-disk phase is skipped otherwise).
# At the end each node's longest fsync is printed (the throttled follower's, and what the shared disk did to the
# others). BENCH_KEEP_LOGS=DIR keeps the nodes' logs (role changes with times).
# Usage: [BIN=.build/release] [STABILITY_PHASES="cpu disk"] scripts/bench-stability.sh [minutes per phase, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-10}
PHASES=${STABILITY_PHASES:-cpu disk}
scripts/ensure-deps.sh
source bench/lib.sh
bench_install stress-ng
bench_binaries
source scripts/lib.sh
CGROUP=/sys/fs/cgroup/blkio/tandem-bench-slow-$$
remove_cgroup() {
  [ -d "$CGROUP" ] || return 0
  # Processes still inside go back to the root group first (a cgroup with members cannot be removed).
  while read -r pid; do echo "$pid" >/sys/fs/cgroup/blkio/cgroup.procs 2>/dev/null || true; done <"$CGROUP/cgroup.procs"
  rmdir "$CGROUP" 2>/dev/null || true
}
trap 'bench_keep_logs; remove_cgroup; cleanup; bench_remove_data' EXIT
bench_data_root

start_tandem_cluster 3
for n in "${NODES[@]}"; do wait_ready "$n"; done
LEADER=$(wait_cluster_leader "${NODES[@]}")

# metric_sum NAME: a counter summed over the three nodes (tandem_elections_total: pre-votes that became votes;
# tandem_leader_changes_total: changes of the leader each node knows).
metric_sum() {
  local n total=0 value
  for n in "${NODES[@]}"; do
    value=$(tandem_metric "${ADMIN[$n]}" "$1")
    value=${value:-0}; total=$((total + ${value%.*}))
  done
  echo "$total"
}
terms() { local n; for n in "${NODES[@]}"; do printf '%s ' "$(tandem_status "${ADMIN[$n]}" term)"; done; }

# phase NAME: writes for MINUTES, prints one table row with what happened meanwhile.
ROWS=()
phase() {
  local name=$1 elections_before changes_before terms_before ok=0 failed=0 i=0 end code n port
  elections_before=$(metric_sum tandem_elections_total); changes_before=$(metric_sum tandem_leader_changes_total); terms_before=$(terms)
  end=$(($(date +%s) + MINUTES * 60))
  local load_max=0 load
  while [ "$(date +%s)" -lt "$end" ]; do
    n=${NODES[$((i % 3))]}; port=${CLIENT[$n]}; i=$((i + 1))
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X PUT --data "v$i" "http://127.0.0.1:$port/kv/s$((i % 500))" || true)
    if [ "$code" = 200 ]; then ok=$((ok + 1)); else failed=$((failed + 1)); fi
    if [ $((i % 100)) = 0 ]; then
      load=$(load1); awk -v a="$load" -v b="$load_max" 'BEGIN { exit !(a > b) }' && load_max=$load
    fi
    sleep 0.05
  done
  ROWS+=("| $name | $MINUTES | $(($(metric_sum tandem_elections_total) - elections_before)) | $(($(metric_sum tandem_leader_changes_total) - changes_before)) | $terms_before-> $(terms)| $ok | $failed | $load_max |")
  echo "   $name: ${ROWS[-1]}" >&2
}

if [[ " $PHASES " == *" cpu "* ]]; then
  echo "== phase 1: CPU saturated ($(( $(nproc) * 2 )) stress-ng workers) for $MINUTES min" >&2
  stress-ng --cpu $(( $(nproc) * 2 )) --cpu-method matrixprod --timeout "$((MINUTES * 60 + 30))s" >/dev/null 2>&1 &
  STRESS=$!
  PIDS+=("$STRESS")
  phase "CPU saturated (stress-ng --cpu $(( $(nproc) * 2 )))"
  kill "$STRESS" 2>/dev/null || true; wait "$STRESS" 2>/dev/null || true; forget_pid "$STRESS"
fi

SLOW=$(first_other "$LEADER" "${NODES[@]}")
disk=$(stat -c '%d' "$BENCH_DATA"); major=$((disk >> 8)); minor=$((disk & 255))
if [[ " $PHASES " != *" disk "* ]]; then
  SLOW_NOTE="slow-disk phase not asked for"
elif [ "$(id -u)" = 0 ] && [ -d /sys/fs/cgroup/blkio ] && mkdir "$CGROUP" 2>/dev/null; then
  echo "$major:$minor 20" >"$CGROUP/blkio.throttle.write_iops_device"
  echo "${TPID[$SLOW]}" >"$CGROUP/cgroup.procs"
  echo "== phase 2: follower $SLOW's disk writes throttled to 20 IOPS ($major:$minor) for $MINUTES min" >&2
  phase "follower $SLOW's writes at 20 IOPS (fsync ~200 ms)"
  fsyncs=$(tandem_metric "${ADMIN[$SLOW]}" tandem_fsync_total); fsync_s=$(tandem_metric "${ADMIN[$SLOW]}" tandem_fsync_seconds_total)
  SLOW_NOTE="the throttled follower's mean fsync over the whole run: $(awk -v n="$fsyncs" -v s="$fsync_s" 'BEGIN { if (n > 0) printf "%.0f ms", s * 1000 / n }') ($fsyncs fsyncs)"
  remove_cgroup
else
  SLOW_NOTE="slow-disk phase skipped: needs root and cgroup v1 blkio"
fi

echo "Elections without a failure: 3 Tandem nodes, default timing (heartbeat 100ms, phi threshold 8, election timeout" \
  "1s), a PUT every 50 ms through each node in turn; $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, tandem" \
  "$(tandem_commit_label); $SLOW_NOTE."
longest=""
for n in "${NODES[@]}"; do
  longest+="$n $(awk -v s="$(tandem_metric "${ADMIN[$n]}" tandem_fsync_max_seconds)" 'BEGIN { printf "%.0f ms", s * 1000 }'), "
done
echo "Longest fsync per node over the run: ${longest%, }."
echo
echo "| phase | minutes | elections started | leader changes seen | terms before -> after | writes ok | writes failed | peak load (1 min) |"
echo "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
printf '%s\n' "${ROWS[@]}"
