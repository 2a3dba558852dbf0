#!/usr/bin/env bash
# Cross-build weft for AArch64 (release, -Werror) and run the core tests under qemu-user,
# printing ctest's normal output (scripts/test.sh counts its per-test lines).
#
#   WEFT_AARCH64_BUILD_DIR  build directory (default build/aarch64)
#   WEFT_AARCH64_TESTS      ctest -R regex of the tests to run (default ^core/)
#
# Needs gcc-aarch64-linux-gnu, qemu-user and libcmocka-dev:arm64 (Debian multiarch); run
# scripts/install-deps.sh first. See docs/internals/aarch64.md.
set -uo pipefail
cd "$(dirname "$0")/.."

dir=${WEFT_AARCH64_BUILD_DIR:-build/aarch64}
tests=${WEFT_AARCH64_TESTS:-^core/}
jobs=$(nproc)

for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
  if ! command -v "$tool" >/dev/null; then
    echo "test-aarch64.sh: $tool missing; run scripts/install-deps.sh" >&2
    exit 1
  fi
done
# Only the arm64 .pc files: an x86-64 cmocka.pc would link the wrong library.
export PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
if ! pkg-config --exists cmocka; then
  echo "test-aarch64.sh: cmocka for arm64 missing (libcmocka-dev:arm64); run" \
    "scripts/install-deps.sh" >&2
  exit 1
fi

if ! cmake -S . -B "$dir" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake \
  -DCMAKE_BUILD_TYPE=Release -DWEFT_WERROR=ON -DWEFT_BUILD_BENCH=OFF \
  -DWEFT_BUILD_EXAMPLES=OFF -DWEFT_NET=OFF >&2; then
  echo "test-aarch64.sh: configure failed" >&2
  exit 1
fi
if ! cmake --build "$dir" -j "$jobs" >&2; then
  echo "test-aarch64.sh: build failed" >&2
  exit 1
fi

# Per-test timeouts are already scaled for emulation (tests/CMakeLists.txt); the outer
# timeout only guards against a wedged emulator.
cd "$dir" && timeout 1800 ctest -R "$tests" --output-on-failure -j "$jobs"
