#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole default test
# set (labels unit, integration, fault, security). Slow soak and benchmark runs are not in it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
bash scripts/promtool.sh "${BUILD_DIR:-build}/tools"
cd "${BUILD_DIR:-build}"
ctest -j2 --output-on-failure --timeout 300 -L 'unit|integration|fault|security' "$@"
