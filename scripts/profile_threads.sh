#!/usr/bin/env bash
# CPU time per task of each taskrtd thread and of the workers, over batched no-op runs.
#
#   bash scripts/profile_threads.sh [RUNS] [taskrtd args...]
#   SCENARIO=noop_throughput_8_clients TASKS=40000 bash scripts/profile_threads.sh 6
#
# Starts build/bin/taskrtd on a temporary socket, warms it with WARM (default 1)
# taskrt-bench noop_throughput runs (6 or more: past the 100000 retained tasks, so the
# runs measured include evicting old ones), reads every thread's utime+stime from /proc before and after RUNS
# more runs (20000 tasks each), prints microseconds of CPU per task per thread, and stops
# the daemon by its pid. Used for the profile in docs/PERFORMANCE.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/build/bin"
RUNS="${1:-6}"
shift || true
DIR="$(mktemp -d /tmp/taskrt-profile-XXXXXX)"
"$BIN/taskrtd" --socket "$DIR/taskrt.sock" --state-dir "$DIR/state" "$@" >"$DIR/taskrtd.log" 2>&1 &
DAEMON=$!
cleanup() { kill "$DAEMON" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
for _ in $(seq 50); do [ -S "$DIR/taskrt.sock" ] && break; sleep 0.1; done
SCENARIO="${SCENARIO:-noop_throughput}"
TASKS="${TASKS:-20000}"  # tasks per run of SCENARIO
bench() { "$BIN/taskrt-bench" --socket "$DIR/taskrt.sock" --scenario "$SCENARIO" 2>&1 | grep "^$SCENARIO " | awk '{print "  " $1, $2, $3}'; }
for _ in $(seq "${WARM:-1}"); do bench >/dev/null; done
threads() {  # pid -> "tid comm ticks" lines
  for t in /proc/"$1"/task/*; do
    printf '%s %s %s\n' "${t##*/}" "$(tr ' ' '_' <"$t/comm")" "$(awk '{print $14 + $15}' "$t/stat")"
  done
}
snapshot() { threads "$DAEMON"; for w in $(pgrep -P "$DAEMON" || true); do threads "$w"; done; }
snapshot | sort >"$DIR/before"
for _ in $(seq "$RUNS"); do bench; done
snapshot | sort >"$DIR/after"
TICK=$(getconf CLK_TCK)
echo "CPU per task (us), $RUNS x $TASKS no-op tasks ($SCENARIO):"
join "$DIR/before" "$DIR/after" | awk -v n=$((RUNS * TASKS)) -v hz="$TICK" \
  '{ d = $5 - $3; if (d > 0) printf "  %-8s %-16s %6.2f\n", $1, $2, d * 1e6 / hz / n }'
