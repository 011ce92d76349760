#!/usr/bin/env bash
# Configures and builds taskrt into ./build (or $BUILD_DIR). Extra arguments go to cmake,
# e.g. scripts/build.sh -DTASKRT_ASAN=ON with BUILD_DIR=build-asan.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$BUILD_DIR" -j"${JOBS:-2}"
