# Sourced by the shell tests: stops a process the test started, by its pid.
#
# stop_pid PID TENTHS NAME: SIGTERM, then up to TENTHS tenths of a second for it to
# exit, then SIGKILL (saying so on stderr, naming NAME), and reaps it. Returns 0; a pid
# that is already gone is fine.
stop_pid() {
  local pid=$1 tenths=$2 name=${3:-process} i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < tenths; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name (pid $pid) ignored SIGTERM for $((tenths / 10)) s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  return 0
}
