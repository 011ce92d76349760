#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz into ./build-fuzz (or $FUZZ_BUILD_DIR)
# with clang-14 and ASan+UBSan, and runs each for FUZZ_SECONDS (default 30) on a copy of
# its seed corpus (tests/fuzz/corpus/<harness>/ is never written). Exits non-zero on any
# crash, leak, timeout, out-of-memory or sanitizer report, and keeps the reproducer in
# build-fuzz/fuzz-runs/<harness>/artifacts/. Prints executions and coverage per harness.
#
#   scripts/fuzz.sh                                  # all harnesses, 30 s each (CI)
#   FUZZ_SECONDS=600 scripts/fuzz.sh builtin_input_fuzz   # one harness, longer
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
BUILD_DIR="${FUZZ_BUILD_DIR:-build-fuzz}"
HARNESSES=(frame_decoder_fuzz request_validation_fuzz builtin_input_fuzz)
if [ $# -gt 0 ]; then HARNESSES=("$@"); fi

export CC="${FUZZ_CC:-clang-14}" CXX="${FUZZ_CXX:-clang++-14}"
if ! command -v "$CXX" >/dev/null; then
  echo "fuzz: $CXX not found: install clang-14 and libclang-rt-14-dev (scripts/setup.sh does)" >&2
  exit 2
fi
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTASKRT_FUZZ=ON \
  -DTASKRT_BUILD_TESTS=OFF ${FUZZ_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" --target "${HARNESSES[@]}" -j"${JOBS:-2}"

# Leaks fail the run; UBSan stops at the first report (-fno-sanitize-recover) and
# prints where.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=()
summary=()
for h in "${HARNESSES[@]}"; do
  seeds="tests/fuzz/corpus/$h"
  run="$BUILD_DIR/fuzz-runs/$h"
  rm -rf "$run"
  mkdir -p "$run/corpus" "$run/artifacts"
  [ -d "$seeds" ] && cp "$seeds"/* "$run/corpus/"
  echo "fuzz: $h for ${FUZZ_SECONDS}s"
  dict=()
  [ -f "tests/fuzz/$h.dict" ] && dict=(-dict="tests/fuzz/$h.dict")
  rc=0
  "$BUILD_DIR/fuzz/$h" -max_total_time="$FUZZ_SECONDS" -max_len=4096 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$run/artifacts/" \
    "${dict[@]}" "$run/corpus" >"$run/log" 2>&1 || rc=$?
  # A run that crashes on a seed prints no stats: then these stay empty ("?").
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$run/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$run/log" | tail -1 | cut -d' ' -f2 || true)
  ft=$(grep -o 'ft: [0-9]*' "$run/log" | tail -1 | cut -d' ' -f2 || true)
  corp=$(find "$run/corpus" -type f | wc -l)
  line=$(printf '%-24s %10s execs (%s/s)  cov %s  ft %s  corpus %s' "$h" "${execs:-?}" \
    "${speed:-?}" "${cov:-?}" "${ft:-?}" "$corp")
  if [ "$rc" -ne 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' \
    "$run/log" || [ -n "$(ls -A "$run/artifacts")" ]; then
    failed+=("$h")
    line="$line  FAILED (exit $rc)"
    echo "---- $h: last lines of $run/log" >&2
    tail -n 40 "$run/log" >&2
    echo "---- reproduce: $BUILD_DIR/fuzz/$h $run/artifacts/<file>" >&2
    ls -l "$run/artifacts" >&2
  fi
  summary+=("$line")
done

echo "fuzz: summary (${FUZZ_SECONDS}s each)"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all harnesses passed"
