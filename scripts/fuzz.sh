#!/usr/bin/env bash
# Builds the libFuzzer targets of Fuzz/ and runs each for N seconds (default 30) from its seed corpus under
# Fuzz/corpus/<target>/; fails on the first crash (libFuzzer leaves the input as crash-* in the work directory).
# Usage: scripts/fuzz.sh [seconds] [target...]
#   targets: consensus-codec frame-parser write-command http-parser handshake wal-recovery
#
# Each target is the package's own sources compiled with `swiftc -sanitize=fuzzer,address`: TandemConsensus,
# TandemHTTP, TandemNet and TandemStorage as modules (one object each, built only when a chosen target needs it),
# the few TandemTransport/TandemSidecar files a target needs compiled into it (Fuzz/targets/PeerTransportStub.swift
# and PeerTransportDeclaration.swift stand in for the libevent-backed transport).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(consensus-codec frame-parser write-command http-parser handshake wal-recovery)
out=.build/fuzz
mkdir -p "$out/work"
# The C modules' maps (TandemNet imports libevent and OpenSSL through them); the libraries link by autolink.
flags=(-O -g -sanitize=fuzzer,address -parse-as-library -I Sources/CLibevent -I Sources/CLibeventOpenSSL
  -I Sources/CLibeventPthreads)
built=" "

# module NAME: one instrumented object and its .swiftmodule, once per run, from the files of Sources/NAME that
# `sources` names for it, or from all of them.
declare -A sources=(
  # The write-ahead log alone: the snapshot store's files take as long again to compile and the target needs none.
  [TandemStorage]="CRC32C FileIO Records Recovery Types WriteAheadLog"
)
module() {
  local name=$1 files=() file
  [[ "$built" == *" $name "* ]] && return
  if [ -n "${sources[$name]:-}" ]; then
    for file in ${sources[$name]}; do files+=("Sources/$name/$file.swift"); done
  else
    files=("Sources/$name"/*.swift)
  fi
  swiftc "${flags[@]}" -wmo -module-name "$name" -emit-module -emit-module-path "$out/$name.swiftmodule" \
    -I "$out" -c "${files[@]}" -o "$out/$name.o"
  built+="$name "
}

target() {  # target NAME MODULES -- SOURCES...
  local name=$1
  shift
  local objects=()
  while [ "$1" != "--" ]; do module "$1"; objects+=("$out/$1.o"); shift; done
  shift
  swiftc "${flags[@]}" -module-name "Fuzz_${name//-/_}" -I "$out" "$@" "${objects[@]}" -o "$out/fuzz-$name"
}

echo "building the fuzz targets in $out (log: $out/build.log)" >&2
exec 3>&2 2>"$out/build.log"
trap 'echo "build failed:" >&3; tail -n 30 "$out/build.log" >&3' ERR
for name in "${targets[@]}"; do
  case "$name" in
    consensus-codec)
      target "$name" TandemConsensus -- Sources/TandemTransport/ConsensusCodec.swift \
        Sources/TandemTransport/ByteCoding.swift Fuzz/targets/PeerTransportStub.swift Fuzz/targets/ConsensusCodecFuzz.swift ;;
    frame-parser)
      target "$name" -- Sources/TandemTransport/FrameParser.swift Fuzz/targets/FrameParserFuzz.swift ;;
    write-command)
      target "$name" TandemHTTP -- Sources/TandemSidecar/WriteCommand.swift Fuzz/targets/WriteCommandFuzz.swift ;;
    http-parser)
      # The HTTP parsers' own harness (Tests/TandemHTTPTests/LibFuzzerHarness.swift), built with the sources.
      swiftc "${flags[@]}" -D TANDEM_LIBFUZZER -module-name HTTPFuzz Sources/TandemHTTP/*.swift \
        Tests/TandemHTTPTests/LibFuzzerHarness.swift -o "$out/fuzz-$name" ;;
    handshake)
      # Handshake.swift with what it names: the wire constants and LinkFailure (TandemTransport.swift, which
      # needs FrameError and the PeerTransport declaration), ByteCoding, and TandemNet for Crypto (OpenSSL).
      target "$name" TandemConsensus TandemNet -- Sources/TandemTransport/Handshake.swift \
        Sources/TandemTransport/TandemTransport.swift Sources/TandemTransport/ByteCoding.swift \
        Sources/TandemTransport/FrameParser.swift Fuzz/targets/PeerTransportDeclaration.swift \
        Fuzz/targets/HandshakeFuzz.swift ;;
    wal-recovery)
      target "$name" TandemStorage -- Fuzz/targets/WALRecoveryFuzz.swift ;;
    *) echo "unknown target $name" >&2; exit 2 ;;
  esac
done

exec 2>&3
trap - ERR
status=0
export SWIFT_BACKTRACE=enable=no  # libFuzzer reports the crash; the interactive backtracer could hang instead
for name in "${targets[@]}"; do
  corpus=Fuzz/corpus/$name
  work=$out/work/$name
  mkdir -p "$work"
  rm -f "$work"/crash-* "$work"/leak-* "$work"/timeout-*  # from an earlier run
  echo "fuzzing $name for ${seconds}s" >&2
  # New inputs go to the scratch directory; the committed seeds are read only.
  if ! (cd "$work" && "../../fuzz-$name" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
    . "../../../../$corpus" 2>&1 | grep -vE '^"|^#{6} |^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)'); then
    status=1
  fi
  if ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* >/dev/null 2>&1; then
    echo "FAILED: $name left $(ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* 2>/dev/null | tr '\n' ' ')" >&2
    status=1
  fi
done
exit $status
