#!/usr/bin/env bash
# Installs this build into a temporary prefix and checks the installed tree:
#  - it holds the public surface only (no worker.proto, worker.pb.h, libtaskrt_common);
#  - applications build against the SDK with find_package(taskrt) (taskrt::client,
#    shared by default or static with TASKRT_CLIENT_STATIC; taskrt::client_shared,
#    taskrt::client_static) and with pkg-config (taskrt, taskrt-static);
#  - examples/plugin builds against it with find_package (taskrt::plugin) and with
#    pkg-config (taskrt-plugin);
#  - the installed taskrtd starts (finding its worker in libexec/taskrt/) on a
#    temporary socket, loads those plugins and runs their tasks for the installed CLI
#    and for the consumer applications.
# Every daemon started here is stopped by its pid. Ends with "N passed, M failed".
#
# Usage: package_test.sh BUILD_DIR TESTS_PACKAGE_DIR
set -euo pipefail
build_dir="$1"
src_dir="$(cd "$2" && pwd)"
plugin_src="$src_dir/../../examples/plugin"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/taskrt-package.XXXXXX")"
prefix="$tmp/prefix"
daemon_pid=""
passed=0
failed=0
READY_TENTHS=200  # how long the daemon may take to serve, in tenths of a second
STOP_TENTHS=100   # how long it may take to exit after SIGTERM

source "$(dirname "${BASH_SOURCE[0]}")/../testing/stop_pid.sh"
stop_daemon() {
  stop_pid "$daemon_pid" "$STOP_TENTHS" taskrtd
  daemon_pid=""
}
cleanup() {
  local rc=$?
  set +e
  stop_daemon
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

pass() { passed=$((passed + 1)); }
fail() {
  failed=$((failed + 1))
  echo "FAIL: $1"
  if [[ -n ${2:-} && -f $2 ]]; then sed 's/^/  | /' "$2"; fi
  return 0
}
# expect_output NAME EXPECTED CMD...: CMD exits 0 within 60 s and prints EXPECTED.
expect_output() {
  local name=$1 expected=$2
  shift 2
  local rc=0
  timeout -k 5 60 "$@" >"$tmp/out" 2>"$tmp/err" </dev/null || rc=$?
  if [[ $rc -eq 0 && $(<"$tmp/out") == "$expected" ]]; then
    pass
  else
    fail "$name: exit $rc, printed '$(<"$tmp/out")', expected '$expected'" "$tmp/err"
  fi
}
# needs_lib NAME BINARY yes|no: whether BINARY has libtaskrt_client.so.0 as DT_NEEDED.
needs_lib() {
  local name=$1 binary=$2 want=$3 has=no
  readelf -d "$binary" | grep 'NEEDED.*\[libtaskrt_client\.so\.0\]' >/dev/null && has=yes
  if [[ $has == "$want" ]]; then pass; else fail "$name: needs libtaskrt_client.so.0: $has"; fi
}

cmake --install "$build_dir" --prefix "$prefix" >"$tmp/install.log"
libdir="$prefix/lib"
export PKG_CONFIG_PATH="$libdir/pkgconfig"

# --- the installed files: public surface only ------------------------------------------
(cd "$prefix" && find . -type f -o -type l | sort) >"$tmp/files"
for internal in worker.proto worker.pb.h libtaskrt_common; do
  if grep -q "$internal" "$tmp/files"; then
    fail "the installed tree holds $internal (internal)" "$tmp/files"
  else
    pass
  fi
done
for public in ./bin/taskrtd ./bin/taskrt ./libexec/taskrt/taskrt-worker \
  ./include/taskrt/client.h ./include/taskrt/handler.h ./include/taskrt/v1/task.pb.h \
  ./include/taskrt/v1/service.pb.h ./lib/libtaskrt_client.a ./lib/libtaskrt_client.so \
  ./lib/libtaskrt_client.so.0 ./lib/pkgconfig/taskrt.pc ./lib/pkgconfig/taskrt-static.pc \
  ./lib/pkgconfig/taskrt-plugin.pc ./lib/cmake/taskrt/taskrtConfig.cmake \
  ./share/bash-completion/completions/taskrt ./share/zsh/vendor-completions/_taskrt; do
  if grep -qxF "$public" "$tmp/files"; then pass; else fail "the installed tree lacks $public"; fi
done
# The service: the unit with its binaries' paths under this prefix, the sysusers.d file.
unit="$prefix/lib/systemd/system/taskrtd.service"
if grep -q "^ExecStart=$prefix/bin/taskrtd .*--worker-path $prefix/libexec/taskrt/taskrt-worker" \
  "$unit" 2>/dev/null; then
  pass
else
  fail "the installed tree lacks lib/systemd/system/taskrtd.service naming $prefix/bin/taskrtd" \
    "$tmp/files"
fi
if grep -qxF ./lib/sysusers.d/taskrt.conf "$tmp/files"; then pass; else
  fail "the installed tree lacks lib/sysusers.d/taskrt.conf" "$tmp/files"
fi
if [[ $(readlink "$libdir/libtaskrt_client.so.0") == libtaskrt_client.so.*.*.* ]]; then
  pass
else
  fail "libtaskrt_client.so.0 is not a link to the versioned library"
fi

# --- applications: find_package and pkg-config, shared and static -----------------------
cmake -S "$src_dir" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/cmake.log"
cmake --build "$tmp/consumer" -j1 >>"$tmp/cmake.log"
cmake -S "$src_dir" -B "$tmp/consumer-st" -DCMAKE_PREFIX_PATH="$prefix" \
  -DTASKRT_CLIENT_STATIC=ON >>"$tmp/cmake.log"
cmake --build "$tmp/consumer-st" -j1 --target consumer >>"$tmp/cmake.log"
needs_lib "taskrt::client (default: shared)" "$tmp/consumer/consumer" yes
needs_lib "taskrt::client_shared" "$tmp/consumer/consumer_shared" yes
needs_lib "taskrt::client_static" "$tmp/consumer/consumer_static" no
needs_lib "taskrt::client with TASKRT_CLIENT_STATIC=ON" "$tmp/consumer-st/consumer" no
for app in consumer/consumer consumer/consumer_shared consumer/consumer_static \
  consumer-st/consumer; do
  expect_output "$app" cpu "$tmp/$app"
done
# shellcheck disable=SC2046  # pkg-config prints several words on purpose
g++ -std=c++20 "$src_dir/consumer.cc" -o "$tmp/consumer-pc" $(pkg-config --cflags --libs taskrt)
needs_lib "pkg-config taskrt" "$tmp/consumer-pc" yes
expect_output "pkg-config taskrt" cpu env LD_LIBRARY_PATH="$libdir" "$tmp/consumer-pc"
# shellcheck disable=SC2046
g++ -std=c++20 "$src_dir/consumer.cc" -o "$tmp/consumer-pc-static" \
  $(pkg-config --cflags --libs taskrt-static)
needs_lib "pkg-config taskrt-static" "$tmp/consumer-pc-static" no
expect_output "pkg-config taskrt-static" cpu "$tmp/consumer-pc-static"

# --- plugins: find_package (taskrt::plugin) and pkg-config (taskrt-plugin) -------------
cmake -S "$plugin_src" -B "$tmp/plugin" -DCMAKE_PREFIX_PATH="$prefix" >>"$tmp/cmake.log"
cmake --build "$tmp/plugin" -j1 >>"$tmp/cmake.log"
cmake_plugin="$tmp/plugin/libtaskrt_example_plugin.so"
[[ -f $cmake_plugin ]] && pass || fail "examples/plugin built no $cmake_plugin" "$tmp/cmake.log"
pc_plugin="$tmp/libexample_pc.so"
# shellcheck disable=SC2046
g++ -shared -fPIC -fvisibility=hidden "$plugin_src/example_plugin.cc" -o "$pc_plugin" \
  $(pkg-config --cflags --libs taskrt-plugin absl_strings)

# --- the installed taskrtd runs tasks ---------------------------------------------------
sock="$tmp/taskrt.sock"
# start_daemon PLUGIN: the installed taskrtd, serving $sock with PLUGIN loaded.
start_daemon() {
  "$prefix/bin/taskrtd" --socket "$sock" --plugin "$1" --cpu-workers 1 --python '' \
    --quiet >"$tmp/taskrtd.log" 2>&1 &
  daemon_pid=$!
  local i
  for ((i = 0; i < READY_TENTHS; i++)); do
    kill -0 "$daemon_pid" 2>/dev/null || break
    if timeout -k 2 5 "$prefix/bin/taskrt" --socket "$sock" handlers >/dev/null 2>&1; then
      pass
      return 0
    fi
    sleep 0.1
  done
  fail "the installed taskrtd did not start serving $sock" "$tmp/taskrtd.log"
  return 1
}
if start_daemon "$cmake_plugin"; then
  timeout -k 5 60 "$prefix/bin/taskrt" --socket "$sock" submit example.delay --json 20 \
    --wait >"$tmp/delay" 2>&1 || true
  grep -qF "after 20 ms" "$tmp/delay" && pass ||
    fail "the installed taskrt did not run example.delay" "$tmp/delay"
  expect_output "consumer (shared SDK) against the installed daemon" olleh \
    "$tmp/consumer/consumer" "$sock"
  expect_output "consumer_static against the installed daemon" olleh \
    "$tmp/consumer/consumer_static" "$sock"
fi
stop_daemon
if start_daemon "$pc_plugin"; then
  expect_output "the pkg-config-built plugin" olleh "$tmp/consumer/consumer_shared" "$sock"
fi
stop_daemon

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
