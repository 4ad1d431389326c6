#!/usr/bin/env bash
# Helpers shared by the scripts/bench-*.sh benchmarks, on top of scripts/lib.sh (which owns process start-up and
# the cleanup trap that stops every started PID). This file only adds measuring and cluster plumbing; it never
# kills anything by name and never writes outside the run's own directories.

# bench_binaries: sets BIN. With BIN unset it builds the release binaries the README's way (a no-op when they are
# up to date) and uses .build/release; with BIN set it uses those binaries as they are.
bench_binaries() {
  if [ -z "${BIN:-}" ]; then
    swift build -c release 2>&1 | tail -1
    BIN=.build/release
  fi
  for exe in tandem example-kv; do
    [ -x "$BIN/$exe" ] || { echo "no $BIN/$exe: build with 'swift build -c release' or set BIN" >&2; exit 1; }
  done
}

# haproxy_reverse_proxy_config LISTEN_PORT APP_PORT: prints the haproxy configuration the read benchmarks compare
# Tandem with: an HTTP reverse proxy on 127.0.0.1:LISTEN_PORT with keep-alive to the app, one thread like tandem.
# With BENCH_HAPROXY_FORWARDED=1, haproxy also adds the two fields Tandem adds to every request (X-Forwarded-For and
# Forwarded, the same bytes), so that both proxies send the app the same request.
haproxy_reverse_proxy_config() {
  local forwarded=""
  if [ "${BENCH_HAPROXY_FORWARDED:-0}" = 1 ]; then
    forwarded=$'\n  option forwardfor\n  http-request add-header Forwarded "for=%[src];proto=http"'
  fi
  cat <<CFG
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
  bind 127.0.0.1:$1
  default_backend be$forwarded
backend be
  server app 127.0.0.1:$2 maxconn 1000
CFG
}

# bench_install TOOL [PACKAGE]: installs a missing tool with apt-get (Debian package names).
bench_install() {
  local tool=$1 pkg=${2:-$1}
  command -v "$tool" >/dev/null 2>&1 && return 0
  local sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get install -y --no-install-recommends "$pkg" >/dev/null 2>&1 ||
    { $sudo_cmd apt-get update >/dev/null && $sudo_cmd apt-get install -y --no-install-recommends "$pkg" >/dev/null; }
}

# bench_data_root: sets BENCH_DATA, a directory for durable data on a real disk. Benchmarks of fsync on tmpfs
# measure nothing, so when the run directory is on tmpfs it uses BENCH_DATA_ROOT (default: bench/.data in the
# repository) and bench_remove_data removes it on exit. Call it in the script itself, not in $(...).
bench_data_root() {
  BENCH_DATA="$WORKDIR/data"
  if [ "$(stat -f -c %T "$WORKDIR")" = "tmpfs" ]; then
    mkdir -p "${BENCH_DATA_ROOT:-bench/.data}"
    BENCH_DATA=$(mktemp -d "${BENCH_DATA_ROOT:-bench/.data}/run-XXXXXX")
  fi
  mkdir -p "$BENCH_DATA"
  [ "$(stat -f -c %T "$BENCH_DATA")" != "tmpfs" ] || echo "WARNING: $BENCH_DATA is on tmpfs: fsync costs nothing there" >&2
}
# bench_keep_logs: when BENCH_KEEP_LOGS names a directory, copies the run's process logs there (call it on exit,
# before cleanup removes WORKDIR), so a failure can be examined afterwards.
bench_keep_logs() {
  [ -n "${BENCH_KEEP_LOGS:-}" ] || return 0
  mkdir -p "$BENCH_KEEP_LOGS" && cp "$WORKDIR"/*.log "$BENCH_KEEP_LOGS"/ 2>/dev/null || true
}
bench_remove_data() { case "${BENCH_DATA:-}" in "$WORKDIR"/*|"") ;; *) rm -rf "$BENCH_DATA" ;; esac; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# tandem_commit_label: the commit the tables name for the tandem measured: BENCH_TANDEM_COMMIT when the binaries come
# from elsewhere (BIN), else the checkout's HEAD.
tandem_commit_label() { echo "${BENCH_TANDEM_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}"; }
# first_other EXCLUDED NAME...: prints the first NAME that is not EXCLUDED (a follower, given the leader), or nothing.
first_other() {
  local excluded=$1 name
  shift
  for name in "$@"; do [ "$name" != "$excluded" ] && { echo "$name"; return 0; }; done
  return 0
}
load1() { cut -d' ' -f1 /proc/loadavg; }
now_ns() { date +%s%N; }

# forget_pid PID: drops a PID the script killed on purpose from the cleanup list, so a reused PID is never signalled.
forget_pid() {
  local gone=$1 kept=() p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && [ "$p" != "$gone" ] && kept+=("$p"); done
  PIDS=("${kept[@]:-}")
}

# to_ms LATENCY: wrk latency (1.23ms, 456.00us, 1.02s, 2.00m) -> milliseconds.
to_ms() {
  echo "$1" | awk '{ v=$1
    if (v ~ /us$/) { sub(/us$/,"",v); printf "%.3f\n", v/1000 }
    else if (v ~ /ms$/) { sub(/ms$/,"",v); printf "%.2f\n", v }
    else if (v ~ /m$/) { sub(/m$/,"",v); printf "%.0f\n", v*60000 }
    else { sub(/s$/,"",v); printf "%.0f\n", v*1000 } }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }

# run_wrk THREADS CONNECTIONS SECONDS URL [LUA]: prints "rps p50ms p99ms errors requests" where errors counts
# non-2xx/3xx answers plus socket errors (connect, read, write, timeout), so a fast stream of 503s never passes
# for throughput. The whole wrk output is kept in $WORKDIR/wrk-<n>.log (copied out by BENCH_KEEP_LOGS).
WRK_RUN=0
run_wrk() {
  local threads=$1 conns=$2 secs=$3 url=$4 lua=${5:-}
  WRK_RUN=$((WRK_RUN + 1))
  local out="$WORKDIR/wrk-$WRK_RUN.log"
  if [ -n "$lua" ]; then
    wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s --latency -s "$lua" "$url" >"$out" 2>&1 || true
  else
    wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s --latency "$url" >"$out" 2>&1 || true
  fi
  local rps p50 p99 non2xx sockerr total
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$out")
  p50=$(awk '$1=="50%" {print $2}' "$out")
  p99=$(awk '$1=="99%" {print $2}' "$out")
  non2xx=$(awk '/Non-2xx or 3xx responses/ {print $5}' "$out")
  sockerr=$(awk '/Socket errors/ { n=0; for (i=1;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) n += $i+0; print n }' "$out")
  total=$(awk '/requests in/ {print $1}' "$out")
  echo "${rps:-0} $(to_ms "${p50:-0us}") $(to_ms "${p99:-0us}") $(( ${non2xx:-0} + ${sockerr:-0} )) ${total:-0}"
}

# tandem_status ADMIN_PORT FIELD: prints one top-level field of /status (role, leader, term, commitIndex, ...).
tandem_status() {
  curl -s --max-time 1 "http://127.0.0.1:$1/status" |
    python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$2" 2>/dev/null
}

# start_tandem_cluster N [VAR=VALUE ...]: starts N example-kv apps and N tandems forming one cluster, with WAL data
# under BENCH_DATA (call bench_data_root first). Sets the arrays NODES, PEER, CLIENT, ADMIN, APP, APPPID, TPID and
# the string PEERS.
declare -a NODES=()
declare -A PEER CLIENT ADMIN APP APPPID TPID
CLUSTER_DATA=""
CLUSTER_EXTRA=()
start_tandem_cluster() {
  local count=$1 n i
  shift
  CLUSTER_EXTRA=("$@")
  CLUSTER_DATA="$BENCH_DATA/tandem"
  NODES=()
  for i in $(seq 1 "$count"); do NODES+=("n$i"); PEER[n$i]=$(free_port); done
  PEERS=""
  for n in "${NODES[@]}"; do PEERS+="${PEERS:+,}$n=127.0.0.1:${PEER[$n]}"; done
  for n in "${NODES[@]}"; do
    start_app "app-$n"; APP[$n]=$APP_PORT; APPPID[$n]=$APP_PID
    start_cluster_tandem "$n"
  done
}

# start_cluster_tandem NODE: (re)starts one node's tandem with its fixed peer port and its data directory.
start_cluster_tandem() {
  local n=$1
  rm -f "$WORKDIR/$n.log"  # a restart must not read the previous process's "listening" line
  start_tandem "$n" "${APP[$n]}" TANDEM_PEERS="$PEERS" TANDEM_PEER_LISTEN="127.0.0.1:${PEER[$n]}" \
    TANDEM_CLUSTER_SECRET=bench-cluster-secret-0123456789 TANDEM_DATA_DIR="$CLUSTER_DATA/$n" \
    "${CLUSTER_EXTRA[@]}"
  CLIENT[$n]=$CLIENT_PORT; ADMIN[$n]=$ADMIN_PORT; TPID[$n]=$TANDEM_PID
}

# start_tandem_and_etcd_clusters [TANDEM SETTINGS...]: a three-node Tandem cluster (with its apps; the settings go to
# every node) and a three-member etcd cluster side by side; returns once both have a leader and every Tandem node is
# ready. Sets LEADER and ETCD_LEADER_NAME besides what the two start functions set.
start_tandem_and_etcd_clusters() {
  local n
  start_tandem_cluster 3 "$@"
  start_etcd_cluster 3
  LEADER=$(wait_cluster_leader "${NODES[@]}")
  for n in "${NODES[@]}"; do wait_ready "$n"; done
  ETCD_LEADER_NAME=$(etcd_leader)
}

# wait_cluster_leader [NODES...]: waits up to 20 s until a node of the list reports itself leader; prints its id.
wait_cluster_leader() {
  local n
  for _ in $(seq 1 400); do
    for n in "$@"; do
      if [ "$(tandem_status "${ADMIN[$n]}" role)" = "leader" ]; then echo "$n"; return 0; fi
    done
    sleep 0.05
  done
  echo "no leader among $*" >&2
  return 1
}

# wait_ready_or_diverged NODE: like wait_ready, but returns 2 (without waiting longer) once the only reason NODE is
# not ready is "diverged", a sticky flag that a benchmark should report rather than wait on.
wait_ready_or_diverged() {
  local body
  for _ in $(seq 1 600); do
    body=$(curl -s --max-time 1 -w ' %{http_code}' "http://127.0.0.1:${ADMIN[$1]}/readyz" || true)
    [ "${body##* }" = 200 ] && return 0
    echo "$body" | grep -q '"reasons":\["diverged"\]' && return 2
    sleep 0.05
  done
  echo "$1 not ready after 30 s: $body" >&2
  return 1
}

# wait_ready NODE: waits up to 30 s for /readyz 200 on NODE.
wait_ready() { wait_ready_port "${ADMIN[$1]}" "$1"; }

# start_tandem_under_callgrind: a one-node tandem in front of $APP_PORT, run by valgrind's callgrind (output in
# $WORKDIR/tandem.cg.*); sets TPID (valgrind's PID, which callgrind_control takes), CLIENT_PORT and ADMIN_PORT.
start_tandem_under_callgrind() {
  RUN_TANDEM_UNDER="valgrind --tool=callgrind --callgrind-out-file=$WORKDIR/tandem.cg" start_tandem n1 "$APP_PORT"
  TPID=$TANDEM_PID
}

# wait_ready_port ADMIN_PORT [NAME]: waits up to 30 s for /readyz 200 on the node whose admin port is ADMIN_PORT.
wait_ready_port() {
  for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$1/readyz")" = 200 ] && return 0
    sleep 0.05
  done
  echo "${2:-the node on admin port $1} not ready after 30 s: $(curl -s --max-time 1 "http://127.0.0.1:$1/readyz")" >&2
  return 1
}

# start_read_proxies: the read benchmarks' setup. example-kv holding a 128-byte value at /kv/bench, a one-node tandem
# in front of it (ready: it has elected itself and caught up) and haproxy in front of it too
# (haproxy_reverse_proxy_config). Sets APP_PORT/APP_PID, CLIENT_PORT/ADMIN_PORT/TANDEM_PID, HAPROXY_PORT/HAPROXY_PID;
# returns 1 with a message unless a GET of /kv/bench answers the value directly and through both proxies.
start_read_proxies() {
  bench_install haproxy
  start_app app
  curl -s -X PUT "http://127.0.0.1:$APP_PORT/kv/bench" --data "$(head -c 128 /dev/zero | tr '\0' 'v')" >/dev/null
  start_tandem n1 "$APP_PORT"
  wait_ready_port "$ADMIN_PORT" n1 || return 1
  HAPROXY_PORT=$(free_port)
  haproxy_reverse_proxy_config "$HAPROXY_PORT" "$APP_PORT" >"$WORKDIR/haproxy.cfg"
  haproxy -f "$WORKDIR/haproxy.cfg" -db >"$WORKDIR/haproxy.log" 2>&1 &
  HAPROXY_PID=$!
  disown "$HAPROXY_PID"
  PIDS+=("$HAPROXY_PID")
  for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$HAPROXY_PORT/kv/bench" && break; sleep 0.05; done
  local port
  for port in "$APP_PORT" "$CLIENT_PORT" "$HAPROXY_PORT"; do
    [ "$(curl -s "http://127.0.0.1:$port/kv/bench" | wc -c)" = 128 ] || {
      echo "GET /kv/bench through port $port is not the value" >&2
      tail -5 "$WORKDIR"/*.log >&2
      return 1
    }
  done
}

# start_etcd_cluster N: starts an N-member etcd cluster on loopback (Debian's etcd-server), data on a real disk,
# default fsync and timing settings. Sets ETCD_MEMBERS, ETCD_CLIENT[name], ETCD_PID[name].
declare -a ETCD_MEMBERS=()
declare -A ETCD_CLIENT ETCD_PEER ETCD_PID
start_etcd_cluster() {
  local count=$1 i m cluster="" data="$BENCH_DATA/etcd"
  ETCD_MEMBERS=()
  for i in $(seq 1 "$count"); do
    m="e$i"; ETCD_MEMBERS+=("$m"); ETCD_CLIENT[$m]=$(free_port); ETCD_PEER[$m]=$(free_port)
    cluster+="${cluster:+,}$m=http://127.0.0.1:${ETCD_PEER[$m]}"
  done
  for m in "${ETCD_MEMBERS[@]}"; do
    etcd --name "$m" --data-dir "$data/$m" \
      --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[$m]}" --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[$m]}" \
      --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[$m]}" --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[$m]}" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token tandem-bench \
      --logger zap >"$WORKDIR/etcd-$m.log" 2>&1 &
    ETCD_PID[$m]=$!
    disown "${ETCD_PID[$m]}"
    PIDS+=("${ETCD_PID[$m]}")
  done
}

# etcd_leader: waits up to 20 s for the etcd cluster to have a leader; prints the leader's member name.
etcd_leader() {
  local m status
  for _ in $(seq 1 200); do
    for m in "${ETCD_MEMBERS[@]}"; do
      status=$(curl -s --max-time 1 -X POST -d '{}' "http://127.0.0.1:${ETCD_CLIENT[$m]}/v3/maintenance/status" || true)
      if echo "$status" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d.get("leader") and d["leader"]==d["header"]["member_id"] else 1)' 2>/dev/null; then
        echo "$m"; return 0
      fi
    done
    sleep 0.1
  done
  echo "etcd elected no leader" >&2
  return 1
}

# cpu_ms PID...: prints the CPU time (user + system) the given processes have used so far, in milliseconds.
# Sampled before and after a run, it gives CPU per request, which two shared cores measure more steadily than
# throughput.
cpu_ms() {
  local total=0 pid ticks hz
  hz=$(getconf CLK_TCK)
  for pid in "$@"; do
    ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ticks))
  done
  echo $((total * 1000 / hz))
}

# per_k_requests CPU_MS_BEFORE CPU_MS_AFTER REQUESTS: CPU milliseconds per 1000 requests.
per_k_requests() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n+0 == 0) print "n/a"; else printf "%.1f", (b-a)*1000/n }'; }

# tandem_metric ADMIN_PORT SAMPLE: prints the value of one /metrics sample line (name with its labels, exactly).
tandem_metric() {
  # awk reads to the end (no early exit), so curl never fails with a broken pipe under pipefail.
  curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk -v name="$2" '$1 == name && !found { print $2; found = 1 }'
}

# schedstat_sum PID...: "<on-CPU ns> <times scheduled in>" summed over every thread of the processes.
schedstat_sum() {
  local pid task run slices total_run=0 total_slices=0
  for pid in "$@"; do
    for task in /proc/"$pid"/task/*/schedstat; do
      read -r run _ slices <"$task" || continue
      total_run=$((total_run + run))
      total_slices=$((total_slices + slices))
    done
  done
  echo "$total_run $total_slices"
}

# pin_servers PID...: with BENCH_PIN=1, runs the given processes (every thread) on the last CPU, and this shell on
# the others, so that the load generator it starts later runs there too. Sets PINNING to a phrase for the header
# ("" unpinned) and CORES to the machine's CPU count (read before pinning: nproc counts the CPUs this shell may use).
pin_servers() {
  CORES=$(nproc)
  PINNING=""
  [ "${BENCH_PIN:-0}" = 1 ] || return 0
  local last=$((CORES - 1)) others pid
  [ "$last" -ge 1 ] || { echo "BENCH_PIN=1 needs at least 2 CPUs" >&2; return 1; }
  others=$([ "$last" -eq 1 ] && echo 0 || echo "0-$((last - 1))")
  for pid in "$@"; do taskset -a -p -c "$last" "$pid" >/dev/null; done
  taskset -p -c "$others" $$ >/dev/null
  PINNING=", pinned: the app and the server(s) measured on CPU $last, the load generator on CPU $others"
}
