#!/usr/bin/env bash
# Snapshots and log compaction, side by side in one run:
#   growth  - for a 1-node and a 3-node cluster, write 1 KiB values to 1000 keys (PUT /kv/k<n>, wrk) up to each
#             checkpoint (default 10k, 100k, 1M writes) and record the leader tandem's RSS and data directory
#             (du -sb), then restart one node (its tandem and its in-memory app) and time tandem's start to /readyz
#             200. Once with snapshots on (example-kv's GET/PUT /snapshot hooks, default cadence and retention), once
#             with compaction off (no hooks and TANDEM_SNAPSHOT_EVERY at its maximum, so the log is never cut).
#   transfer - a 3-node cluster builds a large app state from 8 MiB values, every node snapshots it, then a wiped
#             follower is started: time from its start to tandem_snapshot_installs_total = 1 (and the transfer part
#             alone, from its log), against the floor on the same machine: the same number of bytes copied over a
#             loopback socket into a file on the same disk, with fsync.
# Every app is example-kv, which keeps its state in memory, so every node runs with TANDEM_APP_STATE=memory.
# Prints Markdown tables for BENCHMARKS.md, with the load average.
# Usage: [BIN=.build/release] scripts/bench-snapshots.sh [1-node checkpoints] [3-node checkpoints] [8 MiB values]
#   e.g. scripts/bench-snapshots.sh "10000 100000 1000000" "10000 100000" 127   (127 x 8 MiB = 1016 MiB:
#   example-kv's store holds at most 1 GiB including keys). An empty list skips that cluster; 0 values skips transfer.
# EXAMPLE_KV_ARGS passes options to every example-kv: on a loaded machine a 1 GiB state takes example-kv longer than
#   its 60 s connection timeout to produce and send for GET /snapshot, which then fails; --idle-timeout 600 lifts it.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A CHECKPOINTS=([1]=${1-"10000 100000 1000000"} [3]=${2-"10000 100000"})
BIG_VALUES=${3-127}
KEYS=1000
CONNECTIONS=64
scripts/ensure-deps.sh
source bench/lib.sh
bench_install wrk
bench_binaries
source scripts/lib.sh
trap 'bench_keep_logs; cleanup; bench_remove_data' EXIT
bench_data_root

HOOKS=("TANDEM_SNAPSHOT_SAVE=GET /snapshot" "TANDEM_SNAPSHOT_RESTORE=PUT /snapshot")
SNAPSHOTS_ON=(TANDEM_APP_STATE=memory "${HOOKS[@]}")
COMPACTION_OFF=(TANDEM_APP_STATE=memory TANDEM_SNAPSHOT_EVERY=1000000000)
read -r -a TANDEM_ENV_EXTRA <<<"${BENCH_TANDEM_ENV:-}"

# The load: each wrk thread stops once it has its share of 2xx answers (a few writes in flight on other connections
# may land too; the tables count log entries from the commit index, not from wrk).
PUT_LUA="$WORKDIR/put-1k.lua"
cat >"$PUT_LUA" <<LUA
local KEYS = $KEYS
local body = string.rep("v", 1024)
local headers = { ["Content-Type"] = "application/octet-stream" }
local threads = {}
local count = 0
function setup(thread)
  count = count + 1
  thread:set("seed", count)
  table.insert(threads, thread)
end
function init(args)
  target = tonumber(args[1])
  ok, bad = 0, 0
  math.randomseed(os.time() * 1000 + (seed or 0))
end
function request()
  return wrk.format("PUT", "/kv/k" .. math.random(0, KEYS - 1), headers, body)
end
function response(status, hdrs, resp)
  if status >= 200 and status < 300 then ok = ok + 1 else bad = bad + 1 end
  if ok >= target then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  io.write(string.format("WRITES ok=%d bad=%d errors=%d\n", o, b,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

# write_n PORT ADMIN_PORT COUNT: COUNT acknowledged writes through PORT; prints "ok bad errors seconds". wrk's main
# thread sleeps for the whole -d even once every thread has stopped, so it is interrupted (SIGINT: it still prints
# its summary) once the leader's commit index has moved COUNT entries on.
write_n() {
  local port=$1 admin=$2 count=$3 out start base wrk_pid commit
  out="$WORKDIR/wrk-$port-$count-$(now_ns).log"
  base=$(status_int "$admin" commitIndex)
  start=$(now_ns)
  wrk -t2 -c"$CONNECTIONS" -d3600s --timeout 30s -s "$PUT_LUA" "http://127.0.0.1:$port" -- $(((count + 1) / 2)) \
    >"$out" 2>&1 &
  wrk_pid=$!
  PIDS+=("$wrk_pid")
  while kill -0 "$wrk_pid" 2>/dev/null; do
    commit=$(status_int "$admin" commitIndex)
    [ -n "$commit" ] && [ "$commit" -ge $((base + count)) ] && break
    sleep 0.1
  done
  local secs
  secs=$(awk -v a="$start" -v b="$(now_ns)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  kill -INT "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" || true
  forget_pid "$wrk_pid"
  sed -n 's/^WRITES ok=\([0-9]*\) bad=\([0-9]*\) errors=\([0-9]*\)$/\1 \2 \3/p' "$out" | tr '\n' ' '
  echo "$secs"
}

status_expr() {  # ADMIN_PORT PYTHON-EXPRESSION-ON-d: one value from /status ("" when unreachable)
  curl -s --max-time 2 "http://127.0.0.1:$1/status" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null || true
}
status_int() {  # ADMIN_PORT FIELD: a top-level integer of /status, without starting a Python per poll
  curl -s --max-time 2 "http://127.0.0.1:$1/status" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" || true
}
rss_mib() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
hwm_mib() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
du_mib() { du -sb "$1" | awk '{ printf "%.1f", $1 / 1048576 }'; }

# wait_applied NODES...: waits until every node has applied its leader's commit index, then a second more for
# a snapshot and compaction that this may have started to finish (both are asynchronous).
wait_applied() {
  local n commit applied all
  for _ in $(seq 1 6000); do
    commit=$(status_int "${ADMIN[$LEADER]}" commitIndex)
    all=1
    for n in "$@"; do
      applied=$(status_int "${ADMIN[$n]}" appliedIndex)
      [ -n "$applied" ] && [ -n "$commit" ] && [ "$applied" -ge "$commit" ] || all=0
    done
    [ $all = 1 ] && { sleep 1; return 0; }
    sleep 0.1
  done
  echo "nodes $* did not apply the commit index $commit" >&2
  return 1
}

# A restarted tandem recovers its whole WAL before it listens: lib.sh's waits get up to 30 min.
WAIT_FOR_LINE_SECONDS=1800

# stop_pid PID: SIGTERM, then waits (up to 30 s, then SIGKILL) until the process is gone; forgets it.
stop_pid() {
  local pid=$1 state
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do
    state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || echo gone)
    [ "$state" = gone ] || [ "$state" = Z ] && break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

# restart_app NODE: a fresh example-kv (empty state) on the node's app port. With hooks it is started before its
# tandem, which restores it from its latest snapshot at start; without them after its tandem, since an in-memory
# app is replayed only once its tandem has seen it restart. (With hooks and the app second, the restore at start
# fails and is retried a second later, which would add up to a second to every restart.)
restart_app() {
  local n=$1 log="$WORKDIR/app-$1.log"
  rm -f "$log"
  # shellcheck disable=SC2086
  "$BIN/example-kv" --port "${APP[$n]}" ${EXAMPLE_KV_ARGS:-} >"$log" 2>&1 &
  APPPID[$n]=$!
  disown "${APPPID[$n]}"
  PIDS+=("${APPPID[$n]}")
  wait_for_line "$log" "listening on" >/dev/null
}

# wait_ready_long NODE SECONDS: waits for /readyz 200 (a restart of a long uncompacted log replays all of it).
wait_ready_long() {
  local deadline=$(($(date +%s) + $2))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:${ADMIN[$1]}/readyz")" = 200 ] && return 0
    sleep 0.05
  done
  echo "$1 not ready after $2 s: $(curl -s --max-time 1 "http://127.0.0.1:${ADMIN[$1]}/readyz")" >&2
  return 1
}

stop_cluster() {
  local n
  for n in "${NODES[@]}"; do stop_pid "${TPID[$n]}"; stop_pid "${APPPID[$n]}"; done
  rm -rf "$CLUSTER_DATA"
}

# ---------------------------------------------------------------------------------------------------------------
# Growth: memory, disk and restart time against the number of writes.
GROWTH_ROWS=()
declare -A FIG
run_growth() {  # NODE_COUNT CONFIG_NAME VAR=VALUE...
  local count=$1 config=$2 n restart_node written=0 cp
  shift 2
  start_tandem_cluster "$count" "$@" "${TANDEM_ENV_EXTRA[@]}"
  LEADER=$(wait_cluster_leader "${NODES[@]}")
  for n in "${NODES[@]}"; do wait_ready "$n"; done
  restart_node=$(first_other "$LEADER" "${NODES[@]}")
  restart_node=${restart_node:-$LEADER}  # one node: it restarts itself
  echo "== $count node(s), $config: leader $LEADER, restarting $restart_node at each checkpoint" >&2
  for cp in ${CHECKPOINTS[$count]}; do
    local ok bad errs secs
    read -r ok bad errs secs < <(write_n "${CLIENT[$LEADER]}" "${ADMIN[$LEADER]}" $((cp - written)))
    written=$cp
    wait_applied "${NODES[@]}"
    local entries rss hwm data logstart wal rate
    entries=$(status_expr "${ADMIN[$LEADER]}" 'd["commitIndex"]')
    rss=$(rss_mib "${TPID[$LEADER]}"); hwm=$(hwm_mib "${TPID[$LEADER]}")
    data=$(du_mib "$CLUSTER_DATA/$LEADER")
    logstart=$(status_expr "${ADMIN[$LEADER]}" 'd["snapshot"]["logStartIndex"]')
    wal=$(tandem_metric "${ADMIN[$LEADER]}" tandem_wal_size_bytes | awk '{ printf "%.1f", $1 / 1048576 }')
    rate=$(awk -v n="$ok" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
    # Restart one node: its app (empty again) and its tandem, timed from tandem's launch to /readyz 200.
    local load start ready_s rss_after
    load=$(load1)
    stop_pid "${TPID[$restart_node]}"; stop_pid "${APPPID[$restart_node]}"
    if [ "$config" = "snapshots on" ]; then  # tandem restores whatever app it finds from its latest snapshot
      restart_app "$restart_node"
      start=$(now_ns)
      start_cluster_tandem "$restart_node"
    else  # tandem must see the app restart to know that its state is gone
      start=$(now_ns)
      start_cluster_tandem "$restart_node"
      restart_app "$restart_node"
    fi
    wait_ready_long "$restart_node" 3600
    ready_s=$(awk -v a="$start" -v b="$(now_ns)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    rss_after=$(rss_mib "${TPID[$restart_node]}")
    [ "$count" = 1 ] && LEADER=$(wait_cluster_leader "${NODES[@]}")
    FIG[$count,$config,$cp]="$rss $data $ready_s"
    GROWTH_ROWS+=("| $count | $config | $cp | $entries | $rate | $bad/$errs | $rss | $hwm | $data | $wal | $logstart | $ready_s | $rss_after | $load |")
    echo "   $cp writes: ${GROWTH_ROWS[-1]}" >&2
  done
  stop_cluster
}

if [ -n "${CHECKPOINTS[1]}${CHECKPOINTS[3]}" ]; then
  for count in 1 3; do
    [ -n "${CHECKPOINTS[$count]}" ] || continue
    run_growth "$count" "snapshots on" "${SNAPSHOTS_ON[@]}"
    run_growth "$count" "compaction off" "${COMPACTION_OFF[@]}"
  done
  echo
  echo "Growth: wrk -t2 -c$CONNECTIONS, PUT /kv/k<0..$((KEYS - 1))> with 1 KiB bodies, to the leader; $(nproc) cores;" \
    "tandem $(tandem_commit_label)"
  echo
  echo "| nodes | config | writes | log entries | writes/s | non-2xx/socket errors | leader RSS MiB | leader peak RSS MiB | leader data dir MiB | WAL MiB | log start index | restart to /readyz s | RSS after restart MiB | load (1 min) |"
  echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  printf '%s\n' "${GROWTH_ROWS[@]}"
  echo
  echo "| nodes | writes | RSS off / on | data dir off / on | restart time off / on |"
  echo "| ---: | ---: | ---: | ---: | ---: |"
  for count in 1 3; do
    for cp in ${CHECKPOINTS[$count]}; do
      read -r rss_on data_on ready_on <<<"${FIG[$count,snapshots on,$cp]}"
      read -r rss_off data_off ready_off <<<"${FIG[$count,compaction off,$cp]}"
      echo "| $count | $cp | $(ratio "$rss_off" "$rss_on") | $(ratio "$data_off" "$data_on") | $(ratio "$ready_off" "$ready_on") |"
    done
  done
fi

# ---------------------------------------------------------------------------------------------------------------
# Transfer: a large state to a wiped follower, against a plain loopback copy of the same bytes.
if [ "$BIG_VALUES" -gt 0 ]; then
  STATE_MIB=$((BIG_VALUES * 8))
  start_tandem_cluster 3 "${SNAPSHOTS_ON[@]}" TANDEM_MAX_BODY=16MiB TANDEM_SNAPSHOT_EVERY="${STATE_MIB}MiB" \
    TANDEM_LOG_RETAIN=0 "${TANDEM_ENV_EXTRA[@]}"
  LEADER=$(wait_cluster_leader "${NODES[@]}")
  for n in "${NODES[@]}"; do wait_ready "$n"; done
  WIPED=$(first_other "$LEADER" "${NODES[@]}")
  echo "== transfer: leader $LEADER, $BIG_VALUES x 8 MiB values ($STATE_MIB MiB), then wipe $WIPED" >&2
  # example-kv closes a connection idle for 60 s, and a tandem with hooks takes the close of its idle apply
  # connection for an app restart (a restore from the latest snapshot, then a replay). A small write every 10 s
  # keeps the apply connections busy while measuring; what an idle minute costs is measured at the end.
  (while :; do
    curl -s -o /dev/null --max-time 5 -X PUT --data tick "http://127.0.0.1:${CLIENT[$LEADER]}/kv/tick" || true
    sleep 10
  done) &
  TICKER=$!
  PIDS+=("$TICKER")
  VALUE_FILE="$WORKDIR/value-8m"
  head -c $((8 << 20)) /dev/zero | tr '\0' 'v' >"$VALUE_FILE"
  build_start=$(now_ns)
  for i in $(seq 1 "$BIG_VALUES"); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 120 -X PUT --data-binary "@$VALUE_FILE" \
      "http://127.0.0.1:${CLIENT[$LEADER]}/kv/big$i")
    [ "$code" = 200 ] || { echo "PUT /kv/big$i answered $code" >&2; exit 1; }
  done
  build_s=$(awk -v a="$build_start" -v b="$(now_ns)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  last_big=$(status_expr "${ADMIN[$LEADER]}" 'd["commitIndex"]')
  for n in "${NODES[@]}"; do  # every node snapshots the state itself; the leader's log is then cut behind it
    for _ in $(seq 1 3000); do
      idx=$(tandem_metric "${ADMIN[$n]}" tandem_snapshot_index)
      [ -n "$idx" ] && awk -v a="$idx" -v b="$last_big" 'BEGIN { exit !(a >= b) }' && break
      sleep 0.2
    done
  done
  logstart=$(status_expr "${ADMIN[$LEADER]}" 'd["snapshot"]["logStartIndex"]')
  [ "$logstart" -gt 1 ] || { echo "the leader's log was not compacted (start $logstart)" >&2; exit 1; }
  snapshot_file=$(find "$CLUSTER_DATA/$LEADER" -type f -name 'snapshot-*.snap' | sort | tail -1)  # the newest: sent
  snapshot_bytes=$(stat -c %s "$snapshot_file")
  leader_hwm_before=$(hwm_mib "${TPID[$LEADER]}")
  load_before=$(load1)

  stop_pid "${TPID[$WIPED]}"; stop_pid "${APPPID[$WIPED]}"
  rm -rf "${CLUSTER_DATA:?}/$WIPED"
  restart_app "$WIPED"
  start=$(now_ns)
  start_cluster_tandem "$WIPED"
  installed=""
  for _ in $(seq 1 36000); do
    [ "$(tandem_metric "${ADMIN[$WIPED]}" tandem_snapshot_installs_total)" = 1 ] && { installed=$(now_ns); break; }
    sleep 0.05
  done
  [ -n "$installed" ] || { echo "$WIPED installed no snapshot" >&2; exit 1; }
  wait_ready_long "$WIPED" 600
  ready=$(now_ns)
  to_install_s=$(awk -v a="$start" -v b="$installed" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
  to_ready_s=$(awk -v a="$start" -v b="$ready" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
  wiped_hwm=$(hwm_mib "${TPID[$WIPED]}"); wiped_app_hwm=$(hwm_mib "${APPPID[$WIPED]}")
  leader_hwm_after=$(hwm_mib "${TPID[$LEADER]}")
  load_after=$(load1)
  # The wiped node's log: receiving (staging opened) -> restoring the app (file received, verified, synced) ->
  # app restored -> snapshot installed.
  read -r t_recv t_restore t_restored t_installed < <(python3 - "$WORKDIR/$WIPED.log" <<'PY'
import datetime, json, sys
marks = {"receiving a snapshot": None, "restoring the app from a snapshot": None,
         "app restored from a snapshot": None, "snapshot installed": None}
for line in open(sys.argv[1]):
    try:
        d = json.loads(line)
    except ValueError:
        continue
    if d.get("msg") in marks and marks[d["msg"]] is None:
        marks[d["msg"]] = datetime.datetime.strptime(d["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
print(*[("%.3f" % v if v is not None else "nan") for v in marks.values()])
PY
)
  transfer_s=$(awk -v a="$t_recv" -v b="$t_restore" 'BEGIN { printf "%.2f", b - a }')
  restore_s=$(awk -v a="$t_restore" -v b="$t_restored" 'BEGIN { printf "%.2f", b - a }')
  app_bytes=$(curl -s --max-time 60 "http://127.0.0.1:${APP[$WIPED]}/dump" | wc -c)
  leader_app_bytes=$(curl -s --max-time 60 "http://127.0.0.1:${APP[$LEADER]}/dump" | wc -c)

  # The floor: the same file, over a loopback socket, into a file on the same disk, fsync'd. The source file is in
  # the page cache for both (the leader wrote it moments ago).
  FLOOR_DIR="$BENCH_DATA/floor"; mkdir -p "$FLOOR_DIR"
  floor_s=$(python3 - "$snapshot_file" "$FLOOR_DIR/copy" <<'PY'
import os, socket, sys, threading, time
source, target = sys.argv[1], sys.argv[2]
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
def receive():
    conn, _ = server.accept()
    fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    while True:
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
    os.fsync(fd)
    os.close(fd)
    conn.close()
start = time.monotonic()
receiver = threading.Thread(target=receive)
receiver.start()
client = socket.create_connection(server.getsockname())
with open(source, "rb") as f:
    offset, size = 0, os.fstat(f.fileno()).st_size
    while offset < size:
        offset += os.sendfile(client.fileno(), f.fileno(), offset, size - offset)
client.close()
receiver.join()
print("%.2f" % (time.monotonic() - start))
PY
)
  rm -rf "$FLOOR_DIR"
  mib=$(awk -v b="$snapshot_bytes" 'BEGIN { printf "%.0f", b / 1048576 }')
  echo
  echo "Transfer: 3 nodes, $BIG_VALUES x 8 MiB values through the leader (${build_s} s), TANDEM_SNAPSHOT_EVERY=${STATE_MIB}MiB," \
    "TANDEM_LOG_RETAIN=0; load $load_before before, $load_after after"
  echo
  echo "| what | seconds | MiB/s | vs floor (time) |"
  echo "| --- | ---: | ---: | ---: |"
  echo "| wiped follower: tandem start to tandem_snapshot_installs_total = 1 | $to_install_s | $(awk -v m="$mib" -v s="$to_install_s" 'BEGIN { printf "%.0f", m / s }') | $(ratio "$to_install_s" "$floor_s") |"
  echo "| of which the transfer (\"receiving a snapshot\" to \"restoring the app\": received, verified, synced) | $transfer_s | $(awk -v m="$mib" -v s="$transfer_s" 'BEGIN { printf "%.0f", m / s }') | $(ratio "$transfer_s" "$floor_s") |"
  echo "| of which the restore into the app (PUT /snapshot) | $restore_s | | |"
  echo "| wiped follower: tandem start to /readyz 200 | $to_ready_s | | $(ratio "$to_ready_s" "$floor_s") |"
  echo "| floor: the same $snapshot_bytes bytes over a loopback socket into a file, fsync | $floor_s | $(awk -v m="$mib" -v s="$floor_s" 'BEGIN { printf "%.0f", m / s }') | 1.00 |"
  echo
  echo "Snapshot file $snapshot_bytes bytes; app /dump after: wiped $app_bytes bytes, leader $leader_app_bytes bytes." \
    "Peak RSS MiB over the whole run: wiped tandem $wiped_hwm, wiped app $wiped_app_hwm, leader tandem $leader_hwm_before before and $leader_hwm_after after the transfer."

  # An idle minute: the ticker stops, example-kv closes the idle apply connections after 60 s, and every tandem
  # restores its app from the latest snapshot (the whole state) and replays the log after it.
  stop_pid "$TICKER"
  declare -A LOG_LINES
  for n in "${NODES[@]}"; do LOG_LINES[$n]=$(wc -l <"$WORKDIR/$n.log"); done
  sleep 90
  echo
  echo "After 90 s without writes (the ticker stopped):"
  echo
  echo "| node | \"treating it as a restart\" lines | restore ms (from its log) | replay finished | /readyz after 90 s | app peak RSS MiB (whole run) |"
  echo "| --- | ---: | ---: | --- | --- | ---: |"
  for n in "${NODES[@]}"; do
    fresh=$(tail -n +$((LOG_LINES[$n] + 1)) "$WORKDIR/$n.log")
    closes=$(grep -c 'treating it as a restart' <<<"$fresh" || true)
    # (no restore at all is the expected outcome now: grep finds nothing, which must not end the script)
    restore_ms=$( (grep '"app restored from a snapshot"' <<<"$fresh" || true) | sed -n 's/.*"ms":"\([0-9]*\)".*/\1/p' | tr '\n' ' ')
    finished=$(grep -c '"replay finished' <<<"$fresh" || true)
    ready=$(curl -s --max-time 2 "http://127.0.0.1:${ADMIN[$n]}/readyz")
    echo "| $n | $closes | ${restore_ms:-none} | $finished | \`$ready\` | $(hwm_mib "${APPPID[$n]}") |"
  done
fi
