#!/usr/bin/env bash
# How taskrtd finds its plugins and its worker binary, through its command line.
#
# Usage: plugin_path_test.sh BIN_DIR EXAMPLE_PLUGIN_SO
#   BIN_DIR            the build's bin/ (taskrtd, taskrt, taskrt-worker)
#   EXAMPLE_PLUGIN_SO  libtaskrt_example_plugin.so (example.reverse)
#
# Checks that `--plugin libmine.so` names a file of the working directory (not of
# dlopen's search path), that a missing plugin is reported with its resolved path, and
# that a taskrtd with no taskrt-worker beside it or in ../libexec/taskrt/ names both
# paths. Every daemon started here is stopped by its pid. Ends with "N passed, M failed".
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 BIN_DIR EXAMPLE_PLUGIN_SO" >&2; exit 2; }
BIN_DIR=$(cd "$1" && pwd)
PLUGIN=$2
TASKRTD="$BIN_DIR/taskrtd"
TASKRT_BIN="$BIN_DIR/taskrt"
READY_TENTHS=200  # how long a daemon may take to serve, in tenths of a second
STOP_TENTHS=100   # how long it may take to exit after SIGTERM

DIR=$(mktemp -d "${TMPDIR:-/tmp}/taskrt-plugin-path.XXXXXX")
DAEMON_PID=""
PASSED=0
FAILED=0

source "$(dirname "${BASH_SOURCE[0]}")/../testing/stop_pid.sh"
stop_daemon() {
  stop_pid "$DAEMON_PID" "$STOP_TENTHS" taskrtd
  DAEMON_PID=""
}
cleanup() {
  local rc=$?
  set +e
  stop_daemon
  rm -rf "$DIR"
  exit "$rc"
}
trap cleanup EXIT

pass() { PASSED=$((PASSED + 1)); }
fail() {
  FAILED=$((FAILED + 1))
  echo "FAIL: $1"
  [[ -n ${2:-} ]] && sed 's/^/  | /' "$2"
  return 0
}

# expect_error NAME TEXT... -- CMD...: CMD exits non-zero within 60 s and its stderr
# contains every TEXT.
expect_error() {
  local name=$1
  shift
  local texts=()
  while [[ $1 != "--" ]]; do texts+=("$1"); shift; done
  shift
  local rc=0
  timeout -k 5 60 "$@" >"$DIR/out" 2>"$DIR/err" </dev/null || rc=$?
  if [[ $rc -eq 0 || $rc -eq 124 || $rc -eq 137 ]]; then
    fail "$name: expected an error exit, got $rc" "$DIR/err"
    return
  fi
  local t
  for t in "${texts[@]}"; do
    if grep -qF -- "$t" "$DIR/err"; then pass; else fail "$name: stderr lacks '$t'" "$DIR/err"; fi
  done
}

# --- a relative --plugin is a file of the working directory ----------------------------
mkdir "$DIR/cwd"
cp "$PLUGIN" "$DIR/cwd/libmine.so"
SOCK="$DIR/t.sock"
(cd "$DIR/cwd" && exec "$TASKRTD" --socket "$SOCK" --plugin libmine.so --cpu-workers 1 \
  --python '' --quiet) >"$DIR/taskrtd.log" 2>&1 &
DAEMON_PID=$!
ready=0
for ((i = 0; i < READY_TENTHS; i++)); do
  kill -0 "$DAEMON_PID" 2>/dev/null || break
  if timeout -k 2 5 "$TASKRT_BIN" --socket "$SOCK" handlers >"$DIR/handlers" 2>&1; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ $ready -eq 1 ]]; then
  pass
  if grep -qF "$DIR/cwd/libmine.so" "$DIR/handlers"; then
    pass
  else
    fail "taskrt handlers does not name the plugin by its absolute path $DIR/cwd/libmine.so" \
      "$DIR/handlers"
  fi
  printf 'hello' >"$DIR/input"
  if timeout -k 5 60 "$TASKRT_BIN" --socket "$SOCK" submit example.reverse \
    --input-file "$DIR/input" --wait >"$DIR/run" 2>&1 && grep -qF olleh "$DIR/run"; then
    pass
  else
    fail "example.reverse from the relative plugin did not answer 'olleh'" "$DIR/run"
  fi
else
  fail "taskrtd --plugin libmine.so (in its working directory) did not start" "$DIR/taskrtd.log"
fi
stop_daemon

# --- a missing plugin is named by its resolved path ------------------------------------
expect_error "missing relative plugin" "$DIR/cwd/nothere.so" "working directory" -- \
  bash -c 'cd "$1" && exec "$2" --socket "$3" --plugin nothere.so --python "" --quiet' _ \
  "$DIR/cwd" "$TASKRTD" "$DIR/missing.sock"

# --- no worker binary: both places are named -------------------------------------------
mkdir -p "$DIR/lonely/bin"
cp "$TASKRTD" "$DIR/lonely/bin/taskrtd"
expect_error "no taskrt-worker" "$DIR/lonely/bin/taskrt-worker" \
  "$DIR/lonely/bin/../libexec/taskrt/taskrt-worker" "--worker-path" -- \
  "$DIR/lonely/bin/taskrtd" --socket "$DIR/lonely.sock" --python '' --quiet

echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
