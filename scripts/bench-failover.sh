#!/usr/bin/env bash
# Failover of a three-node Tandem cluster on loopback (WAL on a real disk, default timing settings): ROUNDS times,
# with a client writing continuously through the two other nodes, kill -9 the leader's tandem (its app keeps
# running, like a sidecar crash) and measure, from the kill,
#   - the time to a new leader (a survivor's /status says role leader in a higher term),
#   - the time to the first acknowledged write among those sent after the kill;
# then restart the killed tandem on the same data and wait until every node is ready again. At the end, checks that
# every acknowledged write of every round is on every replica's app. Prints Markdown tables for BENCHMARKS.md.
# Usage: [BIN=.build/release] scripts/bench-failover.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-20}
scripts/ensure-deps.sh
source bench/lib.sh
bench_binaries
source scripts/lib.sh
trap 'bench_keep_logs; cleanup; bench_remove_data' EXIT
bench_data_root

# BENCH_TANDEM_ENV adds settings to every node, e.g. BENCH_TANDEM_ENV="TANDEM_APP_STATE=memory".
read -r -a TANDEM_ENV_EXTRA <<<"${BENCH_TANDEM_ENV:-}"
start_tandem_cluster 3 "${TANDEM_ENV_EXTRA[@]}"
for n in "${NODES[@]}"; do wait_ready "$n"; done
ACKED="$WORKDIR/acked-keys"; : >"$ACKED"
LOAD_BEFORE=$(loadavg)
ROWS=()
DIVERGED_ROUNDS=()
TO_LEADER=(); TO_ACK=(); TO_READY=()
for round in $(seq 1 "$ROUNDS"); do
  LEADER=$(wait_cluster_leader "${NODES[@]}")
  TERM=$(tandem_status "${ADMIN[$LEADER]}" term)
  clients=""; admins=""
  for n in "${NODES[@]}"; do
    [ "$n" = "$LEADER" ] && continue
    clients+="${clients:+,}${CLIENT[$n]}"; admins+="${admins:+,}${ADMIN[$n]}"
  done
  killed_pid=${TPID[$LEADER]}
  result=$(python3 bench/failover-round.py --leader-pid "$killed_pid" --leader-term "$TERM" \
    --survivor-clients "$clients" --survivor-admins "$admins" --prefix "failover-r$round" --acked-out "$ACKED")
  forget_pid "$killed_pid"
  load=$(load1)
  read -r ms_leader ms_ack new_leader new_term acked failed failures < <(echo "$result" | python3 -c '
import json, sys
d = json.load(sys.stdin)
if "error" in d: print("error", d["error"]); sys.exit(0)
print(d["msToLeader"], d["msToAck"], d["newLeader"], d["newTerm"], d["acked"], d["failed"], "/".join(d["failures"]) or "-")')
  [ "$ms_leader" = error ] && { echo "round $round: $result" >&2; exit 1; }
  restart_start=$(now_ns)
  start_cluster_tandem "$LEADER"
  notes=""
  for n in "${NODES[@]}"; do
    rc=0; wait_ready_or_diverged "$n" || rc=$?
    [ $rc = 1 ] && exit 1
    [ $rc = 2 ] && notes+=" $n"
  done
  ms_ready=$(( ($(now_ns) - restart_start) / 1000000 ))
  [ -n "$notes" ] && DIVERGED_ROUNDS+=("round $round:$notes")
  echo "   round $round: killed $LEADER (term $TERM) -> new leader $new_leader (term $new_term) after $ms_leader ms," \
    "first acknowledged write after $ms_ack ms; $acked acked, $failed failed ($failures); restarted node ready after $ms_ready ms;" \
    "load $load${notes:+; NOT READY, flagged diverged:$notes}"
  ROWS+=("| $round | $LEADER | $new_leader | $ms_leader | $ms_ack | $acked | $failed ($failures) | $ms_ready${notes:+ (flagged diverged:$notes)} | $load |")
  TO_LEADER+=("$ms_leader"); TO_ACK+=("$ms_ack"); TO_READY+=("$ms_ready")
done

# Every acknowledged write must be on every replica, and the three apps must hold the same state (the apps are
# read directly, not through Tandem): the ground truth behind any divergence flag.
sleep 2
LOST=$(python3 - "$ACKED" "${APP[n1]}" "${APP[n2]}" "${APP[n3]}" <<'PY'
import json, sys, urllib.request
keys = set(open(sys.argv[1]).read().split())
missing, dumps = [], []
for port in sys.argv[2:]:
    raw = urllib.request.urlopen(f"http://127.0.0.1:{port}/dump", timeout=10).read()
    dumps.append(raw)
    kv = json.loads(raw)["kv"]
    missing += [f"{port}:{k}" for k in keys if k not in kv]
identical = "identical" if len(set(dumps)) == 1 else "DIFFERENT"
print(f"{len(keys)} {len(missing)} {identical} {' '.join(sorted(missing)[:5])}")
PY
)

stats() { # values... -> "p50 max" (p50 as the lower median, in the same unit)
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "%s %s\n", v[int((NR + 1) / 2)], v[NR] }'
}
read -r leader_p50 leader_max < <(stats "${TO_LEADER[@]}")
read -r ack_p50 ack_max < <(stats "${TO_ACK[@]}")
read -r ready_p50 ready_max < <(stats "${TO_READY[@]}")
read -r acked_total lost_total dumps_equal lost_examples <<<"$LOST"

echo
echo "$ROUNDS rounds of kill -9 of the leader's tandem with a client writing through the two others (a PUT every 10 ms," \
  "fresh connection each); default settings (heartbeat 100ms, phi threshold 8, election timeout 1s);" \
  "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, tandem $(tandem_commit_label);" \
  "load average before $LOAD_BEFORE, after $(loadavg)"
echo
echo "| from the kill of the leader to | p50 ms | max ms |"
echo "| --- | ---: | ---: |"
echo "| a new leader in /status | $leader_p50 | $leader_max |"
echo "| the first acknowledged write sent after the kill | $ack_p50 | $ack_max |"
echo "| (the restarted node and every other node ready again, from its restart) | $ready_p50 | $ready_max |"
echo
echo "Acknowledged writes checked on all three apps afterwards: $acked_total; missing on some replica: $lost_total" \
  "${lost_examples:-}; the three apps' /dump are $dumps_equal."
if [ ${#DIVERGED_ROUNDS[@]} -gt 0 ]; then
  echo "Nodes flagged diverged (so not ready) after the restart: ${DIVERGED_ROUNDS[*]}"
fi
echo
echo "<details><summary>Every round</summary>"
echo
echo "| round | killed | new leader | ms to leader | ms to first ack | acked | failed (kinds) | ms to ready after restart | load (1 min) |"
echo "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${ROWS[@]}"
echo
echo "</details>"
[ "$lost_total" = 0 ] || { echo "ACKNOWLEDGED WRITES MISSING" >&2; exit 1; }
[ "$dumps_equal" = identical ] || { echo "REPLICAS DIFFER" >&2; exit 1; }
