#!/usr/bin/env bash
# The test command of the README: installs what is missing, builds once, runs every test (unit, simulator,
# integration with real processes). Extra arguments go to `swift test` (e.g. --filter Simulation).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh --test
# The code is formatted with the toolchain's swift-format and the checked-in .swift-format; drift fails here.
swift format lint --strict --recursive Sources Tests Examples Package.swift
swift build --build-tests
swift test --skip-build "$@"
if [ $# -eq 0 ]; then scripts/http-differential.py .build/debug/tandem; fi  # request parsing vs haproxy and nginx (~15 s)
# A short libFuzzer run of every fuzz target (the peer codec, the frame parser, WriteCommand, the HTTP parsers)
# on a full run; `scripts/fuzz.sh <seconds>` runs a longer campaign (Fuzz/README.md has the last figures).
if [ $# -eq 0 ]; then scripts/fuzz.sh 5; fi
# The images of Docker/Dockerfile built for real around the debug binaries just built, started, and the compose
# walk-through run in containers (kill of the leader's pair, failover, replicas identical): about 1.5 min, plus about
# 6 min once per machine for the Debian base. `scripts/docker-test.sh` alone also compiles inside the build stage.
if [ $# -eq 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    TANDEM_PREBUILT_DIR=.build/debug scripts/docker-test.sh --prebuilt
  else
    echo "scripts/docker-test.sh skipped: it starts its own dockerd, which needs root" >&2
  fi
fi
