#!/usr/bin/env bash
# The performance regression run: the benchmarks one after the other on the same binaries, each in its own
# side-by-side form (Tandem and the tool it replaces measured in the same script run), then one table of the ratios
# against the goals. Every figure is a ratio or a latency measured in this run; nothing is compared with a number
# from another machine or another day.
#   reads     scripts/bench-proxy.sh     tandem / haproxy: requests/s, p99, CPU per request (1, 50, 256 connections)
#   writes    scripts/bench-writes.sh    tandem / etcd through the leader and a follower: writes/s, CPU per write
#                                        (each the median of BENCH_ROUNDS alternating rounds)
#   failover  scripts/bench-failover.sh  kill -9 of the leader to the first acknowledged write; writes lost
#   overload  scripts/bench-overload.sh  goodput at 10x the base load against the best step (each step the median
#                                        of BENCH_ROUNDS alternating rounds, default 3); /healthz worst
#   pairs     bench/overload-paired.sh   the same goal measured in pairs seconds apart: 10x against 1x and against
#                                        2x, the median of 8 per-round ratios each (BENCHMARKS.md, section 5)
#   read pairs bench/reads-paired.sh     the read goals measured in pairs seconds apart: tandem / haproxy, the
#                                        median of 10 per-pair ratios at each connection count (section 3), once
#                                        as the machine schedules them and once with the proxies alone compared:
#                                        haproxy adding the forwarding fields Tandem adds, the app and the proxies
#                                        on one CPU and wrk on the other
# Usage: [BIN=.build/release] scripts/bench-all.sh [quick|full]
#   quick (default, about 21 minutes): 5 s per row, connections "1 50 256" (reads) and "1 64 256" (writes), 8
#   failovers.
#   full (about 46 minutes): 10 s per row, "1 50 256" and "1 64 256", 20 failovers.
# BENCH_ROUNDS (default 3) is how many alternating rounds the read, write and overload scripts measure; on a noisy
# machine 5 gives steadier medians (about 6 minutes more).
# BENCH_ALL_OUT keeps every script's full output in that directory (default: a temporary one, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-quick}
case "$MODE" in
  quick) SECONDS_PER_ROW=5 READ_CONNS="1 50 256" WRITE_CONNS="1 64 256" FAILOVERS=8 OVERLOAD_STEP=5 READ_PAIR_SECONDS=2 ;;
  full) SECONDS_PER_ROW=10 READ_CONNS="1 50 256" WRITE_CONNS="1 64 256" FAILOVERS=20 OVERLOAD_STEP=8 READ_PAIR_SECONDS=4 ;;
  *) echo "usage: scripts/bench-all.sh [quick|full]" >&2; exit 2 ;;
esac
OUT=${BENCH_ALL_OUT:-$(mktemp -d /tmp/tandem-bench-all-XXXXXX)}
mkdir -p "$OUT"
source bench/lib.sh
bench_binaries
export BIN

run() { # run NAME COMMAND...: runs one benchmark into $OUT/NAME.md; a failed one is reported, not fatal
  local name=$1
  shift
  echo "== $name: $*" >&2
  if ! "$@" >"$OUT/$name.md" 2>"$OUT/$name.err"; then
    echo "   $name FAILED (exit $?): see $OUT/$name.err" >&2
  fi
}
run reads scripts/bench-proxy.sh "$SECONDS_PER_ROW" "$READ_CONNS"
run writes scripts/bench-writes.sh "$SECONDS_PER_ROW" "$WRITE_CONNS"
run failover scripts/bench-failover.sh "$FAILOVERS"
run overload scripts/bench-overload.sh "$OVERLOAD_STEP" 128
run pairs-1x bench/overload-paired.sh 8 "$OVERLOAD_STEP" 128 1280
run pairs-2x bench/overload-paired.sh 8 "$OVERLOAD_STEP" 256 1280
# shellcheck disable=SC2086 # one argument per connection count
run read-pairs bench/reads-paired.sh 10 "$READ_PAIR_SECONDS" $READ_CONNS
# The same pairs with the proxies alone compared: haproxy adds X-Forwarded-For and Forwarded as Tandem does (the app
# gets the same request through both), and the app and the proxies share one CPU while wrk has the other, so that
# where the scheduler puts each process, and the price of a wake-up on the other CPU, do not change between halves.
# shellcheck disable=SC2086
run read-pairs-pinned env BENCH_HAPROXY_FORWARDED=1 BENCH_PIN=1 bench/reads-paired.sh 10 "$READ_PAIR_SECONDS" $READ_CONNS

# cell FILE TITLE CONNECTIONS COLUMN: the COLUMN-th cell (1-based: the title is cell 1) of the first table row whose
# first cell is exactly TITLE (the ratio tables' rows: "" in bench-proxy's, the role in bench-writes') and whose
# second cell is CONNECTIONS.
cell() {
  awk -F'|' -v t="$2" -v c="$3" -v k="$4" '
    { a=$2; gsub(/^ +| +$/, "", a); b=$3; gsub(/^ +| +$/, "", b)
      if (a == t && b == c) { v=$(k+1); gsub(/^ +| +$/, "", v); print v; exit } }' "$1"
}
# verdict VALUE OP GOAL: "met" or "not met" (or "n/a" without a value)
verdict() {
  [ -n "$1" ] && [ "$1" != "n/a" ] || { echo "n/a"; return; }
  awk -v v="$1" -v g="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? (v >= g) : (op == "<=") ? (v <= g) : (v < g); print ok ? "met" : "not met" }'
}
row() { printf '| %s | %s | %s | %s %s | %s |\n' "$1" "$2" "${3:-n/a}" "$4" "$5" "$(verdict "${3:-}" "$4" "$5")"; }

echo "Tandem performance against its goals, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, tandem" \
  "$(tandem_commit_label), binaries $BIN, mode $MODE; load average now $(loadavg)."
echo "Ratios are Tandem's figure over the other tool's, measured side by side in the same script run."
echo
echo "| benchmark | measure | value | goal | verdict |"
echo "| --- | --- | ---: | ---: | --- |"
for c in $READ_CONNS; do
  row reads "requests/s, tandem / haproxy, $c conn" "$(cell "$OUT/reads.md" "" "$c" 3)" ">=" 1.0
  row reads "p99, tandem / haproxy, $c conn" "$(cell "$OUT/reads.md" "" "$c" 5)" "<=" 1.0
  row reads "CPU per request, tandem / haproxy, $c conn" "$(cell "$OUT/reads.md" "" "$c" 6)" "<=" 1.0
done
# The two read-pair runs: the output file, and how its rows are labelled after the connection count.
for pairs in "read-pairs:in pairs, median of 10" "read-pairs-pinned:in pairs, pinned, haproxy adding the same forwarding fields"; do
  file="$OUT/${pairs%%:*}.md"
  for c in $READ_CONNS; do
    how="$c conn, ${pairs#*:}"
    row reads "requests/s, tandem / haproxy, $how" "$(cell "$file" "" "$c" 3)" ">=" 1.0
    row reads "p99, tandem / haproxy, $how" "$(cell "$file" "" "$c" 4)" "<=" 1.0
    row reads "CPU per request, tandem / haproxy, $how" "$(cell "$file" "" "$c" 5)" "<=" 1.0
  done
done
for c in $WRITE_CONNS; do
  for role in leader follower; do
    row writes "writes/s, tandem / etcd, via $role, $c conn" "$(cell "$OUT/writes.md" "$role" "$c" 3)" ">=" 1.0
    row writes "CPU per write, tandem / etcd, via $role, $c conn" "$(cell "$OUT/writes.md" "$role" "$c" 6)" "<=" 1.0
  done
done
ack_row=$(grep '^| the first acknowledged write sent after the kill' "$OUT/failover.md" || true)
row failover "kill -9 to first ack, p50 ms" "$(echo "$ack_row" | awk -F'|' '{gsub(/ /,"",$3); print $3}')" "<" 500
row failover "kill -9 to first ack, max ms" "$(echo "$ack_row" | awk -F'|' '{gsub(/ /,"",$4); print $4}')" "<" 1000
row failover "acknowledged writes lost" \
  "$(sed -n 's/.*missing on some replica: \([0-9]*\).*/\1/p' "$OUT/failover.md")" "<=" 0
if [ -s "$OUT/overload.md" ]; then
  peak=$(awk -F'|' '$2 ~ /^ *[0-9.]+ *$/ { g=$4+0; if (g > p) p=g } END { print p+0 }' "$OUT/overload.md")
  at10=$(awk -F'|' '$2 ~ /^ *10 *$/ { print $4+0 }' "$OUT/overload.md")
  worst=$(awk -F'|' '$2 ~ /^ *[0-9.]+ *$/ { w=$10+0; if (w > m) m=w } END { print m+0 }' "$OUT/overload.md")
  row overload "goodput at 10x load / best step, medians of ${BENCH_ROUNDS:-3} rounds" "$(awk -v a="$at10" -v p="$peak" 'BEGIN { if (p > 0) printf "%.2f", a / p }')" ">=" 0.9
  row overload "/healthz worst ms while loaded (sampled every 200 ms)" "$worst" "<" 50
fi
for pair in 1x 2x; do
  row overload "goodput at 10x load / $pair, in pairs seconds apart, median of 8" \
    "$(sed -n 's/^median of the per-round ratios: \([0-9.]*\).*/\1/p' "$OUT/pairs-$pair.md" 2>/dev/null)" ">=" 0.9
done
echo
echo "Every script's own tables (with loads, latencies and the figures behind each ratio): $OUT"
