#!/usr/bin/env bash
# End-to-end test of the `taskrt` CLI against a real taskrtd.
#
# Usage: cli_test.sh BIN_DIR PLUGIN_SO
#   BIN_DIR    the directory holding taskrtd, taskrt and taskrt-worker
#   PLUGIN_SO  the test plugin (libtaskrt_fault_plugin.so: test.crash, test.hang, ...)
#
# Starts one daemon on a socket in a fresh temporary directory, runs the CLI against it
# and checks exit codes and output. Prints every failure with the captured output and
# ends with exactly one line "N passed, M failed"; exits 1 if anything failed.
set -euo pipefail
trap 'echo "cli_test: line $LINENO: exit $? (set -e)" >&2' ERR

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BIN_DIR PLUGIN_SO" >&2
  exit 2
fi
BIN_DIR=$1
PLUGIN=$2
TASKRTD="$BIN_DIR/taskrtd"
TASKRT_BIN="$BIN_DIR/taskrt"
for f in "$TASKRTD" "$TASKRT_BIN"; do
  [[ -x $f ]] || { echo "cli_test: $f is not an executable" >&2; exit 2; }
done
[[ -f $PLUGIN ]] || { echo "cli_test: plugin $PLUGIN not found" >&2; exit 2; }

# Any single CLI invocation that takes longer than this is a hang, not a slow answer.
CMD_TIMEOUT=60
# How long the daemon may take to start serving, in tenths of a second.
READY_TENTHS=100
# How long cleanup waits for the daemon to exit after SIGTERM, in tenths of a second.
STOP_TENTHS=100
# The daemon's input limit for this test (the "input too large" check).
MAX_INPUT=1000

DIR=$(mktemp -d "${TMPDIR:-/tmp}/taskrt-cli.XXXXXX")
SOCK="$DIR/t.sock"
DAEMON_PID=""
source "$(dirname "${BASH_SOURCE[0]}")/../testing/stop_pid.sh"

cleanup() {
  local rc=$?
  set +e
  stop_pid "$DAEMON_PID" "$STOP_TENTHS" "cli_test: taskrtd"
  rm -rf "$DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ---------------------------------------------------------------------------

PASSED=0
FAILED=0
NAME=""      # name of the current check
CMD_TEXT=""  # its command line, for failure reports
OUT=""       # its stdout (trailing newlines stripped)
ERR=""       # its stderr (trailing newlines stripped)
RC=0         # its exit code

pass() { PASSED=$((PASSED + 1)); }

# fail WHAT: records a failure of the current check and prints the captured output.
fail() {
  FAILED=$((FAILED + 1))
  {
    echo "FAIL: $NAME: $1"
    echo "  command: $CMD_TEXT"
    echo "  exit code: $RC"
    echo "  --- stdout ---"
    printf '%s\n' "$OUT" | sed 's/^/  | /'
    echo "  --- stderr ---"
    printf '%s\n' "$ERR" | sed 's/^/  | /'
  }
}

# check NAME EXPECTED_EXIT -- CMD ARGS...
# Runs the command (bounded by CMD_TIMEOUT), captures stdout, stderr and the exit code,
# and checks the exit code. EXPECTED_EXIT is a number, or "!0" for any non-zero code.
check() {
  NAME=$1
  local expected=$2
  shift 2
  [[ ${1:-} == "--" ]] && shift
  CMD_TEXT=$(printf '%q ' "$@")
  RC=0
  timeout -k 5 "$CMD_TIMEOUT" "$@" >"$DIR/stdout" 2>"$DIR/stderr" </dev/null || RC=$?
  OUT=$(<"$DIR/stdout")
  ERR=$(<"$DIR/stderr")
  if [[ $RC -eq 124 || $RC -eq 137 ]]; then
    fail "did not finish within ${CMD_TIMEOUT}s (exit code $RC)"
  elif [[ $expected == "!0" ]]; then
    if [[ $RC -ne 0 ]]; then pass; else fail "expected a non-zero exit code, got 0"; fi
  elif [[ $RC -eq $expected ]]; then
    pass
  else
    fail "expected exit code $expected, got $RC"
  fi
}

# expect_contains TEXT [stdout|stderr|any]: the current check's output contains TEXT.
expect_contains() {
  local text=$1 where=${2:-any} haystack
  case $where in
    stdout) haystack=$OUT ;;
    stderr) haystack=$ERR ;;
    *) haystack="$OUT"$'\n'"$ERR" ;;
  esac
  if [[ $haystack == *"$text"* ]]; then pass; else fail "$where does not contain '$text'"; fi
}

# expect_not_contains TEXT [stdout|stderr|any]
expect_not_contains() {
  local text=$1 where=${2:-any} haystack
  case $where in
    stdout) haystack=$OUT ;;
    stderr) haystack=$ERR ;;
    *) haystack="$OUT"$'\n'"$ERR" ;;
  esac
  if [[ $haystack != *"$text"* ]]; then pass; else fail "$where contains '$text'"; fi
}

# expect_line REGEX [stdout|stderr|any]: some line of the output matches the ERE.
expect_line() {
  local regex=$1 where=${2:-any} haystack
  case $where in
    stdout) haystack=$OUT ;;
    stderr) haystack=$ERR ;;
    *) haystack="$OUT"$'\n'"$ERR" ;;
  esac
  # A here-string, not a pipe: grep -q may exit before printf is done, and pipefail
  # would take the writer's SIGPIPE for "no match".
  if grep -Eq -- "$regex" <<<"$haystack"; then
    pass
  else
    fail "no line of $where matches /$regex/"
  fi
}

# expect_equals EXPECTED ACTUAL WHAT
expect_equals() {
  if [[ $2 == "$1" ]]; then
    pass
  else
    fail "$3: expected '$(printf '%s' "$1" | sed -n l | tr -d '\n')'," \
      "got '$(printf '%s' "$2" | sed -n l | tr -d '\n')'"
  fi
}

# expect_json: stdout is valid JSON.
expect_json() {
  if printf '%s' "$OUT" | python3 -c 'import json,sys; json.load(sys.stdin)' 2>/dev/null; then
    pass
  else
    fail "stdout is not valid JSON"
  fi
}

# The number of tasks the daemon lists (all of them: the limit is far above this test's).
task_count() {
  timeout -k 5 "$CMD_TIMEOUT" "$TASKRT_BIN" --socket "$SOCK" -o json list --limit 100000 |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'
}

T=("$TASKRT_BIN" --socket "$SOCK")

# --- start the daemon ------------------------------------------------------------------

# start_daemon: taskrtd on $SOCK (its journal in the default <socket>.state), serving
# within READY_TENTHS, else the test ends with its log.
start_daemon() {
  "$TASKRTD" --socket "$SOCK" --plugin "$PLUGIN" --cpu-workers 2 --quiet \
    --max-input-bytes "$MAX_INPUT" >>"$DIR/taskrtd.log" 2>&1 &
  DAEMON_PID=$!
  local ready=0 i
  for ((i = 0; i < READY_TENTHS; i++)); do
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then break; fi
    if timeout -k 2 5 "${T[@]}" handlers >/dev/null 2>&1; then
      ready=1
      break
    fi
    sleep 0.1
  done
  if [[ $ready -ne 1 ]]; then
    echo "cli_test: taskrtd did not start serving $SOCK within $((READY_TENTHS / 10))s; its log:" >&2
    sed 's/^/  | /' "$DIR/taskrtd.log" >&2
    echo "$PASSED passed, $((FAILED + 1)) failed"
    exit 1
  fi
}
start_daemon

# --- help ------------------------------------------------------------------------------

check "taskrtd --help" 0 -- "$TASKRTD" --help
expect_contains "--socket" stdout
expect_contains "--cpu-workers" stdout
expect_contains "--plugin" stdout

check "taskrt --help" 0 -- "$TASKRT_BIN" --help
for word in --socket submit exec explain wait status cancel handlers "Exit status" \
  --token-file --tls-ca --tls-cert --tls-key --tls-server-name TASKRT_TOKEN TASKRT_TARGET; do
  expect_contains "$word" stdout
done

check "subcommand help names the global options" 0 -- "$TASKRT_BIN" submit --help
expect_contains "Global options" stdout
expect_contains "--socket PATH" stdout
expect_contains "-o/--output" stdout

check "taskrt --version" 0 -- "$TASKRT_BIN" --version
expect_line "taskrt [0-9]+\.[0-9]+\.[0-9]+" stdout
check "taskrtd --version" 0 -- "$TASKRTD" --version
expect_line "taskrtd [0-9]+\.[0-9]+\.[0-9]+ \(allocator: [a-z]+\)" stdout

check "taskrt without a subcommand is a usage error" 2 -- "$TASKRT_BIN"
expect_contains "subcommand"

# --- submit --wait and the decision ----------------------------------------------------

check "submit math.primes --wait" 0 -- "${T[@]}" submit math.primes --json '{"below": 100000}' --wait
expect_contains "9592" stdout
expect_contains "state: succeeded" stdout
expect_contains "ran as cpu because the handler registered the hint CPU" stdout
expect_contains "executor: process" stdout
expect_contains "of the cpu pool" stdout
expect_line "worker pid [0-9]+" stdout

# --- submit without --wait, then wait / status / explain -------------------------------

check "submit without --wait prints one id" 0 -- "${T[@]}" submit math.primes --json '{"below": 100000}'
ID=$OUT
if [[ $(printf '%s\n' "$OUT" | wc -l) -eq 1 && $OUT =~ ^[^[:space:]]+$ ]]; then
  pass
else
  fail "expected exactly one task id on one line"
fi

check "wait ID" 0 -- "${T[@]}" wait "$ID"
expect_contains "$ID" stdout
expect_line "^$ID +math\.primes +succeeded +process +cpu +handler-hint" stdout

check "status ID" 0 -- "${T[@]}" status "$ID"
expect_line "^$ID +math\.primes +succeeded " stdout

check "explain ID" 0 -- "${T[@]}" explain "$ID"
expect_contains "task $ID (math.primes): succeeded" stdout
expect_contains "asked for auto; ran as cpu because the handler registered the hint CPU" stdout
expect_contains "executor: process" stdout
expect_contains "cpu pool" stdout

check "-o json status ID" 0 -- "${T[@]}" -o json status "$ID"
expect_json
expect_contains '"state"' stdout
expect_contains '"TASK_STATE_SUCCEEDED"' stdout
expect_contains "\"$ID\"" stdout

# --- classes and executors -------------------------------------------------------------

check "--class io math.primes runs on a thread" 0 -- \
  "${T[@]}" submit math.primes --json '{"below": 1000}' --class io --wait
expect_contains "executor: thread" stdout
expect_contains "ran as io because the client declared it" stdout
expect_contains "of the io pool" stdout

check "sys.sleep runs async" 0 -- "${T[@]}" submit sys.sleep --json '{"ms": 20}' --wait
expect_contains "executor: async" stdout
expect_contains "ran as io because the handler registered the hint IO" stdout

check "--class cpu sys.sleep runs in a process" 0 -- \
  "${T[@]}" submit sys.sleep --json '{"ms": 20}' --class cpu --wait
expect_contains "executor: process" stdout
expect_contains "ran as cpu because the client declared it" stdout

# --- exec ------------------------------------------------------------------------------

check "exec passes stdout, stderr and the exit status through" 7 -- \
  "${T[@]}" exec --wait -- sh -c 'echo out; echo err >&2; exit 7'
expect_equals "out" "$OUT" "stdout"
expect_contains "err" stderr
expect_not_contains "err" stdout

check "exec of a missing command" "!0" -- "${T[@]}" exec --wait -- taskrt-no-such-command-xyz
expect_contains "taskrt-no-such-command-xyz" stderr
expect_contains "No such file" stderr

# interrupt_exec N [stop]: `exec --wait -- sleep 60` in the background, N SIGINTs half a
# second apart once its task runs (with `stop`, the daemon is stopped meanwhile, so
# that the cancel cannot answer); sets OUT, ERR, CODE and RUNNING_ID (the task it ran).
interrupt_exec() {
  local n=$1 stop=${2:-} pid i
  "${T[@]}" exec --wait -- sleep 60 >"$DIR/int.out" 2>"$DIR/int.err" &
  pid=$!
  RUNNING_ID=""
  for ((i = 0; i < 100; i++)); do
    sleep 0.1
    RUNNING_ID=$("$TASKRT_BIN" --socket "$SOCK" -o json list --state running --handler sys.exec |
      python3 -c 'import json,sys; t=json.load(sys.stdin); print(t[0]["id"] if t else "")')
    [[ -n $RUNNING_ID ]] && break
  done
  sleep 0.3  # taskrt takes over SIGINT once Submit has answered, a moment after that
  [[ -n $stop ]] && kill -STOP "$DAEMON_PID"
  for ((i = 0; i < n; i++)); do
    kill -INT "$pid" 2>/dev/null
    sleep 0.5
  done
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n $stop ]] && kill -CONT "$DAEMON_PID"
  kill -KILL "$pid" 2>/dev/null && echo "interrupt_exec: taskrt (pid $pid) still ran" >&2
  CODE=0
  wait "$pid" || CODE=$?
  OUT=$(cat "$DIR/int.out")
  ERR=$(cat "$DIR/int.err")
}

interrupt_exec 1
expect_equals 1 "$CODE" "exit code after one Ctrl-C (the task was cancelled)"
expect_contains "taskrt: cancelling $RUNNING_ID" stderr
check "the interrupted command's task is cancelled" 1 -- "${T[@]}" status "$RUNNING_ID"
expect_contains "cancelled" stdout

interrupt_exec 2 stop
expect_equals 130 "$CODE" "exit code after a second Ctrl-C (detached)"
expect_contains "taskrt: cancelling $RUNNING_ID" stderr
expect_contains "detached; still on the daemon: $RUNNING_ID" stderr
# Whether the hung cancel reached the daemon after all is up to it: cancel it now.
"${T[@]}" cancel "$RUNNING_ID" >/dev/null 2>&1 || true
check "the detached command, cancelled afterwards" 1 -- "${T[@]}" status "$RUNNING_ID"
expect_contains "cancelled" stdout

# exec --wait prints what the command writes as it writes it: "first" is there while
# the command still waits for a file the test makes only then.
"${T[@]}" exec --wait -- sh -c "echo first; echo warn >&2; while [ ! -e '$DIR/go' ]; do sleep 0.1; done; echo second; exit 4" \
  >"$DIR/live.out" 2>"$DIR/live.err" &
LIVE_PID=$!
for ((i = 0; i < 300; i++)); do grep -q first "$DIR/live.out" && break; sleep 0.1; done
OUT=$(cat "$DIR/live.out")
expect_equals "first" "$OUT" "exec --wait's stdout while the command runs"
touch "$DIR/go"
CODE=0
wait "$LIVE_PID" || CODE=$?
expect_equals 4 "$CODE" "exit code of the streamed command"
OUT=$(cat "$DIR/live.out")
expect_equals $'first\nsecond' "$OUT" "exec --wait's stdout, each line once"
OUT=$(cat "$DIR/live.err")
expect_equals "warn" "$OUT" "exec --wait's stderr"

# logs: what a running command wrote so far, then -f to its end.
check "exec a command to follow" 0 -- "${T[@]}" exec -- sh -c "echo a; while [ ! -e '$DIR/go2' ]; do sleep 0.1; done; echo b; exit 3"
LOGS_ID=$OUT
for ((i = 0; i < 300; i++)); do
  [[ $("${T[@]}" logs "$LOGS_ID" 2>/dev/null) == a ]] && break
  sleep 0.1
done
check "logs of a running command" 0 -- "${T[@]}" logs "$LOGS_ID"
expect_equals "a" "$OUT" "logs so far"
"${T[@]}" logs -f "$LOGS_ID" >"$DIR/follow.out" 2>&1 &
FOLLOW_PID=$!
sleep 0.5
touch "$DIR/go2"
CODE=0
wait "$FOLLOW_PID" || CODE=$?
expect_equals 3 "$CODE" "logs -f exits with the command's status"
OUT=$(cat "$DIR/follow.out")
expect_equals $'a\nb' "$OUT" "logs -f output"
check "logs of an ended command" 3 -- "${T[@]}" logs "$LOGS_ID"
expect_equals $'a\nb' "$OUT" "logs after the end"
check "a task that is no command" 0 -- "${T[@]}" submit sys.noop
check "logs of a task that is no command" 2 -- "${T[@]}" logs "$OUT"
expect_contains "not a command" stderr

printf 'echo one\necho two\n\necho three\n' >"$DIR/jobs.txt"
check "exec --jobs-file" 0 -- "${T[@]}" exec --wait --jobs-file "$DIR/jobs.txt"
expect_equals $'one\ntwo\nthree' "$OUT" "stdout (jobs' outputs in line order)"
expect_contains "3 tasks in" stderr
expect_line "^succeeded +3$" stderr

printf 'true\nexit 3\ntrue\nfalse\n' >"$DIR/failing_jobs.txt"
check "exec --jobs-file names the jobs that failed" 1 -- \
  "${T[@]}" exec --wait --jobs-file "$DIR/failing_jobs.txt"
expect_contains "2 of 4 jobs did not exit with status 0:" stderr
expect_line "^  job 2 \`exit 3\`: status 3$" stderr
expect_line "^  job 4 \`false\`: status 1$" stderr
expect_not_contains "job 1 " stderr

# A job log (GNU parallel's format), then --resume-failed runs only what did not exit 0.
rm -f "$DIR/jobs.log"
check "exec --jobs-file --joblog" 1 -- \
  "${T[@]}" exec --wait --jobs-file "$DIR/failing_jobs.txt" --joblog "$DIR/jobs.log"
OUT=$(cut -f1,7,8,9 "$DIR/jobs.log")
expect_equals $'Seq\tExitval\tSignal\tCommand\n1\t0\t0\ttrue\n2\t3\t0\texit 3\n3\t0\t0\ttrue\n4\t1\t0\tfalse' \
  "$OUT" "the job log's columns"
printf 'true\ntrue\ntrue\ntrue\n' >"$DIR/fixed_jobs.txt"
check "exec --resume-failed" 0 -- "${T[@]}" exec --wait --jobs-file "$DIR/fixed_jobs.txt" \
  --joblog "$DIR/jobs.log" --resume-failed
expect_contains "2 of 4 jobs exited 0 before" stderr
expect_line "^succeeded +2$" stderr
expect_equals 7 "$(wc -l <"$DIR/jobs.log" | tr -d ' ')" "job log lines after the resume"
check "exec --resume-failed with nothing left" 0 -- "${T[@]}" exec --wait \
  --jobs-file "$DIR/fixed_jobs.txt" --joblog "$DIR/jobs.log" --resume-failed
expect_contains "4 of 4 jobs exited 0 before" stderr
expect_contains "nothing to run" stderr
check "--joblog without --wait" 2 -- "${T[@]}" exec --jobs-file "$DIR/jobs.txt" --joblog "$DIR/x.log"
expect_contains "needs --jobs-file and --wait" stderr
check "--resume-failed without --joblog" 2 -- "${T[@]}" exec --wait --jobs-file "$DIR/jobs.txt" --resume-failed
expect_contains "needs --joblog" stderr

# A progress bar on a terminal only (script(1) gives the batch a pseudo-terminal).
for i in $(seq 1 30); do echo '{"ms": 50}'; done >"$DIR/sleeps.jsonl"
check "a batch wait off a terminal draws no bar" 0 -- \
  "${T[@]}" submit sys.sleep --json-lines "$DIR/sleeps.jsonl" --wait
expect_not_contains "ETA" stderr
check "a batch wait on a terminal draws a bar" 0 -- script -qec \
  "$(printf '%q ' "${T[@]}" submit sys.sleep --class cpu --json-lines "$DIR/sleeps.jsonl" --wait)" /dev/null
expect_contains "/30  " stdout
expect_contains "/s  ETA " stdout
expect_contains "30 tasks in" stdout

printf '{"below": 100}\n{"below": 1000}\n\n{"below": 100000}\n' >"$DIR/inputs.jsonl"
check "submit --json-lines --wait" 0 -- \
  "${T[@]}" submit math.primes --json-lines "$DIR/inputs.jsonl" --wait
expect_contains "3 tasks in" stdout
expect_line "^succeeded +3$" stdout
expect_line "^process +3$" stdout

before=$(task_count || echo "?")
printf '{"below": 100}\n{"below": \n{"below": 1000}\n' >"$DIR/bad.jsonl"
check "submit --json-lines with a malformed line" 2 -- \
  "${T[@]}" submit math.primes --json-lines "$DIR/bad.jsonl" --wait
expect_contains "line 2" stderr
expect_contains "nothing was submitted" stderr
check "list after the malformed batch" 0 -- "${T[@]}" -o json list --limit 100000
after=$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' ||
  echo "?")
expect_equals "$before" "$after" "number of tasks before and after the malformed batch"

# --- bad input -------------------------------------------------------------------------

check "unknown handler" 2 -- "${T[@]}" submit math.nope --wait
expect_contains "'math.nope' is not registered" stderr
expect_contains "math.primes" stderr
expect_contains "sys.exec" stderr

check "malformed --json" 2 -- "${T[@]}" submit math.primes --json '{"below": '
expect_contains "--json is not valid JSON" stderr
expect_contains "nothing was submitted" stderr

head -c 2000 /dev/zero | tr '\0' 'x' >"$DIR/big.txt"
check "input larger than --max-input-bytes" 2 -- "${T[@]}" submit test.echo --input-file "$DIR/big.txt"
expect_contains "exceeds" stderr
expect_contains "$MAX_INPUT" stderr

for cmd in status wait cancel explain; do
  check "$cmd of an unknown task id" 2 -- "${T[@]}" "$cmd" no-such-task-42
  expect_contains "not found" stderr
  expect_contains "no-such-task-42" stderr
done

check "wrong --class value" 2 -- "${T[@]}" submit sys.noop --class gpu
expect_contains "invalid task class 'gpu'" stderr

check "bad --timeout value" 2 -- "${T[@]}" submit sys.noop --timeout soon
expect_contains "--timeout" stderr

check "bad wait --timeout value" 2 -- "${T[@]}" wait "$ID" --timeout 5parsecs
expect_contains "--timeout" stderr

# --- daemon not running ----------------------------------------------------------------

check "daemon not running" 4 -- "$TASKRT_BIN" --socket "$DIR/none.sock" handlers
expect_contains "taskrtd" stderr
expect_contains "start it" stderr

# --- credentials and socket safety (no TCP daemon needed: refused before connecting) ---

printf 'feedface\n' >"$DIR/token"
chmod 644 "$DIR/token"
check "a token file others can read is refused" 2 -- \
  "$TASKRT_BIN" --target 127.0.0.1:1 --token-file "$DIR/token" handlers
expect_contains "chmod 600 $DIR/token" stderr
expect_not_contains "feedface"
chmod 600 "$DIR/token"
check "no token in clear text to a host that is not loopback" 2 -- \
  "$TASKRT_BIN" --target 192.0.2.1:7070 --token-file "$DIR/token" handlers
expect_contains "refusing to send the token in clear text to 192.0.2.1" stderr
check "TASKRT_TARGET and TASKRT_TOKEN are honoured" 2 -- \
  env TASKRT_TARGET=192.0.2.1:7070 TASKRT_TOKEN=feedface "$TASKRT_BIN" handlers
expect_contains "in clear text to 192.0.2.1" stderr
mkdir -m 0777 "$DIR/open"
ln -s "$SOCK" "$DIR/open/t.sock"
check "a socket in a directory others can write is refused" 6 -- \
  "$TASKRT_BIN" --socket "$DIR/open/t.sock" handlers
expect_contains "chmod go-w $DIR/open" stderr

# --- timeouts --------------------------------------------------------------------------

check "task timeout (test.hang --timeout 300ms)" 1 -- \
  "${T[@]}" submit test.hang --timeout 300ms --wait
expect_contains "timed-out" stdout
expect_contains "timeout of 300 ms" stdout

check "submit sys.sleep 5000ms" 0 -- "${T[@]}" submit sys.sleep --json '{"ms": 5000}'
SLEEP_ID=$OUT
check "wait --timeout 200ms gives up" 3 -- "${T[@]}" wait --timeout 200ms "$SLEEP_ID"
expect_contains "gave up" stderr
check "cancel the 5000ms sleep" 0 -- "${T[@]}" cancel "$SLEEP_ID"

# --- crash -----------------------------------------------------------------------------

check "test.crash" 1 -- "${T[@]}" submit test.crash --wait
expect_contains "state: failed" stdout
expect_contains "SIGSEGV" stdout
expect_contains "worker-crashed" stdout

check "math.primes after a crash" 0 -- "${T[@]}" submit math.primes --json '{"below": 100000}' --wait
expect_contains "9592" stdout
expect_contains "state: succeeded" stdout

# --- cancel ----------------------------------------------------------------------------

check "submit sys.sleep 30000ms" 0 -- "${T[@]}" submit sys.sleep --json '{"ms": 30000}'
CANCEL_ID=$OUT
check "status of a running task exits 0" 0 -- "${T[@]}" status "$CANCEL_ID"
check "cancel ID" 0 -- "${T[@]}" cancel "$CANCEL_ID"
expect_line "^$CANCEL_ID +sys\.sleep +cancelled " stdout
check "cancel of a task cancelled before exits 0" 0 -- "${T[@]}" cancel "$CANCEL_ID"
check "status after cancel exits 1 (did not succeed)" 1 -- "${T[@]}" status "$CANCEL_ID"
expect_line "^$CANCEL_ID +sys\.sleep +cancelled " stdout
check "status of a succeeded and a cancelled task exits 1" 1 -- "${T[@]}" status "$ID" "$CANCEL_ID"
check "explain of a cancelled task exits 1" 1 -- "${T[@]}" explain "$CANCEL_ID"
expect_contains "task $CANCEL_ID (sys.sleep): cancelled" stdout
check "cancel of a task that already succeeded exits 1" 1 -- "${T[@]}" cancel "$ID"
expect_line "^$ID +math\.primes +succeeded " stdout
check "wait on a cancelled task" 1 -- "${T[@]}" wait "$CANCEL_ID"
expect_contains "cancelled" stdout

# --- list, stats, handlers, watch ------------------------------------------------------

check "list" 0 -- "${T[@]}" list
expect_line "^ID +HANDLER +STATE +EXECUTOR +CLASS +REASON +RUN TIME +AGE$" stdout
expect_line "^$ID +math\.primes +succeeded .* [0-9.]+ (ms|s) +[0-9.]+ (ms|s)$" stdout
expect_contains "$ID" stdout
expect_contains "$CANCEL_ID" stdout
expect_contains "test.crash" stdout

check "list --handler of no such handler is an error" 2 -- "${T[@]}" list --handler nosuch
expect_contains "no handler named 'nosuch'" stderr

check "submit with labels" 0 -- "${T[@]}" submit sys.noop --label team=infra --label run=7 --wait -o json
LABELLED_ID=$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
check "list --label" 0 -- "${T[@]}" list --label team=infra
expect_contains "$LABELLED_ID" stdout
expect_not_contains "$ID" stdout
check "list --label, two that must both match" 0 -- "${T[@]}" list --label team=infra --label run=8
expect_not_contains "$LABELLED_ID" stdout
check "list --label without =" 2 -- "${T[@]}" list --label team
expect_contains "--label" stderr

# Colour: states in colour on a terminal unless NO_COLOR; --color always|never decides.
check "list --color always" 0 -- "${T[@]}" --color always list --state succeeded
expect_contains $'\033[32msucceeded\033[0m' stdout
expect_line "^ID +HANDLER +STATE +EXECUTOR" stdout  # columns still line up (escapes not counted)
check "list off a terminal" 0 -- "${T[@]}" list --state succeeded
expect_not_contains $'\033[' stdout
LIST_CMD=$(printf '%q ' "${T[@]}" list --state succeeded)
check "list on a terminal" 0 -- script -qec "$LIST_CMD" /dev/null
expect_contains $'\033[32msucceeded' stdout
check "list on a terminal with NO_COLOR" 0 -- env NO_COLOR=1 script -qec "$LIST_CMD" /dev/null
expect_not_contains $'\033[32m' stdout
check "--color nonsense" 2 -- "${T[@]}" --color nonsense list

check "list --state cancelled" 0 -- "${T[@]}" list --state cancelled
expect_contains "$CANCEL_ID" stdout
expect_not_contains "succeeded" stdout

check "-o json stats" 0 -- "${T[@]}" -o json stats
expect_json
WORKER_PIDS=$(printf '%s' "$OUT" |
  python3 -c 'import json,sys; print(" ".join(str(w["pid"]) for w in json.load(sys.stdin)["workers"] if w["pid"] > 0))' ||
  true)

for i in 1 2 3; do "${T[@]}" submit sys.noop --wait >/dev/null 2>&1 || true; done
check "stats" 0 -- "${T[@]}" stats
expect_contains "daemon pid $DAEMON_PID" stdout
expect_line "^POOL +WORKERS +QUEUED +RUNNING +COMPLETED +RESPAWNS +RECYCLED$" stdout
expect_line "^cpu +2 +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+$" stdout
# sys.noop runs are far under 1 ms: learned from, but never a cpu/wall sample.
expect_line "^sys\.noop +- +[0-9.]+ +0 +undecided$" stdout
expect_contains "Every finished run of every handler is learned from" stdout
expect_line "^io +1 " stdout
# Workers being restarted (after the crash and the timeout above) have no pid yet.
if [[ -n $WORKER_PIDS ]]; then pass; else fail "-o json stats lists no worker pids"; fi
for pid in $WORKER_PIDS; do
  expect_line "^(cpu|io|python-cpu|python-io) +[0-9]+ +$pid " stdout
done
# The task-count table uses the CLI's state names, in the CLI's order.
expect_line "^succeeded +[0-9]+$" stdout
expect_line "^cancelled +[0-9]+$" stdout

check "handlers" 0 -- "${T[@]}" handlers
for h in sys.exec sys.sleep math.primes test.crash test.hang; do
  expect_line "^$h " stdout
done

# The sleep must outlast the start of `watch` (slow under sanitizers on a loaded machine).
check "submit a task for watch to see" 0 -- "${T[@]}" submit sys.sleep --json '{"ms": 2000}'
WATCH_ID=$OUT
check "submit a command for watch to see" 0 -- "${T[@]}" exec -- sh -c 'sleep 1; exit 3'
WATCH_EXEC_ID=$OUT
check "watch --timeout" 0 -- "${T[@]}" watch --timeout 5s
expect_line "^TIME +ID +HANDLER +STATE" stdout
expect_line "$WATCH_ID +sys\.sleep +succeeded" stdout
expect_line "$WATCH_EXEC_ID +sys\.exec +exit 3 " stdout  # a command shows its exit code

check "watch --timeout 1s" 0 -- "${T[@]}" watch --timeout 1s

# --- trace -----------------------------------------------------------------------------

check "trace to a file" 0 -- "${T[@]}" trace --since 10m -f "$DIR/trace.json"
check "the trace is a Chrome trace of the runs" 0 -- /usr/bin/python3 -c '
import json, sys
trace = json.load(open(sys.argv[1]))
runs = [e for e in trace["traceEvents"] if e["ph"] == "X"]
names = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"}
threads = {(e["pid"], e["tid"]) for e in trace["traceEvents"] if e["name"] == "thread_name"}
assert runs and all(e["dur"] >= 0 and e["ts"] >= 0 and (e["pid"], e["tid"]) in threads for e in runs)
assert "cpu pool" in names and "io pool" in names, names
ids = {e["args"]["id"] for e in runs}
assert sys.argv[2] in ids and sys.argv[3] in ids, (sys.argv[2:], len(ids))
exec_run = next(e for e in runs if e["args"]["id"] == sys.argv[3])
assert exec_run["args"]["exit_code"] == 3, exec_run
assert any(e.get("cname") == "terrible" for e in runs)  # something failed by now
print(len(runs))
' "$DIR/trace.json" "$WATCH_ID" "$WATCH_EXEC_ID"
check "trace --since nonsense" 2 -- "${T[@]}" trace --since nonsense
expect_contains "invalid duration" stderr

# --- single instance -------------------------------------------------------------------

check "a second daemon on the same socket" "!0" -- \
  "$TASKRTD" --socket "$SOCK" --plugin "$PLUGIN" --cpu-workers 1 --quiet
expect_contains "already serving" stderr
expect_contains "$DAEMON_PID" stderr

check "the first daemon still serves" 0 -- "${T[@]}" submit sys.noop --wait
expect_contains "state: succeeded" stdout

# --- watch across a daemon restart ----------------------------------------------------

"${T[@]}" watch --timeout 12s >"$DIR/watch.out" 2>"$DIR/watch.err" &
WATCH_PID=$!
sleep 2  # connected for over a second: a watch whose daemon never answered gives up
stop_pid "$DAEMON_PID" "$STOP_TENTHS" "cli_test: taskrtd"
DAEMON_PID=""
start_daemon
# It ends 3 s later: the watch, retrying every second at most, is back by then.
check "submit after the restart" 0 -- "${T[@]}" submit sys.sleep --json '{"ms": 3000}'
AFTER_ID=$OUT
for ((i = 0; i < 200; i++)); do
  kill -0 "$WATCH_PID" 2>/dev/null || break
  sleep 0.1
done
CODE=0
kill -0 "$WATCH_PID" 2>/dev/null && { kill -KILL "$WATCH_PID"; echo "watch outlived its timeout" >&2; }
wait "$WATCH_PID" || CODE=$?
OUT=$(cat "$DIR/watch.out")
ERR=$(cat "$DIR/watch.err")
expect_equals 0 "$CODE" "exit code of a watch that reconnected"
expect_contains "reconnecting" stderr
expect_line "$AFTER_ID +sys\.sleep +succeeded" stdout

# --- summary ---------------------------------------------------------------------------

echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
