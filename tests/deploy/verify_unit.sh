#!/usr/bin/env bash
# Checks deploy/taskrtd.service with systemd-analyze verify, with its binary paths
# pointed at this build (verify fails on a missing ExecStart binary; it needs no running
# systemd). Any warning fails. With a sysusers.d file as third argument, also checks
# that systemd-sysusers creates from it the user and group the unit runs as (into a
# temporary root, not this machine's /etc).
# Exit 77 (CTest's SKIP_RETURN_CODE) when systemd-analyze is not installed.
set -euo pipefail
unit_src="$1"; bin_dir="$2"; sysusers="${3:-}"
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIPPED: systemd-analyze is not installed (Debian's systemd package; scripts/setup.sh)"
  exit 77
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
sed -e "s|/usr/bin/taskrtd|$bin_dir/taskrtd|" \
    -e "s|/usr/libexec/taskrt/taskrt-worker|$bin_dir/taskrt-worker|" "$unit_src" > "$tmp/taskrtd.service"
out="$(systemd-analyze verify "$tmp/taskrtd.service" 2>&1)" || { echo "$out"; exit 1; }
if [ -n "$out" ]; then echo "unexpected output from systemd-analyze verify:"; echo "$out"; exit 1; fi
echo "ok: systemd-analyze verify"
if [ -n "$sysusers" ]; then
  user="$(sed -n 's/^User=//p' "$unit_src")"; group="$(sed -n 's/^Group=//p' "$unit_src")"
  if grep -q '^DynamicUser=yes' "$unit_src"; then
    echo "the unit has DynamicUser=yes: its group cannot have members to share the socket"; exit 1
  fi
  mkdir -p "$tmp/root/etc"
  systemd-sysusers --root="$tmp/root" "$(realpath "$sysusers")"
  grep -q "^$user:x:[0-9]*:[0-9]*:[^:]*:/var/lib/taskrt:" "$tmp/root/etc/passwd" ||
    { echo "$sysusers does not create the user $user (home /var/lib/taskrt):"; cat "$tmp/root/etc/passwd"; exit 1; }
  grep -q "^$group:x:" "$tmp/root/etc/group" ||
    { echo "$sysusers does not create the group $group"; exit 1; }
  echo "ok: $sysusers creates $user:$group"
fi
echo "1 passed, 0 failed"
