#!/usr/bin/env bash
# Builds the container image of deploy/Dockerfile from the .deb of ./build (or
# $BUILD_DIR), with buildah (or podman/docker when buildah is absent). It needs the
# base image debian:bookworm-slim from a registry; where no builder or registry is
# reachable it says so and exits 0 without an image (it is not part of the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
rm -rf deploy/dist
(cd "$BUILD_DIR" && cpack -G DEB -B "$PWD/../deploy/dist" >/dev/null)
ls deploy/dist/taskrt_*.deb
if command -v buildah >/dev/null; then
  # shellcheck disable=SC2206
  builder=(buildah ${BUILDAH_OPTS:-} bud --isolation chroot)
elif command -v podman >/dev/null; then
  builder=(podman build)
elif command -v docker >/dev/null; then
  builder=(docker build)
else
  echo "container: no buildah, podman or docker: the .deb is in deploy/dist; build the image elsewhere" >&2
  exit 0
fi
# CONTAINER_BUILD_ARGS: more options for the builder, e.g. "--pull=never" with a local
# base image, or "--storage-driver vfs" (buildah's global options go in BUILDAH_OPTS).
# shellcheck disable=SC2086
if ! "${builder[@]}" ${CONTAINER_BUILD_ARGS:-} -t taskrt:latest -f deploy/Dockerfile deploy; then
  echo "container: the image build failed (is debian:bookworm-slim reachable from here?)" >&2
  exit 1
fi
echo "container: built taskrt:latest"
