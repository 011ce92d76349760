#!/usr/bin/env bash
# deploy/kubernetes, offline: tests/deploy/kubernetes/validate.mjs checks every manifest
# against the Kubernetes schemas of the npm package kubernetes-models and this
# deployment's own rules, and taskrtd's flags against `taskrtd --help`. The packages
# of package-lock.json are installed with `npm ci` into BUILD_DIR/kubernetes-validate
# (again only when the lock file changes), never into the source tree.
# Usage: kubernetes_test.sh BUILD_DIR [TASKRTD]   (TASKRTD: default BUILD_DIR/bin/taskrtd)
# Exit 77 (CTest's SKIP_RETURN_CODE) when node or npm is not installed.
set -euo pipefail
if [[ $# -lt 1 || ! -d $1 ]]; then
  echo "usage: kubernetes_test.sh BUILD_DIR [TASKRTD] (BUILD_DIR must exist)" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
taskrtd=${2:-$build/bin/taskrtd}
here=$(cd "$(dirname "$0")" && pwd)
src=$here/kubernetes
for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIPPED: $tool is not installed (Debian's nodejs and npm; scripts/setup.sh)"
    exit 77
  fi
done
cache=$build/kubernetes-validate
mkdir -p "$cache"
if [[ ! -d $cache/node_modules ]] || ! cmp -s "$src/package-lock.json" "$cache/package-lock.json"; then
  cp "$src/package.json" "$src/package-lock.json" "$cache/"
  if ! (cd "$cache" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error); then
    rm -f "$cache/package-lock.json"  # so that the next run tries again
    echo "FAIL: npm ci in $cache failed: it needs the npm registry, or npm's cache holding" \
         "the packages of $src/package-lock.json" >&2
    exit 1
  fi
fi
# Node resolves the script's imports from the script's own directory: run a copy that
# sits beside node_modules.
cp "$src/validate.mjs" "$cache/"
exec node "$cache/validate.mjs" --dir "$here/../../deploy/kubernetes" --taskrtd "$taskrtd"
