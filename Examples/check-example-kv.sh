#!/usr/bin/env bash
# Drives every endpoint of example-kv with curl and compares each answer with the contract in Examples/README.md.
# Usage: Examples/check-example-kv.sh [path/to/example-kv]   (default .build/release/example-kv)
# Exit code 0 when every check passes. Needs bash, curl, cmp.
set -u
BIN=${1:-.build/release/example-kv}
WORK=$(mktemp -d)
FAILURES=0
trap 'rm -rf "$WORK"' EXIT

"$BIN" --port 0 >"$WORK/out" 2>"$WORK/err" &
PID=$!
for _ in $(seq 1 100); do
  [ -s "$WORK/out" ] && break
  sleep 0.05
done
LINE=$(head -1 "$WORK/out")
PORT=${LINE##*:}
U="http://127.0.0.1:$PORT"

# check NAME EXPECTED ACTUAL
check() {
  if [ "$2" == "$3" ]; then
    echo "ok   $1"
  else
    echo "FAIL $1: expected [$2], got [$3]"
    FAILURES=$((FAILURES + 1))
  fi
}
# call ARGS...: prints "STATUS BODY".
call() { curl -s -w ' %{http_code}' "$@" | awk '{ last = $NF; $NF = ""; sub(/ $/, ""); print last " " $0 }'; }

check "announces its port" "example-kv listening on 127.0.0.1:" "${LINE%"$PORT"}"
check "PUT stores" "200 " "$(call -X PUT --data-binary 'hello' "$U/kv/a")"
check "GET returns the value" "200 hello" "$(call "$U/kv/a")"
check "append returns the new value" "200 hello world" "$(call -X POST --data-binary ' world' "$U/kv/a/append")"
check "append creates" "200 x" "$(call -X POST --data-binary 'x' "$U/kv/new/append")"
check "GET absent is 404" '404 {"error":"not_found"}' "$(call "$U/kv/missing")"
check "incr from absent" '200 {"name":"c","value":1}' "$(call -X POST "$U/counters/c/incr")"
check "incr again" '200 {"name":"c","value":2}' "$(call -X POST "$U/counters/c/incr")"
check "GET counter" '200 {"name":"c","value":2}' "$(call "$U/counters/c")"
check "GET absent counter is 0" '200 {"name":"z","value":0}' "$(call "$U/counters/z")"
check "percent-decoded key" "200 " "$(call -X PUT --data-binary 'v' "$U/kv/b%2Fc")"
check "DELETE" "200 " "$(call -X DELETE "$U/kv/new")"
check "DELETE absent is 404" '404 {"error":"not_found"}' "$(call -X DELETE "$U/kv/new")"
check "dump is canonical" '200 {"counters":{"c":2},"kv":{"a":"hello world","b/c":"v"}}' "$(call "$U/dump")"
printf 'q"\\\n\001\377\303\251' >"$WORK/odd"
curl -s -X PUT --data-binary @"$WORK/odd" "$U/kv/odd" >/dev/null
printf '{"counters":{"c":2},"kv":{"a":"hello world","b/c":"v","odd":"q\\"\\\\\\n\\u0001\\u00ff\303\251"}}' >"$WORK/want"
curl -s "$U/dump" >"$WORK/got"
check "dump escapes bytes and marks invalid UTF-8" "same" "$(cmp -s "$WORK/want" "$WORK/got" && echo same || echo different)"
curl -s "$U/kv/odd" >"$WORK/odd-back"
check "values round-trip byte for byte" "same" "$(cmp -s "$WORK/odd" "$WORK/odd-back" && echo same || echo different)"
check "healthz" '200 {"status":"ok"}' "$(call "$U/healthz")"
check "unknown path" '404 {"error":"not_found"}' "$(call "$U/nope")"
check "wrong method" '405 {"error":"method_not_allowed"}' "$(call -X PATCH "$U/kv/a")"
check "405 names the allowed methods" "Allow: POST" "$(curl -s -D - -o /dev/null -X GET "$U/kv/a/append" | grep -i '^allow' | tr -d '\r')"
check "broken escape" '400 {"error":"bad_path"}' "$(call "$U/kv/%zz")"
head -c $((16 * 1024 * 1024 + 1)) /dev/zero >"$WORK/big"
check "body over 16 MiB" "413" "$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @"$WORK/big" "$U/kv/big")"
check "still serving" '200 {"status":"ok"}' "$(call "$U/healthz")"

kill -TERM "$PID"
wait "$PID"
check "SIGTERM exits 0" "0" "$?"

"$BIN" --port 0 --delay-ms 300 >"$WORK/out2" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  [ -s "$WORK/out2" ] && break
  sleep 0.05
done
PORT=$(head -1 "$WORK/out2" | sed 's/.*://')
TIME=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/healthz")
check "--delay-ms 300 holds the response back" "yes" "$(awk -v t="$TIME" 'BEGIN { print (t >= 0.29 && t < 2) ? "yes" : "no" }')"
kill -INT "$PID"
wait "$PID"
check "SIGINT exits 0" "0" "$?"

"$BIN" --port nope >/dev/null 2>&1
check "bad arguments exit 2" "2" "$?"

if [ "$FAILURES" -ne 0 ]; then
  echo "$FAILURES check(s) failed"
  exit 1
fi
echo "all checks passed"
