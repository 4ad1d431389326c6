#!/usr/bin/env bash
# The test command of the README: installs what is missing, builds once, runs every test (unit, simulator,
# integration with real processes). Extra arguments go to `swift test` (e.g. --filter Simulation).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
# The code is formatted with the toolchain's swift-format and the checked-in .swift-format; drift fails here.
swift format lint --strict --recursive Sources Tests Examples Package.swift
swift build --build-tests
swift test --skip-build "$@"
