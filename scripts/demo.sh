#!/usr/bin/env bash
# The quick-start demo: installs what is missing, builds, starts taskrtd with its
# defaults on a private temporary socket, runs the demo workload that shows where each
# kind of task runs and why, then its Python part (examples/python/demo.py: the same
# lesson for Python functions through taskrt.Executor), then stops the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
BIN="$PWD/${BUILD_DIR:-build}/bin"

DEMO_DIR="$(mktemp -d /tmp/taskrt-demo-XXXXXX)"
export TASKRT_SOCKET="$DEMO_DIR/taskrt.sock"
# The daemon's Python workers inherit its environment: they import the Python demo's
# functions (examples/python/demo_funcs.py) from there.
PYTHONPATH="$PWD/examples/python${PYTHONPATH:+:$PYTHONPATH}" "$BIN/taskrtd" &
DAEMON_PID=$!
cleanup() {
  kill -TERM "$DAEMON_PID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$DAEMON_PID" 2>/dev/null || true
  wait "$DAEMON_PID" 2>/dev/null || true
  rm -rf "$DEMO_DIR"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  "$BIN/taskrt" handlers >/dev/null 2>&1 && break
  sleep 0.1
done

run() { echo; echo "\$ $*"; "$@"; }
run "$BIN/taskrt" handlers
run "$BIN/taskrt" submit math.primes --json '{"below": 5000000}' --wait
run "$BIN/taskrt" exec --wait -- sh -c 'echo "hello from $(hostname) via sys.exec"'
run "$BIN/taskrt" stats
echo
"$BIN/taskrt-demo"
echo
echo "\$ PYTHONPATH=${BUILD_DIR:-build}/python /usr/bin/python3 examples/python/demo.py"
PYTHONPATH="$PWD/${BUILD_DIR:-build}/python" /usr/bin/python3 examples/python/demo.py
