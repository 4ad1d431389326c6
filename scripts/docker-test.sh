#!/usr/bin/env bash
# Builds the images of Docker/Dockerfile and runs the compose walk-through of Docker/README.md for real, on a
# machine that cannot pull images from a registry: the base images the Dockerfile names in FROM are made locally
# (a debootstrapped Debian root filesystem, and that plus this machine's Swift toolchain), then `docker build` runs
# on the unchanged Dockerfile. Needs root (it starts its own dockerd). Docker/README.md describes it and keeps the
# last result.
#
#   scripts/docker-test.sh              the full build: Swift compiles inside the build stage (slow: ~15+ min)
#   scripts/docker-test.sh --prebuilt   the runtime stages only, around .build/release/{tandem,example-kv}
#                                       (built here if missing; TANDEM_PREBUILT_DIR=.build/debug takes the debug
#                                       binaries instead, e.g. in CI after scripts/test.sh); the fast path
#
# Environment: TANDEM_DOCKER_CACHE (default /var/cache/tandem-docker: the Debian root filesystem and dockerd's
# image store, both reused by later runs), TANDEM_DOCKER_NO_CACHE=1 (the first `docker build` without its layer
# cache, to time a cold build), TANDEM_DOCKER_SUBNET (default 172.31.250.0/24: the only network the
# containers are on; it is internal, so they reach each other and this host and nothing else).
#
# What it leaves as it found: its dockerd is stopped by the PID it started, its containers, networks and volumes
# are removed, and the settings dockerd may change (iptables' FORWARD policy, net.bridge.bridge-nf-call-*tables,
# net.ipv4.ip_forward) are put back, also when a step fails.
set -euo pipefail
# The whole script is one compound command, so bash has read all of it before running any: editing the file while a
# long build runs cannot change what the running script does next.
{
cd "$(dirname "$0")/.."
ROOT=$(pwd)

MODE=full
case "${1:-}" in
  "") ;;
  --prebuilt) MODE=prebuilt ;;
  -h | --help) sed -n '2,/^set -e/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--prebuilt]" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "docker-test: needs root (it starts dockerd)" >&2; exit 1; }

CACHE=${TANDEM_DOCKER_CACHE:-/var/cache/tandem-docker}
SUBNET=${TANDEM_DOCKER_SUBNET:-172.31.250.0/24}
PROJECT=tandem-demo
RUN=$(mktemp -d /run/tandem-docker.XXXXXX)   # short: dockerd's and containerd's sockets live here
export DOCKER_HOST="unix://$RUN/docker.sock"
export DOCKER_BUILDKIT=0                        # see "Which builder" in Docker/README.md
NO_CACHE=(); [ -z "${TANDEM_DOCKER_NO_CACHE:-}" ] || NO_CACHE=(--no-cache)   # to time a cold build
SCRIPT_START=$(date +%s)

log() { printf '[docker-test %4ss] %s\n' "$(( $(date +%s) - SCRIPT_START ))" "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
now_ms() { date +%s%3N; }
RESULTS=()
record() { RESULTS+=("$1"); log "$1"; }

# --- what this script installs -----------------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v ip >/dev/null || need+=(iproute2)
command -v python3 >/dev/null && python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then need+=(docker-compose); fi
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); COMPOSE_V1=false
else COMPOSE=(docker-compose); COMPOSE_V1=true; fi

# --- host settings dockerd may change, saved before it starts and restored at exit --------------------------------
sysctl_keys=(net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.ipv4.ip_forward)
declare -A saved_sysctl=()
for key in "${sysctl_keys[@]}"; do
  value=$(sysctl -n "$key" 2>/dev/null) && saved_sysctl[$key]=$value
done
saved_forward=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" { print $3; exit }')
saved_forward6=$(ip6tables -S FORWARD 2>/dev/null | awk '$1 == "-P" { print $3; exit }')

DOCKERD_PID=""
COMPOSE_FILE=""
cleanup() {
  local status=$?
  set +e
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    if [ -n "$COMPOSE_FILE" ]; then "${COMPOSE[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" down -v -t 1 >/dev/null 2>&1; fi
    docker ps -aq --filter label=tandem-docker-test | xargs -r docker rm -f >/dev/null 2>&1
    docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker rm -f >/dev/null 2>&1
    docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" \
      | xargs -r docker network rm >/dev/null 2>&1
    docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker volume rm >/dev/null 2>&1
    kill -TERM "$DOCKERD_PID"
    for _ in $(seq 1 300); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
      log "dockerd $DOCKERD_PID did not stop in 30 s; killing it"
      kill -KILL "$DOCKERD_PID"
    fi
    wait "$DOCKERD_PID" 2>/dev/null
  fi
  for key in "${!saved_sysctl[@]}"; do
    [ "$(sysctl -n "$key" 2>/dev/null)" = "${saved_sysctl[$key]}" ] || sysctl -q -w "$key=${saved_sysctl[$key]}"
  done
  if [ -n "$saved_forward" ]; then iptables -P FORWARD "$saved_forward"; fi
  if [ -n "$saved_forward6" ]; then ip6tables -P FORWARD "$saved_forward6"; fi
  if [ $status -ne 0 ] && [ -f "$RUN/dockerd.log" ]; then
    cp "$RUN/dockerd.log" "$CACHE/last-dockerd.log" 2>/dev/null && log "dockerd's log: $CACHE/last-dockerd.log"
  fi
  # dockerd leaves the bind mount of its default network namespace behind.
  findmnt -rn -o TARGET | grep "^$RUN/" | sort -r | xargs -r -n1 umount -l
  rm -rf "$RUN"
  exit $status
}
trap cleanup EXIT
trap 'log "FAILED: line $LINENO exited with status $?"' ERR
trap 'exit 130' INT TERM

# --- dockerd, private to this run ---------------------------------------------------------------------------------
# Its own sockets, PID file and image store, so it neither meets nor disturbs another dockerd. --iptables=false,
# --ip-forward=false and --bridge=none keep it away from the host's firewall and forwarding: the only network is
# the internal one below, which needs no NAT, and builds use the host's network (--network host).
mkdir -p "$CACHE/docker"
dockerd --data-root "$CACHE/docker" --exec-root "$RUN/exec" --pidfile "$RUN/dockerd.pid" -H "$DOCKER_HOST" \
  --bridge=none --iptables=false --ip-forward=false --ip-masq=false >"$RUN/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 1 300); do
  docker version >/dev/null 2>&1 && break
  kill -0 "$DOCKERD_PID" 2>/dev/null || { cat "$RUN/dockerd.log" >&2; fail "dockerd exited"; }
  sleep 0.1
done
docker version >/dev/null || fail "dockerd did not answer within 30 s"
log "dockerd $(docker version -f '{{.Server.Version}}') running as PID $DOCKERD_PID;" \
  "compose: ${COMPOSE[*]} $("${COMPOSE[@]}" version --short 2>/dev/null)"

# --- the images the Dockerfile starts FROM --------------------------------------------------------------------------
# Their names come from the Dockerfile itself (its ARG defaults and FROM lines), so they cannot drift apart.
dockerfile_arg() { sed -n "s/^ARG $1=//p" Docker/Dockerfile | head -1; }
SWIFT_VERSION=$(dockerfile_arg SWIFT_VERSION)
DEBIAN_RELEASE=$(dockerfile_arg DEBIAN_RELEASE)
from_image() {  # the image of the stage named $1, with the ARG defaults substituted
  awk -v stage="$1" '$1 == "FROM" && $NF == stage { print $2 }' Docker/Dockerfile \
    | sed "s/\${SWIFT_VERSION}/$SWIFT_VERSION/; s/\${DEBIAN_RELEASE}/$DEBIAN_RELEASE/"
}
BASE_IMAGE=$(from_image runtime-base)
TOOLCHAIN_IMAGE=$(from_image build)
[ -n "$BASE_IMAGE" ] && [ -n "$TOOLCHAIN_IMAGE" ] || fail "could not read the FROM images of Docker/Dockerfile"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# A minimal Debian (debootstrap's minbase) with this host's apt sources, bootstrapped once and kept as a tarball.
base_tar="$CACHE/$DEBIAN_RELEASE-minbase.tar"
if [ ! -f "$base_tar" ]; then
  started=$(date +%s)
  rootfs="$CACHE/rootfs.tmp"
  if [ ! -x "$rootfs/usr/bin/apt-get" ] || [ -d "$rootfs/debootstrap" ]; then
    rm -rf "$rootfs"
    # The host's own mirror (debootstrap's default when the host names none).
    mirror=$( (sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources
      awk '$1 == "deb" { print $2 }' /etc/apt/sources.list) 2>/dev/null | head -1 || true)
    log "debootstrap $DEBIAN_RELEASE ${mirror:+from $mirror }(once; cached in $base_tar)"
    debootstrap --variant=minbase "$DEBIAN_RELEASE" "$rootfs" ${mirror:+"$mirror"} >"$RUN/debootstrap.log" 2>&1 \
      || { tail -20 "$RUN/debootstrap.log" >&2; fail "debootstrap"; }
  fi
  # The host's sources (and the apt settings they need), so apt inside a build reaches what the host reaches.
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
    rm -f "$rootfs/etc/apt/sources.list"
  fi
  grep -h -E '^Acquire::Check-(Valid-Until|Date)' /etc/apt/apt.conf.d/* 2>/dev/null \
    >"$rootfs/etc/apt/apt.conf.d/99host" || true
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" --numeric-owner -cf "$base_tar.tmp" . && mv "$base_tar.tmp" "$base_tar"
  rm -rf "$rootfs"
  record "base bootstrapped in $(( $(date +%s) - started )) s"
fi
if ! have_image "$BASE_IMAGE"; then
  docker import --change 'CMD ["bash"]' "$base_tar" "$BASE_IMAGE" >/dev/null
  log "imported $base_tar as $BASE_IMAGE"
fi

# This host's git redirects of remote repositories to local mirrors (`url.<dir>.insteadOf` in its system git
# config; it is how `swift package resolve` works here without reaching the remote), copied into container $1 with
# the mirrored directories, so the build stage resolves the packages exactly as the host does. Nothing when the host
# has none.
copy_git_mirrors() {
  local key value dir
  git config --system --get-regexp '^url\..*\.insteadof$' 2>/dev/null | while read -r key value; do
    dir=${key#url.}; dir=${dir%.insteadof}
    case "$dir" in /*) ;; *) continue ;; esac
    [ -d "$dir" ] || continue
    docker exec "$1" git config --system --add "url.$dir.insteadOf" "$value"
    if ! docker exec "$1" test -d "$dir"; then
      docker exec "$1" mkdir -p "$dir"
      tar -C "$dir" -c . | docker cp - "$1:$dir"
    fi
  done
}

# The toolchain image: the base, the packages the official Swift images install for bookworm, and this machine's
# Swift toolchain in /usr (where the official images have it).
if [ "$MODE" = full ] && ! have_image "$TOOLCHAIN_IMAGE"; then
  started=$(date +%s)
  toolchain=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")   # .../usr
  "$toolchain/bin/swift" --version 2>/dev/null | grep -q "Swift version $SWIFT_VERSION" \
    || fail "the Dockerfile wants Swift $SWIFT_VERSION; $toolchain has: $("$toolchain/bin/swift" --version 2>&1)"
  log "making $TOOLCHAIN_IMAGE from $BASE_IMAGE and $toolchain"
  docker rm -f tandem-toolchain-prep >/dev/null 2>&1 || true
  docker run -d --name tandem-toolchain-prep --label tandem-docker-test --network host "$BASE_IMAGE" \
    sleep infinity >/dev/null
  docker exec tandem-toolchain-prep sh -c '
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      binutils ca-certificates git gnupg2 libc6-dev libcurl4-openssl-dev libedit2 libgcc-12-dev libpython3-dev \
      libsqlite3-0 libstdc++-12-dev libxml2-dev libncurses-dev libz3-dev pkg-config tzdata unzip zlib1g-dev \
      >/dev/null && rm -rf /var/lib/apt/lists/*' || fail "installing the toolchain's packages"
  tar -C "$toolchain" -c . | docker cp - tandem-toolchain-prep:/usr
  copy_git_mirrors tandem-toolchain-prep
  docker stop -t 1 tandem-toolchain-prep >/dev/null
  docker commit --change 'CMD ["bash"]' tandem-toolchain-prep "$TOOLCHAIN_IMAGE" >/dev/null
  docker rm tandem-toolchain-prep >/dev/null
  record "toolchain image made in $(( $(date +%s) - started )) s"
fi

# --- docker build ---------------------------------------------------------------------------------------------------
# The context is the repository root less what Docker/Dockerfile.dockerignore names, streamed as a tar: the classic
# builder reads only a root .dockerignore, and .build alone is gigabytes.
build_context() {
  local excludes=() pattern
  while IFS= read -r pattern; do
    pattern=${pattern%%#*}; pattern=${pattern%"${pattern##*[![:space:]]}"}
    [ -n "$pattern" ] || continue
    pattern=${pattern#\*\*/}
    case "$pattern" in */*) excludes+=("--exclude=./$pattern") ;; *) excludes+=("--exclude=$pattern") ;; esac
  done <Docker/Dockerfile.dockerignore
  tar -C "$ROOT" "${excludes[@]}" -cf - .
}

image_size() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1000000 }'; }

if [ "$MODE" = full ]; then
  for target in example-kv tandem; do
    image=tandem:dev; [ "$target" = example-kv ] && image=tandem-example-kv:dev
    started=$(date +%s)
    log "docker build --target $target -t $image (log: $CACHE/build-$target.log)"
    build_context | docker build "${NO_CACHE[@]}" --network host -f Docker/Dockerfile --target "$target" -t "$image" - \
      >"$CACHE/build-$target.log" 2>&1 || { tail -30 "$CACHE/build-$target.log" >&2; fail "docker build $target"; }
    NO_CACHE=()   # the second target reuses the first's layers, as it would on a cold machine
    record "full build of $target: $(( $(date +%s) - started )) s, image $(image_size "$image")"
  done
else
  # The fast path: the runtime stages of Docker/Dockerfile, taken verbatim (everything from the runtime-base
  # FROM on), with the build stage's /staging made here from binaries built on this host. Same Debian release
  # as the image, so the same libevent and OpenSSL sonames.
  started=$(date +%s)
  bin=${TANDEM_PREBUILT_DIR:-.build/release}
  for product in tandem example-kv; do
    [ -x "$bin/$product" ] || [ "$bin" != .build/release ] || swift build -c release --product "$product"
    [ -x "$bin/$product" ] || fail "no $bin/$product"
  done
  ctx="$RUN/prebuilt"
  mkdir -p "$ctx/staging/usr/local/bin" "$ctx/staging/usr/lib/swift/linux"
  cp "$bin/tandem" "$bin/example-kv" "$ctx/staging/usr/local/bin/"
  ldd "$bin/tandem" "$bin/example-kv" | awk '$3 ~ /\/lib\/swift\// { print $3 }' | sort -u \
    | xargs -r cp -L -t "$ctx/staging/usr/lib/swift/linux/"
  sed -n '/^ARG /p' Docker/Dockerfile >"$ctx/Dockerfile"
  sed -n '/^FROM .* AS runtime-base$/,$p' Docker/Dockerfile \
    | sed 's|^COPY --from=build /staging/ /$|COPY staging/ /|' >>"$ctx/Dockerfile"
  grep -q '^COPY staging/ /$' "$ctx/Dockerfile" || fail "Docker/Dockerfile no longer copies /staging/ from build"
  for target in example-kv tandem; do
    image=tandem:dev; [ "$target" = example-kv ] && image=tandem-example-kv:dev
    docker build "${NO_CACHE[@]}" --network host --target "$target" -t "$image" "$ctx" \
      >"$CACHE/build-prebuilt-$target.log" 2>&1 \
      || { tail -30 "$CACHE/build-prebuilt-$target.log" >&2; fail "docker build (prebuilt) $target"; }
    NO_CACHE=()
    record "prebuilt image $image: $(image_size "$image")"
  done
  record "prebuilt images built in $(( $(date +%s) - started )) s"
fi

# --- the images on their own ------------------------------------------------------------------------------------
run_quiet() { docker run --rm --network none --label tandem-docker-test "$@"; }
[ "$(docker image inspect -f '{{.Config.User}}' tandem:dev)" = "10001:10001" ] \
  || fail "tandem:dev does not run as 10001"
[ "$(run_quiet --entrypoint id tandem:dev -u)" = 10001 ] || fail "tandem:dev's user is not uid 10001"
help=$(run_quiet tandem:dev --help) || fail "tandem --help exited non-zero"
grep -q TANDEM_PEERS <<<"$help" || fail "tandem --help does not list TANDEM_PEERS: $help"
record "tandem --help runs as uid 10001"

# Each image's own HEALTHCHECK turns healthy: example-kv alone, and tandem alone (standalone: no peers).
wait_healthy() {  # container seconds
  local deadline=$(( $(date +%s) + $2 )) state
  while :; do
    state=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1")
    [ "$state" = healthy ] && return 0
    [ "$(date +%s)" -lt "$deadline" ] || { docker logs "$1" 2>&1 | tail -20 >&2; fail "$1 is $state after $2 s"; }
    sleep 0.2
  done
}
for image in tandem-example-kv:dev tandem:dev; do
  started=$(now_ms)
  cid=$(docker run -d --network none --label tandem-docker-test "$image")
  wait_healthy "$cid" 60
  record "$image: HEALTHCHECK healthy $(( $(now_ms) - started )) ms after docker run"
  docker rm -f "$cid" >/dev/null
done

# --- the compose walk-through ---------------------------------------------------------------------------------------
# The file is Docker/docker-compose.yml with three changes for this machine: no published ports (the host talks to
# each pair at its address on the network), the default network internal with a fixed subnet, and, for Debian's
# docker-compose 1.29 (no Compose v2 in Debian 12), without `name:` (given as -p) and depends_on's `restart:`.
COMPOSE_FILE="$RUN/docker-compose.yml"
python3 - "$ROOT/Docker/docker-compose.yml" "$COMPOSE_FILE" "$SUBNET" "$COMPOSE_V1" <<'EOF'
import sys, yaml
source, target, subnet, v1 = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "true"
spec = yaml.safe_load(open(source))
for service in spec["services"].values():
    service.pop("ports", None)
    service.pop("build", None)
    if v1:
        for dependency in (service.get("depends_on") or {}).values():
            dependency.pop("restart", None)
if v1:
    spec.pop("name", None)
spec = {k: v for k, v in spec.items() if not k.startswith("x-")}
spec["networks"] = {"default": {"internal": True, "ipam": {"config": [{"subnet": subnet}]}}}
yaml.safe_dump(spec, open(target, "w"), sort_keys=False)
EOF
C=("${COMPOSE[@]}" -p "$PROJECT" -f "$COMPOSE_FILE")
started=$(now_ms)
"${C[@]}" up -d >"$RUN/compose-up.log" 2>&1 || { cat "$RUN/compose-up.log" >&2; fail "compose up"; }
declare -A CID=() IP=()
for n in 1 2 3; do
  CID[app$n]=$("${C[@]}" ps -q "app$n"); CID[tandem$n]=$("${C[@]}" ps -q "tandem$n")
  IP[$n]=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "${CID[app$n]}")
done
for name in app1 app2 app3 tandem1 tandem2 tandem3; do wait_healthy "${CID[$name]}" 90; done
# No pair may reach anything but the subnet and this host. Docker 20.10 marks the network internal but, run with
# --iptables=false, still gives each container a default route via the bridge, so it is deleted in each pair's
# namespace (the sidecar shares it) right after the app starts; then the check that none is left.
isolate() {
  local pid
  pid=$(docker inspect -f '{{.State.Pid}}' "${CID[app$1]}")
  nsenter -t "$pid" -n ip route del default 2>/dev/null || true
  if nsenter -t "$pid" -n ip route show default | grep -q .; then fail "app$1 still has a default route"; fi
  nsenter -t "$pid" -n ip -6 route del default 2>/dev/null || true
}
for n in 1 2 3; do isolate "$n"; done
for n in 1 2 3; do
  routes=$(docker exec "${CID[app$n]}" cat /proc/net/route)
  awk 'NR > 1 && $2 == "00000000" { exit 1 }' <<<"$routes" || fail "app$n has a default route: $routes"
done
record "compose: six containers healthy $(( $(now_ms) - started )) ms after up (addresses ${IP[1]} ${IP[2]} ${IP[3]})"

# Reads field $2 of node $1's /status ("" when it does not answer).
status_field() {
  curl -s --max-time 0.5 "http://${IP[$1]}:9400/status" 2>/dev/null \
    | python3 -c "import json,sys; v=json.load(sys.stdin).get('$2'); print('' if v is None else v)" 2>/dev/null || true
}
wait_ready() {  # node seconds
  local deadline=$(( $(date +%s) + $2 ))
  until curl -fs --max-time 1 "http://${IP[$1]}:9400/readyz" >/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      docker logs "${CID[tandem$1]}" 2>&1 | tail -20 >&2
      fail "n$1 not ready after $2 s"
    fi
    sleep 0.1
  done
}
for n in 1 2 3; do wait_ready "$n" 60; done
leader=$(status_field 1 leader); leader=${leader#n}
[[ "$leader" =~ ^[123]$ ]] || fail "no leader after startup (n1 says '$leader')"
record "compose: all three ready; leader n$leader"

put() {  # node key value
  local code
  code=$(curl -s -o "$RUN/put.out" -w '%{http_code}' --max-time 5 -X PUT --data "$3" "http://${IP[$1]}:8080/kv/$2")
  [ "$code" = 200 ] || fail "PUT /kv/$2 through n$1 answered $code: $(cat "$RUN/put.out")"
}
for n in 1 2 3; do put "$n" "written-through-n$n" "hello-$n"; done
for n in 1 2 3; do
  read_back=$(curl -s --max-time 5 -H 'Tandem-Consistency: linearizable' "http://${IP[$n]}:8080/kv/written-through-n1")
  [ "$read_back" = hello-1 ] \
    || fail "n$n does not read back the write made through n1"
done
record "compose: a write through each node, read back linearizably from each"

# Kill the leader's pair like a crashed machine, and time until a survivor names a new leader.
old_term=$(status_field "$leader" term)
survivors=(); for n in 1 2 3; do [ "$n" = "$leader" ] || survivors+=("$n"); done
# One Python process kills and polls, so the time measured is the cluster's and not process start-up's: from just
# before `docker kill` until a survivor's /status names another leader in a newer term (polled every 10 ms).
read -r failover_ms new_leader < <(python3 - "$old_term" "n$leader" "${IP[${survivors[0]}]}" "${IP[${survivors[1]}]}" \
  "${CID[app$leader]}" "${CID[tandem$leader]}" <<'PY'
import json, subprocess, sys, time, urllib.request
old_term, old_leader, addresses, containers = int(sys.argv[1]), sys.argv[2], sys.argv[3:5], sys.argv[5:]
start = time.monotonic()
subprocess.run(["docker", "kill", *containers], check=True, stdout=subprocess.DEVNULL)
while time.monotonic() - start < 30:
    for address in addresses:
        try:
            with urllib.request.urlopen(f"http://{address}:9400/status", timeout=0.3) as response:
                status = json.load(response)
        except (OSError, ValueError):
            continue
        if status.get("leader") not in (None, old_leader) and status.get("term", 0) > old_term:
            print(round((time.monotonic() - start) * 1000), status["leader"].lstrip("n"))
            sys.exit(0)
    time.sleep(0.01)
print("timeout -")
PY
)
[ "$failover_ms" != timeout ] || fail "no new leader 30 s after killing n$leader"
record "compose: docker kill of n$leader's pair; new leader n$new_leader after $failover_ms ms"
for n in "${survivors[@]}"; do put "$n" "after-failover-n$n" "still-$n"; done
record "compose: writes through both survivors succeed"

# Bring the pair back: the app first (it owns the network namespace), then its sidecar.
started=$(now_ms)
docker start "${CID[app$leader]}" >/dev/null
isolate "$leader"
docker start "${CID[tandem$leader]}" >/dev/null
wait_ready "$leader" 120
record "compose: n$leader back and ready $(( $(now_ms) - started )) ms after docker start"

# The three replicas converge to identical state: the apps' own /dump, byte for byte.
dump() { docker exec "${CID[app$1]}" curl -fs --max-time 2 http://127.0.0.1:3000/dump; }
deadline=$(( $(date +%s) + 60 ))
while :; do
  d1=$(dump 1 || true); d2=$(dump 2 || true); d3=$(dump 3 || true)
  if [ -n "$d1" ] && [ "$d1" = "$d2" ] && [ "$d2" = "$d3" ]; then break; fi
  [ "$(date +%s)" -lt "$deadline" ] || { printf '%s\n%s\n%s\n' "$d1" "$d2" "$d3" >&2; fail "dumps differ after 60 s"; }
  sleep 0.2
done
for key in written-through-n1 written-through-n2 written-through-n3 "after-failover-n${survivors[0]}" \
  "after-failover-n${survivors[1]}"; do
  grep -q "$key" <<<"$d1" || fail "the dump lacks $key: $d1"
done
record "compose: the three apps' /dump identical ($(printf %s "$d1" | wc -c) bytes, all five writes in it)"

"${C[@]}" down -v -t 20 >/dev/null 2>&1 || fail "compose down"
COMPOSE_FILE=""
record "PASS ($MODE) in $(( $(date +%s) - SCRIPT_START )) s, $(date -u +%Y-%m-%d)"
printf '%s\n' "${RESULTS[@]}" >"$CACHE/last-result-$MODE.txt"
exit 0
}
