#!/usr/bin/env bash
# Puts Debian's promtool at DIR/promtool (default build/tools) for the /metrics test
# (tests/security/test_http.py runs `promtool check metrics`). promtool ships only in
# the `prometheus` package, and installing that starts a Prometheus server on :9090;
# so the package is downloaded (apt-get download) and only its promtool extracted.
# Uses a promtool already on PATH when there is one. Safe to run again.
set -euo pipefail
dir="${1:-build/tools}"
mkdir -p "$dir"
if [ -x "$dir/promtool" ]; then exit 0; fi
if command -v promtool >/dev/null; then
  ln -sf "$(command -v promtool)" "$dir/promtool"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt's download user (_apt) writes here
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! (cd "$work" && apt-get download -qq prometheus 2>/dev/null); then
  $SUDO apt-get update -qq
  (cd "$work" && apt-get download -qq prometheus)
fi
dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$work" ./usr/bin/promtool
mv "$work/usr/bin/promtool" "$dir/promtool"
echo "promtool: $("$dir/promtool" --version 2>&1 | head -1) at $dir/promtool"
