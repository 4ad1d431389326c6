#!/usr/bin/env bash
# Replicated writes, side by side in one run: wrk doing PUT /kv/<random key> with a 256-byte body against
#   - example-kv alone (no replication, no disk: the ceiling),
#   - a three-node Tandem cluster on loopback (WAL fsync on a real disk), through the leader and through a follower
#     (which forwards the write to the leader over the peer link),
#   - a three-member etcd cluster on loopback (Debian's etcd-server), POST /v3/kv/put through its HTTP/JSON gateway
#     with the same key space and value size, through the leader and through a follower,
# at each connection count (default 1 and 64). Every configuration is measured BENCH_ROUNDS times (default 3), in
# the order above in odd rounds and reversed in even ones, and each row is that configuration's median round by
# requests/s (every round's figure in the last column): one 5-10 s sample moves by tens of percent on a shared
# machine, and which system ran first or last in a quiet spell decided a single-sample ratio.
# Prints Markdown tables for BENCHMARKS.md, with the load average.
# Usage: [BIN=.build/release] [BENCH_ROUNDS=3] scripts/bench-writes.sh [seconds-per-run] [connection counts, e.g. "1 64"]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNECTION_COUNTS=${2:-"1 64"}
WARMUP_SECONDS=2
ROUNDS=${BENCH_ROUNDS:-3}
scripts/ensure-deps.sh
source bench/lib.sh
bench_install wrk
bench_install etcd etcd-server
bench_binaries
source scripts/lib.sh
trap 'bench_keep_logs; cleanup; bench_remove_data' EXIT
bench_data_root

echo "== starting example-kv alone, a 3-node Tandem cluster and a 3-member etcd cluster (data in $BENCH_DATA)"
start_app alone
ALONE_PORT=$APP_PORT
ALONE_PID=$APP_PID
# BENCH_TANDEM_ENV adds settings to every node, e.g. BENCH_TANDEM_ENV="TANDEM_APP_STATE=memory".
read -r -a TANDEM_ENV_EXTRA <<<"${BENCH_TANDEM_ENV:-}"
start_tandem_and_etcd_clusters "${TANDEM_ENV_EXTRA[@]}"
FOLLOWER=$(first_other "$LEADER" "${NODES[@]}")
ETCD_FOLLOWER_NAME=$(first_other "$ETCD_LEADER_NAME" "${ETCD_MEMBERS[@]}")
echo "== tandem leader $LEADER, follower $FOLLOWER; etcd leader $ETCD_LEADER_NAME, follower $ETCD_FOLLOWER_NAME"

# A sanity check that each target really stores the value, before anything is timed.
VALUE=$(head -c 256 /dev/zero | tr '\0' 'v')
for port in "$ALONE_PORT" "${CLIENT[$LEADER]}" "${CLIENT[$FOLLOWER]}"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X PUT "http://127.0.0.1:$port/kv/sanity" --data "$VALUE")
  [ "$code" = 200 ] || { echo "PUT through port $port answered $code" >&2; exit 1; }
done
for m in "$ETCD_LEADER_NAME" "$ETCD_FOLLOWER_NAME"; do
  curl -s --max-time 5 -X POST "http://127.0.0.1:${ETCD_CLIENT[$m]}/v3/kv/put" \
    -d "{\"key\":\"$(printf sanity | base64)\",\"value\":\"$(printf '%s' "$VALUE" | base64 -w0)\"}" | grep -q revision ||
    { echo "etcd PUT through $m failed" >&2; exit 1; }
done

# The disk's own fsync latency bounds what one connection can do through any durable system.
FSYNC_P50_MS=$(python3 - "$CLUSTER_DATA" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
samples = []
for _ in range(200):
    os.write(fd, b"x" * 4096)
    t = time.perf_counter(); os.fdatasync(fd); samples.append((time.perf_counter() - t) * 1000)
os.close(fd); os.unlink(path)
samples.sort()
print(f"{samples[len(samples)//2]:.2f} (p99 {samples[int(len(samples)*0.99)]:.2f})")
PY
)

# The processes whose CPU a write costs: the app alone; three tandems and their apps; three etcd members.
ALONE_PIDS=("$ALONE_PID")
TANDEM_PIDS=()
for n in "${NODES[@]}"; do TANDEM_PIDS+=("${TPID[$n]}" "${APPPID[$n]}"); done
ETCD_PIDS=()
for m in "${ETCD_MEMBERS[@]}"; do ETCD_PIDS+=("${ETCD_PID[$m]}"); done

declare -A RESULT
measure() { # label connections round url lua pids...
  local label=$1 conns=$2 round=$3 url=$4 lua=$5 threads=2 before r
  shift 5
  [ "$conns" -lt 2 ] && threads=1
  run_wrk "$threads" "$conns" "$WARMUP_SECONDS" "$url" "$lua" >/dev/null
  before=$(cpu_ms "$@")
  local fsyncs_before commit_before
  fsyncs_before=$(tandem_metric "${ADMIN[$LEADER]}" tandem_fsync_total)
  commit_before=$(tandem_metric "${ADMIN[$LEADER]}" tandem_commit_index)
  r=$(run_wrk "$threads" "$conns" "$DURATION" "$url" "$lua")
  RESULT[$label,$conns,$round]="$r $(load1) $(per_k_requests "$before" "$(cpu_ms "$@")" "$(echo "$r" | cut -d' ' -f5)")"
  echo "   round $round $label c=$conns: ${RESULT[$label,$conns,$round]}  (rps p50ms p99ms errors requests load1 cpu-ms/1k)"
  if [[ $label == tandem-* ]]; then
    # The leader's own view: commit latency over its last 1024 commits and fsyncs per committed entry.
    local p50 p99 fsyncs commits
    p50=$(tandem_metric "${ADMIN[$LEADER]}" 'tandem_commit_latency_seconds{quantile="0.5"}')
    p99=$(tandem_metric "${ADMIN[$LEADER]}" 'tandem_commit_latency_seconds{quantile="0.99"}')
    fsyncs=$(( $(tandem_metric "${ADMIN[$LEADER]}" tandem_fsync_total) - fsyncs_before ))
    commits=$(( $(tandem_metric "${ADMIN[$LEADER]}" tandem_commit_index) - commit_before ))
    INTERNALS[$label,$conns,$round]="$(awk -v a="$p50" -v b="$p99" 'BEGIN { printf "%.2f %.2f", a*1000, b*1000 }') $commits $fsyncs"
  fi
}
declare -A INTERNALS EACH
LABELS=(alone tandem-leader tandem-follower etcd-leader etcd-follower)
declare -A TITLE=([alone]="example-kv alone (no replication)" [tandem-leader]="Tandem, write to the leader"
  [tandem-follower]="Tandem, write to a follower" [etcd-leader]="etcd 3.4 gateway, leader"
  [etcd-follower]="etcd 3.4 gateway, follower")
LOAD_BEFORE=$(loadavg)
measure_label() { # label connections round
  case $1 in
    alone) measure "$@" "http://127.0.0.1:$ALONE_PORT" bench/put-kv.lua "${ALONE_PIDS[@]}" ;;
    tandem-leader) measure "$@" "http://127.0.0.1:${CLIENT[$LEADER]}" bench/put-kv.lua "${TANDEM_PIDS[@]}" ;;
    tandem-follower) measure "$@" "http://127.0.0.1:${CLIENT[$FOLLOWER]}" bench/put-kv.lua "${TANDEM_PIDS[@]}" ;;
    etcd-leader) measure "$@" "http://127.0.0.1:${ETCD_CLIENT[$ETCD_LEADER_NAME]}" bench/etcd-put.lua "${ETCD_PIDS[@]}" ;;
    etcd-follower) measure "$@" "http://127.0.0.1:${ETCD_CLIENT[$ETCD_FOLLOWER_NAME]}" bench/etcd-put.lua "${ETCD_PIDS[@]}" ;;
  esac
}
for c in $CONNECTION_COUNTS; do
  echo "== $c connection(s), ${DURATION}s each after ${WARMUP_SECONDS}s warm-up, $ROUNDS rounds"
  for round in $(seq 1 "$ROUNDS"); do
    order=("${LABELS[@]}")
    if [ $((round % 2)) -eq 0 ]; then
      order=()
      for ((i = ${#LABELS[@]} - 1; i >= 0; i--)); do order+=("${LABELS[$i]}"); done
    fi
    for l in "${order[@]}"; do measure_label "$l" "$c" "$round"; done
  done
  # Each configuration's median round by requests/s stands for it; every round's requests/s goes in EACH.
  for l in "${LABELS[@]}"; do
    median=$(for round in $(seq 1 "$ROUNDS"); do echo "$(echo "${RESULT[$l,$c,$round]}" | cut -d' ' -f1) $round"; done |
      sort -n | awk '{ r[NR] = $2 } END { print r[int((NR + 1) / 2)] }')
    # ... except its errors, which are every round's: a refused write in any round is reported.
    errors=$(for round in $(seq 1 "$ROUNDS"); do echo "${RESULT[$l,$c,$round]}" | cut -d' ' -f4; done | awk '{ n += $1 } END { print n }')
    RESULT[$l,$c]=$(echo "${RESULT[$l,$c,$median]}" | awk -v e="$errors" '{ $4 = e; print }')
    [[ $l == tandem-* ]] && INTERNALS[$l,$c]=${INTERNALS[$l,$c,$median]}
    EACH[$l,$c]=$(for round in $(seq 1 "$ROUNDS"); do echo "${RESULT[$l,$c,$round]}" | cut -d' ' -f1; done | paste -sd/ | sed 's|/| / |g')
  done
done
LEADER_AFTER=$(tandem_status "${ADMIN[$LEADER]}" role)
[ "$LEADER_AFTER" = leader ] || echo "WARNING: $LEADER is no longer the Tandem leader (role $LEADER_AFTER): an election happened during the run" >&2

field() { echo "${RESULT[$1,$2]}" | cut -d' ' -f"$3"; }
echo
echo "PUT /kv/<random of 100k keys>, 256-byte value; wrk --latency, ${DURATION}s per run after ${WARMUP_SECONDS}s warm-up," \
  "each row the median of $ROUNDS alternating rounds;" \
  "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
echo "tandem $(tandem_commit_label), $(etcd --version | head -1); disk fdatasync p50 $FSYNC_P50_MS ms;" \
  "load average before $LOAD_BEFORE, after $(loadavg)"
echo
echo "| target | connections | requests/s | p50 ms | p99 ms | errors | requests/s vs app alone | CPU ms per 1k writes, all processes | load (1 min) | requests/s each round |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for c in $CONNECTION_COUNTS; do
  for l in "${LABELS[@]}"; do
    echo "| ${TITLE[$l]} | $c | $(field $l $c 1) | $(field $l $c 2) | $(field $l $c 3) | $(field $l $c 4) | $(ratio "$(field $l $c 1)" "$(field alone $c 1)") | $(field $l $c 7) | $(field $l $c 6) | ${EACH[$l,$c]} |"
  done
done
echo
echo "| Tandem / etcd, same role | connections | requests/s (>1: Tandem faster) | p50 (<1: Tandem faster) | p99 | CPU per write |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for c in $CONNECTION_COUNTS; do
  for role in leader follower; do
    echo "| $role | $c | $(ratio "$(field tandem-$role $c 1)" "$(field etcd-$role $c 1)") | $(ratio "$(field tandem-$role $c 2)" "$(field etcd-$role $c 2)") | $(ratio "$(field tandem-$role $c 3)" "$(field etcd-$role $c 3)") | $(ratio "$(field tandem-$role $c 7)" "$(field etcd-$role $c 7)") |"
  done
done
echo
echo "| Tandem leader during the run | connections | commit latency p50 ms | p99 ms | entries committed | leader fsyncs | fsyncs per entry |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for c in $CONNECTION_COUNTS; do
  for l in tandem-leader tandem-follower; do
    read -r p50 p99 commits fsyncs <<<"${INTERNALS[$l,$c]}"
    # The leader samples commit latency only for proposals made on it, not for forwarded ones.
    [ "$l" = tandem-follower ] && { p50="n/a"; p99="n/a"; }
    echo "| ${TITLE[$l]} | $c | $p50 | $p99 | $commits | $fsyncs | $(ratio "$fsyncs" "$commits") |"
  done
done
echo
echo "(commit latency is the leader's tandem_commit_latency_seconds over its last 1024 commits: from accepting a" \
  "proposal made on it to the commit index passing it; forwarded proposals are not sampled.)"
