#!/usr/bin/env bash
# Checks deploy/taskrtd.service with systemd-analyze verify, with its binary paths
# pointed at this build (verify fails on a missing ExecStart binary). Any warning fails.
set -euo pipefail
unit_src="$1"; bin_dir="$2"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
sed -e "s|/usr/bin/taskrtd|$bin_dir/taskrtd|" \
    -e "s|/usr/libexec/taskrt/taskrt-worker|$bin_dir/taskrt-worker|" "$unit_src" > "$tmp/taskrtd.service"
if ! command -v systemd-analyze >/dev/null; then echo "systemd-analyze missing: run scripts/setup.sh"; exit 1; fi
out="$(systemd-analyze verify "$tmp/taskrtd.service" 2>&1)" || { echo "$out"; exit 1; }
if [ -n "$out" ]; then echo "unexpected output from systemd-analyze verify:"; echo "$out"; exit 1; fi
echo "1 passed, 0 failed"
