#!/usr/bin/env bash
# The WebDAV determinism check of docs/DETERMINISM.md: runs the `litmus` WebDAV suite against a wsgidav server
# directly and through a three-node Tandem cluster (three wsgidav replicas, each with its own root, a tandem in
# front of each), then shows whether the replicas still hold the same files and what each node's divergence
# detector says. It reports; it does not judge: wsgidav makes random lock tokens and per-replica ETags, so the
# replicas are expected to drift apart (see the guide).
#
# Usage: bash scripts/webdav-litmus.sh [--deterministic | --deterministic-but-etags]
#   (no option)       plain wsgidav, as a user would run it
#   --deterministic   every wsgidav (the standalone one too) runs through a small launcher that derives lock tokens
#                     from Tandem-Request-Id, "now" from Tandem-Time and ETags from file contents (the fix the guide
#                     describes)
#   --deterministic-but-etags  the same, but wsgidav keeps its own ETags (inode, mtime, size: different per replica)
#   WEBDAV_TANDEM_BIN=<dir>  use the tandem binary in <dir> instead of building .build/release (not TANDEM_*:
#                            tandem refuses unknown TANDEM_ variables)
#   KEEP_LOGS=1       keep the work directory (logs, roots, litmus output) instead of deleting it
#
# Installs litmus (apt-get) and wsgidav + cheroot (pip) when missing. Everything it starts, it stops by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=plain
case "${1:-}" in
  "") ;;
  --deterministic) MODE=deterministic ;;
  --deterministic-but-etags) MODE=deterministic-but-etags ;;
  *) echo "usage: bash scripts/webdav-litmus.sh [--deterministic | --deterministic-but-etags]" >&2; exit 2 ;;
esac

# --- what it needs ------------------------------------------------------------------------------------------------
if ! command -v litmus >/dev/null 2>&1; then
  echo "== installing litmus (apt-get)"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get install -y -qq litmus >/dev/null 2>&1 \
    || { $sudo_cmd apt-get update -qq >/dev/null && $sudo_cmd apt-get install -y -qq litmus >/dev/null; }
fi
if ! python3 -c 'import wsgidav, cheroot' 2>/dev/null; then
  echo "== installing wsgidav and cheroot (pip)"
  python3 -m pip install -q wsgidav cheroot 2>/dev/null \
    || python3 -m pip install -q --break-system-packages wsgidav cheroot
fi
WSGIDAV_VERSION=$(python3 -c 'import wsgidav; print(wsgidav.__version__)')

if [ -n "${WEBDAV_TANDEM_BIN:-}" ]; then
  BIN=$WEBDAV_TANDEM_BIN
else
  BIN=.build/release
  if [ ! -x "$BIN/tandem" ]; then
    scripts/ensure-deps.sh
    echo "== building tandem (release)"
    swift build -c release --product tandem 2>&1 | tail -1
  fi
fi
[ -x "$BIN/tandem" ] || { echo "no tandem binary in $BIN" >&2; exit 1; }
# PIDS, WORKDIR, the EXIT trap that stops every PID in PIDS and removes WORKDIR, start_tandem.
source scripts/lib.sh

# The --deterministic launcher: wsgidav with its per-replica inventions derived from Tandem's headers.
write_launcher() {
  cat >"$WORKDIR/tandem_wsgidav.py" <<'EOF'
"""Runs wsgidav with its non-deterministic parts derived from Tandem's headers (docs/DETERMINISM.md).

Every replica gets the same replicated request with the same Tandem-Request-Id and Tandem-Time, so whatever
wsgidav invents while applying it must come from those, not from its own clock or random generator:
- lock tokens: a UUID derived from a deployment namespace and Tandem-Request-Id (instead of secrets.randbits);
- "now" for lock expiry, the lock timeout it reports and the timestamp in its HTML status pages: Tandem-Time;
- ETags: a hash of the file's bytes (instead of inode-mtime-size, which differs per replica).
Requests without Tandem headers (reads, or no Tandem in front) keep wsgidav's own behaviour.
Usage: python3 tandem_wsgidav.py <wsgidav arguments>
WEBDAV_LOCK_NAMESPACE: the same on every replica of one deployment; WEBDAV_KEEP_ETAGS=1 leaves wsgidav's ETags.
"""
import datetime as _datetime
import hashlib
import os
import sys
import threading
import time as _time
import types
import uuid

from wsgidav import dav_error, dav_provider, util
from wsgidav.lock_man import lock_manager, lock_storage
from wsgidav.server import server_cli
from wsgidav.wsgidav_app import WsgiDAVApp

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, os.environ.get("WEBDAV_LOCK_NAMESPACE", "tandem-wsgidav"))
_current = threading.local()  # the replicated request this worker thread is applying, if any


def _tandem(environ):
    request_id, time_ms = environ.get("HTTP_TANDEM_REQUEST_ID"), environ.get("HTTP_TANDEM_TIME")
    return (request_id, int(time_ms) / 1000.0) if request_id and time_ms else (None, None)


_original_call = WsgiDAVApp.__call__


def _call(self, environ, start_response):
    # wsgidav does its work while the response is iterated, in this thread: hold the headers until it is done.
    _current.request_id, _current.now = _tandem(environ)
    _current.locks_made = 0
    try:
        yield from _original_call(self, environ, start_response)
    finally:
        _current.request_id = _current.now = None


def _now():
    now = getattr(_current, "now", None)
    return _time.time() if now is None else now


def _lock_token():
    request_id = getattr(_current, "request_id", None)
    if request_id is None:
        return lock_manager.generate_lock_token()
    _current.locks_made += 1  # one request may create several locks (a collection and its members)
    return "opaquelocktoken:" + str(uuid.uuid5(NAMESPACE, f"{request_id}/{_current.locks_made}"))


class _Datetime(_datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return _datetime.datetime.fromtimestamp(_now(), tz or _datetime.timezone.utc)


def _file_etag(file_path):
    text_path = file_path.decode("utf8", "surrogateescape") if isinstance(file_path, bytes) else file_path
    if not os.path.isfile(text_path):
        return hashlib.md5(os.fsencode(text_path)).hexdigest()
    digest = hashlib.sha256()
    with open(text_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()[:32]


WsgiDAVApp.__call__ = _call
clock = types.SimpleNamespace(**{name: getattr(_time, name) for name in dir(_time) if not name.startswith("__")})
clock.time = _now
for module in (lock_storage, lock_manager, dav_provider):
    module.time = clock
lock_storage.generate_lock_token = _lock_token
dav_error.datetime = types.SimpleNamespace(datetime=_Datetime)
if os.environ.get("WEBDAV_KEEP_ETAGS") != "1":
    util.get_file_etag = _file_etag

if __name__ == "__main__":
    sys.argv[0] = "wsgidav"
    server_cli.run()
EOF
}
KEEP_ETAGS=0
if [ "$MODE" != plain ]; then
  write_launcher
  DAV=(python3 "$WORKDIR/tandem_wsgidav.py")
  [ "$MODE" = deterministic-but-etags ] && KEEP_ETAGS=1
else
  DAV=(python3 -m wsgidav.server.server_cli)
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# --- wsgidav servers ----------------------------------------------------------------------------------------------
declare -A DAVPORT ROOT PEER CLIENT ADMIN
# start_dav NAME: a wsgidav serving its own fresh root, anonymous, on a free loopback port; waits until it answers.
start_dav() {
  local name=$1 port
  port=$(free_port)
  ROOT[$name]="$WORKDIR/root-$name"
  mkdir -p "${ROOT[$name]}"
  WEBDAV_LOCK_NAMESPACE=webdav-litmus-$$ WEBDAV_KEEP_ETAGS=$KEEP_ETAGS \
    "${DAV[@]}" --no-config --host 127.0.0.1 --port "$port" --root "${ROOT[$name]}" --auth anonymous \
    >"$WORKDIR/dav-$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  DAVPORT[$name]=$port
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null --max-time 1 -X OPTIONS "http://127.0.0.1:$port/"; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "wsgidav $name did not start:" >&2
  cat "$WORKDIR/dav-$name.log" >&2
  return 1
}

for n in n1 n2 n3 direct; do start_dav "$n"; done

# --- the Tandem cluster -------------------------------------------------------------------------------------------
for n in n1 n2 n3; do PEER[$n]=$(free_port); done
PEERS="n1=127.0.0.1:${PEER[n1]},n2=127.0.0.1:${PEER[n2]},n3=127.0.0.1:${PEER[n3]}"
# Every WebDAV method that changes state is a replicated write. PROPFIND only reads, but Tandem answers 501 to a
# method it does not know, so a read route names it.
WRITE_METHODS=PUT,DELETE,MKCOL,COPY,MOVE,PROPPATCH,LOCK,UNLOCK,POST,PATCH
for n in n1 n2 n3; do
  start_tandem "$n" "${DAVPORT[$n]}" TANDEM_PEERS="$PEERS" TANDEM_PEER_LISTEN="127.0.0.1:${PEER[$n]}" \
    TANDEM_CLUSTER_SECRET=webdav-litmus-secret-0123456789 TANDEM_WRITE_METHODS="$WRITE_METHODS" \
    TANDEM_READ_ROUTES="PROPFIND /*"
  CLIENT[$n]=$CLIENT_PORT
  ADMIN[$n]=$ADMIN_PORT
done

status() { curl -s --max-time 2 "http://127.0.0.1:${ADMIN[$1]}/status"; }
field() { # NAME: one field of the JSON on stdin (booleans as true/false; "?" when there is no such JSON)
  python3 -c "import json,sys
try: v = json.load(sys.stdin)[sys.argv[1]]
except Exception: v = '?'
print('null' if v is None else str(v).lower() if isinstance(v, bool) else v)" "$1"
}
metric() { # NODE NAME: a metric's value, 0 when absent
  curl -s --max-time 2 "http://127.0.0.1:${ADMIN[$1]}/metrics" \
    | awk -v m="$2" '$1==m {print $2+0; f=1} END {if(!f) print 0}' || echo 0
}

for n in n1 n2 n3; do
  ok=0
  for _ in $(seq 1 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:${ADMIN[$n]}/readyz" || true)
    if [ "$code" = 200 ]; then ok=1; break; fi
    sleep 0.1
  done
  [ $ok = 1 ] || { echo "$n never became ready: $(curl -s "http://127.0.0.1:${ADMIN[$n]}/readyz")" >&2; exit 1; }
done
for n in n1 n2 n3; do
  echo "== $n: tandem 127.0.0.1:${CLIENT[$n]} (admin ${ADMIN[$n]}) -> wsgidav 127.0.0.1:${DAVPORT[$n]}," \
    "role $(status $n | field role)"
done
echo "== standalone wsgidav $WSGIDAV_VERSION ($MODE) on 127.0.0.1:${DAVPORT[direct]}"

# --- litmus, both ways --------------------------------------------------------------------------------------------
run_litmus() { # label url
  echo "== litmus against $1 ($2)"
  # litmus exits non-zero when a test fails; that is a result here, not an error.
  (cd "$WORKDIR" && litmus -k "$2") >"$WORKDIR/litmus-$1.txt" 2>&1 || true
}
run_litmus direct "http://127.0.0.1:${DAVPORT[direct]}/"
run_litmus tandem "http://127.0.0.1:${CLIENT[n1]}/"

# --- let the replicas settle --------------------------------------------------------------------------------------
# Wait until every node applied the whole log, then until each node judged at least once more (digest reports go
# out about once a second).
for _ in $(seq 1 200); do
  a1=$(status n1 | field appliedIndex); a2=$(status n2 | field appliedIndex); a3=$(status n3 | field appliedIndex)
  c1=$(status n1 | field commitIndex)
  if [ "$a1" = "$a2" ] && [ "$a2" = "$a3" ] && [ "$a1" = "$c1" ]; then break; fi
  sleep 0.1
done
declare -A JUDGED
for n in n1 n2 n3; do JUDGED[$n]=$(metric $n tandem_digest_comparisons_total); done
for _ in $(seq 1 50); do
  all=1
  for n in n1 n2 n3; do
    now=$(metric $n tandem_digest_comparisons_total)
    [ "$now" -gt "${JUDGED[$n]}" ] || all=0
  done
  [ $all = 1 ] && break
  sleep 0.1
done

# --- summary ------------------------------------------------------------------------------------------------------
echo
echo "== litmus per suite (passed/run, failed, warnings, skipped)"
suite_line() { # file suite
  python3 - "$1" "$2" <<'EOF'
import re, sys
text = open(sys.argv[1], errors="replace").read()
suite = sys.argv[2]
block = re.search(r"-> running `%s':\n(.*?)<- summary for `%s': of (\d+) tests run: (\d+) passed, (\d+) failed"
                  % (suite, suite), text, re.S)
if not block:
    print("not run"); sys.exit()
body, run, passed, failed = block.group(1), block.group(2), block.group(3), block.group(4)
# litmus redraws each test's line after a carriage return: the last segment of a line is what it printed last.
lines = [line.split("\r")[-1] for line in body.split("\n")]
warnings = sum("WARNING:" in line for line in lines)
skipped = re.search(r"-> (\d+) tests? (?:was|were) skipped", body)
failures = [m.group(1) for m in (re.match(r"\s*\d+\.\s+(\w+)\.*\s+FAIL", line) for line in lines) if m]
print(f"{passed}/{run}, {failed} failed, {warnings} warnings, {skipped.group(1) if skipped else 0} skipped"
      + (f"  [FAIL: {' '.join(failures)}]" if failures else ""))
EOF
}
printf '   %-9s %-75s %s\n' suite direct "through tandem (n1)"
for s in basic copymove props locks http; do
  printf '   %-9s %-75s %s\n' "$s" "$(suite_line "$WORKDIR/litmus-direct.txt" $s)" \
    "$(suite_line "$WORKDIR/litmus-tandem.txt" $s)"
done

listing() { # root: every entry under it, sorted, with type, size and sha256 (directories: "-")
  python3 - "$1" <<'EOF'
import hashlib, os, sys
root = sys.argv[1]
for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    rel = os.path.relpath(dirpath, root)
    if rel != ".":
        print(f"d {rel}/ - -")
    for name in sorted(filenames):
        path = os.path.join(dirpath, name)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        print(f"f {os.path.relpath(path, root)} {os.path.getsize(path)} {digest}")
EOF
}
echo
for n in n1 n2 n3; do
  listing "${ROOT[$n]}" | sort >"$WORKDIR/listing-$n.txt"
  echo "== root of $n: $(wc -l <"$WORKDIR/listing-$n.txt") entries"
  sed 's/^/   /' "$WORKDIR/listing-$n.txt"
done
if cmp -s "$WORKDIR/listing-n1.txt" "$WORKDIR/listing-n2.txt" \
  && cmp -s "$WORKDIR/listing-n2.txt" "$WORKDIR/listing-n3.txt"; then
  echo "== the three replica roots are IDENTICAL (names, sizes, sha256)"
else
  echo "== the three replica roots DIFFER:"
  for n in n2 n3; do
    echo "   n1 vs $n:"
    diff "$WORKDIR/listing-n1.txt" "$WORKDIR/listing-$n.txt" | grep '^[<>]' | sed 's/^/     /' || true
  done
fi

echo
# Every replica's wsgidav logs each request it served with its status. The replicated writes reach every replica in
# the same order, so their (method, path, status) sequences should be equal; the first differences are shown.
echo "== replicated writes each replica's wsgidav answered with a different status than n1's"
python3 - "$WORKDIR" "$WRITE_METHODS" <<'EOF'
import re, sys
workdir, methods = sys.argv[1], set(sys.argv[2].split(","))
pattern = re.compile(r'"(\w+) (\S+)".*-> (\d{3})')
def writes(node):
    out = []
    for line in open(f"{workdir}/dav-{node}.log", errors="replace"):
        m = pattern.search(line)
        if m and m.group(1) in methods:
            out.append(m.groups())
    return out
base = writes("n1")
print(f"   n1 answered {len(base)} replicated writes")
for node in ("n2", "n3"):
    other = writes(node)
    differ = [(i, a, b) for i, (a, b) in enumerate(zip(base, other)) if a != b]
    print(f"   {node}: {len(other)} writes, {len(differ)} with another outcome than on n1")
    for i, a, b in differ[:12]:
        print(f"     #{i + 1:<4} {a[0]:9} {a[1]:40} n1 {a[2]}  {node} {b[2]}")
    if len(differ) > 12:
        print(f"     ... and {len(differ) - 12} more")
EOF

echo
echo "== divergence detector (each node judges itself against the others' response digests)"
for n in n1 n2 n3; do
  s=$(status $n)
  printf '   %s: role %-9s applied %-5s digest %s  diverged %-5s  comparisons %s  no-majority %s\n' "$n" \
    "$(echo "$s" | field role)" "$(echo "$s" | field appliedIndex)" "$(echo "$s" | field digest)" \
    "$(echo "$s" | field diverged)" "$(metric $n tandem_digest_comparisons_total)" \
    "$(metric $n tandem_digest_no_majority_total)"
done
for n in n1 n2 n3; do
  python3 - "$WORKDIR/$n.log" "$n" <<'EOF'
import json, sys
for line in open(sys.argv[1], errors="replace"):
    try:
        record = json.loads(line)
    except ValueError:
        continue
    message = str(record.get("msg", ""))
    if message.startswith(("DIVERGED", "NO MAJORITY")):
        index = record.get("index") or record.get("metadata", {}).get("index")
        print(f"   {sys.argv[2]} log: {message.split(':')[0]} at index {index}")
EOF
done
