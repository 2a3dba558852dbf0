#!/usr/bin/env bash
# Build weft in one mode: scripts/build.sh [release|debug|asan|tsan] [extra cmake args...]
# into build/<mode>. Prints the build directory on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-release}
shift || true
case "$mode" in
  release) type=Release ;;
  debug) type=Debug ;;
  asan) type=asan ;;
  tsan) type=tsan ;;
  *) echo "build.sh: unknown mode $mode (release, debug, asan, tsan)" >&2; exit 2 ;;
esac
dir=build/$mode
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" -DWEFT_WERROR=ON "$@" >&2
cmake --build "$dir" -j "$(nproc)" >&2
echo "$dir"
