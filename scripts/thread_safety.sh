#!/usr/bin/env bash
# Checks the lock annotations (ABSL_GUARDED_BY, ABSL_EXCLUSIVE_LOCKS_REQUIRED, ...) with
# clang-14's -Wthread-safety as errors: builds the daemon, the worker, the SDK and the
# CLI into ./build-thread-safety (or $TSA_BUILD_DIR) without optimisation (the analysis
# runs in the front end; code generation is only what the build needs to finish).
# Exits non-zero on the first unguarded access. Run by .ci/run on every submission.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${TSA_BUILD_DIR:-build-thread-safety}"
export CC="${TSA_CC:-clang-14}" CXX="${TSA_CXX:-clang++-14}"
if ! command -v "$CXX" >/dev/null; then
  echo "thread-safety: $CXX not found: install clang-14 (scripts/setup.sh does)" >&2
  exit 2
fi
# An unnamed build type: no -O, no -g.
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=ThreadSafety -DTASKRT_THREAD_SAFETY=ON \
  -DTASKRT_BUILD_TESTS=OFF -DTASKRT_MALLOC=system ${TSA_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" --target taskrtd taskrt-worker taskrt -j"${JOBS:-2}"
echo "thread-safety: no warnings"
