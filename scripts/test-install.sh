#!/usr/bin/env bash
# Install weft into a temporary prefix and build a small program against it twice: with
# pkg-config (weft.pc) and with CMake's find_package(weft). Prints ctest-style lines.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake -S . -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWEFT_BUILD_TESTS=OFF \
  -DWEFT_BUILD_BENCH=OFF -DWEFT_BUILD_EXAMPLES=OFF -DCMAKE_INSTALL_PREFIX="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
cmake --install "$work/build" >/dev/null

mkdir -p "$work/app"
cat > "$work/app/app.c" <<'C'
#include <weft/weft.h>
static weft_wg wg = WEFT_WG_INIT;
static void child(void *arg) { weft_sleep(1000000); *(int *)arg = 42; weft_wg_done(&wg); }
static int app(void *arg) {
  weft_wg_add(&wg, 1);
  weft_go(child, arg);
  weft_wg_wait(&wg);
  return 0;
}
int main(void) { int v = 0; return weft_main(app, &v) == 0 && v == 42 ? 0 : 1; }
C
cat > "$work/app/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(app C)
find_package(weft REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE weft::weft)
CM


status=0
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig:$work/prefix/lib/x86_64-linux-gnu/pkgconfig"
# shellcheck disable=SC2046
if gcc -o "$work/app/app-pc" "$work/app/app.c" $(pkg-config --cflags --libs weft) \
  -Wl,-rpath,"$(pkg-config --variable=libdir weft)" && "$work/app/app-pc"; then
  echo "1/3 Test #1: install/pkg-config ................   Passed"
else
  echo "1/3 Test #1: install/pkg-config ................***Failed"
  status=1
fi
if cmake -S "$work/app" -B "$work/app/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null &&
  cmake --build "$work/app/build" >/dev/null && "$work/app/build/app"; then
  echo "2/3 Test #2: install/find_package ..............   Passed"
else
  echo "2/3 Test #2: install/find_package ..............***Failed"
  status=1
fi
# Every global symbol the libraries define carries weft's prefix (no clash with a
# program's own names when it links the static library).
stray=$(nm -g --defined-only "$work/prefix/lib"*/libweft.a "$work/prefix/lib"/*/libweft.a 2>/dev/null |
  awk 'NF == 3 && $2 ~ /[TDBRVW]/ {print $3}' | grep -v '^weft' | sort -u || true)
if [[ -z "$stray" ]]; then
  echo "3/3 Test #3: install/symbol_prefix ............   Passed"
else
  echo "3/3 Test #3: install/symbol_prefix ............***Failed" "$stray"
  status=1
fi
exit $status
