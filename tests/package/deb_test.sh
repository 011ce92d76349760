#!/usr/bin/env bash
# The Debian package (cmake/package.cmake): `cpack -G DEB` in BUILD_DIR makes it;
# lintian reports no error and no warning; it holds the binaries, the unit, the
# sysusers.d file, completions, man pages, copyright and changelog, and computed
# dependencies; extracted into a throwaway root, its taskrtd runs a task given by its
# taskrt. Every daemon it starts is stopped by pid.
# Usage: deb_test.sh BUILD_DIR
set -uo pipefail
build_dir=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../testing/stop_pid.sh"
FAILED=0
PASSED=0
pass() { PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $1" >&2; [[ -n ${2:-} && -f $2 ]] && sed 's/^/  | /' "$2" >&2; FAILED=$((FAILED + 1)); }

tmp=$(mktemp -d /tmp/taskrt-deb.XXXXXX)
DAEMON_PID=""
cleanup() { stop_pid "$DAEMON_PID" 100 taskrtd; rm -rf "$tmp"; }
trap cleanup EXIT

if ! (cd "$build_dir" && cpack -G DEB -B "$tmp/out" >"$tmp/cpack.log" 2>&1); then
  fail "cpack -G DEB" "$tmp/cpack.log"
  exit 1
fi
deb=$(ls "$tmp"/out/taskrt_*.deb 2>/dev/null | head -1)
[[ -f $deb ]] || { fail "no taskrt_*.deb in $tmp/out" "$tmp/cpack.log"; exit 1; }
echo "package: $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"

# lintian: nothing at error or warning level (info and pedantic are shown, not fatal).
if lintian --fail-on error,warning --no-tag-display-limit "$deb" >"$tmp/lintian.log" 2>&1; then
  pass
else
  fail "lintian found errors or warnings" "$tmp/lintian.log"
fi
grep -E "^[EW]: " "$tmp/lintian.log" >&2 || true

dpkg-deb -f "$deb" Package Version Depends >"$tmp/control"
grep -q "^Depends: .*libgrpc++" "$tmp/control" && pass || fail "Depends lacks gRPC (computed by dpkg-shlibdeps)" "$tmp/control"
grep -q "^Depends: .*libcpp-httplib" "$tmp/control" && pass || fail "Depends lacks cpp-httplib" "$tmp/control"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$tmp/files"
for f in /usr/bin/taskrtd /usr/bin/taskrt /usr/libexec/taskrt/taskrt-worker \
  /lib/systemd/system/taskrtd.service /usr/lib/sysusers.d/taskrt.conf \
  /usr/share/bash-completion/completions/taskrt /usr/share/zsh/vendor-completions/_taskrt \
  /usr/share/man/man1/taskrt.1.gz /usr/share/man/man1/taskrtd.1.gz \
  /usr/share/doc/taskrt/copyright /usr/share/doc/taskrt/changelog.Debian.gz; do
  grep -qxF "$f" "$tmp/files" && pass || fail "the package lacks $f" "$tmp/files"
done
for f in client.h libtaskrt_client worker.proto taskrt-bench; do
  grep -q "$f" "$tmp/files" && fail "the package holds $f (the SDK and the bench are not in it)" || pass
done
dpkg-deb -e "$deb" "$tmp/control.d"
[[ -x $tmp/control.d/postinst ]] && pass || fail "no postinst (it creates the user taskrt)"

# Installed into a throwaway root: the daemon finds its worker and runs a task.
root=$tmp/root
dpkg-deb -x "$deb" "$root"
grep -q "^ExecStart=/usr/bin/taskrtd .*--worker-path /usr/libexec/taskrt/taskrt-worker" \
  "$root/lib/systemd/system/taskrtd.service" && pass || fail "the unit's paths" "$root/lib/systemd/system/taskrtd.service"
sock=$tmp/run/taskrt.sock
"$root/usr/bin/taskrtd" --socket "$sock" --cpu-workers 1 --quiet >"$tmp/daemon.log" 2>&1 &
DAEMON_PID=$!
for ((i = 0; i < 100; i++)); do [[ -S $sock ]] && break; sleep 0.1; done
if out=$("$root/usr/bin/taskrt" --socket "$sock" submit math.primes --json '{"below": 1000}' --wait 2>&1) &&
  grep -q "state: succeeded" <<<"$out" && grep -q "worker pid" <<<"$out"; then
  pass
else
  echo "$out" >"$tmp/out.log"
  fail "the packaged taskrtd and taskrt ran no task" "$tmp/daemon.log"
  sed 's/^/  | /' "$tmp/out.log" >&2
fi
"$root/usr/bin/taskrtd" --version | grep -q "^taskrtd 0" && pass || fail "taskrtd --version"
zcat "$root/usr/share/man/man1/taskrt.1.gz" | grep -q "^\.SH" && pass || fail "taskrt.1 is no man page"

echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
