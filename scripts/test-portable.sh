#!/usr/bin/env bash
# Build weft for this machine with the portable context switch (ucontext, the fallback for
# architectures without an assembly back end; release, -Werror) and run the core tests,
# printing ctest's normal output (scripts/test.sh counts its per-test lines).
#
#   WEFT_PORTABLE_BUILD_DIR  build directory (default build/portable)
#   WEFT_PORTABLE_TESTS      ctest -R regex of the tests to run (default ^core/)
set -uo pipefail
cd "$(dirname "$0")/.."

dir=${WEFT_PORTABLE_BUILD_DIR:-build/portable}
tests=${WEFT_PORTABLE_TESTS:-^core/}
jobs=$(nproc)

if ! cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWEFT_WERROR=ON \
  -DWEFT_PORTABLE_SWITCH=ON -DWEFT_BUILD_BENCH=OFF -DWEFT_BUILD_EXAMPLES=OFF >&2; then
  echo "test-portable.sh: configure failed" >&2
  exit 1
fi
if ! cmake --build "$dir" -j "$jobs" >&2; then
  echo "test-portable.sh: build failed" >&2
  exit 1
fi
cd "$dir" && ctest -R "$tests" --output-on-failure -j "$jobs"
