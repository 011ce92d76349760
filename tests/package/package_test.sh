#!/usr/bin/env bash
# Installs this build into a temporary prefix and builds a consumer against it, once
# with find_package(taskrt) and once with pkg-config.
set -euo pipefail
build_dir="$1"; src_dir="$2"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
cmake --install "$build_dir" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src_dir" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" -j2 >/dev/null
out="$("$tmp/consumer/consumer")"
[ "$out" = "cpu" ] || { echo "cmake consumer printed '$out'"; exit 1; }
PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" g++ -std=c++20 "$src_dir/consumer.cc" \
  -o "$tmp/consumer-pc" $(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --cflags --libs taskrt)
out="$("$tmp/consumer-pc")"
[ "$out" = "cpu" ] || { echo "pkg-config consumer printed '$out'"; exit 1; }
echo "2 passed, 0 failed"
