#!/usr/bin/env bash
# Install the Debian 12 packages weft needs to build, test and benchmark. Idempotent:
# installs only what is missing, and runs apt-get update only when it must install.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config   # toolchain
  clang-format                                   # code format check
  libcmocka-dev                                  # test framework
  libhttp-parser-dev libssl-dev zlib1g-dev libjansson-dev  # net layer: HTTP, TLS, gzip, JSON
  openssl                                        # test certificates
  libgumbo-dev                                   # weft-crawl: HTML5 parser for links
  libsqlite3-dev                                 # paymentd: SQLite store, and its tests
  libpq-dev postgresql                           # libweft_pg; the test server (scripts/pg-start.sh)
  librdkafka-dev                                 # weft-etl: Kafka consumer group (and mock cluster)
  clang libclang-rt-14-dev                       # libFuzzer targets (scripts/test-fuzz.sh)
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user  # AArch64 cross build + emulation
  libcmocka-dev:arm64                            # its test framework (Debian multiarch)
  libunwind-dev libdw-dev                        # coroutine backtraces (optional)
  chromium fonts-dejavu-core                     # dashboard test: headless browser (large)
  curl jq sqlite3                                # the tour (scripts/tour.sh) and its test apps/tour
  doxygen                                        # API reference (scripts/docs.sh)
)
if [[ "${WEFT_BENCH_DEPS:-0}" == 1 ]]; then
  PACKAGES+=(golang-go wrk nginx-light)          # the Go peers, the HTTP load tool, nginx
  PACKAGES+=(time curl)                          # peak memory and probes (scripts/bench-crawl.sh)
  PACKAGES+=(sqlite3 python3)                    # scripts/bench-etl.sh: row checks, event generator
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# arm64 packages come from Debian multiarch: enable the architecture once, before the
# update that fetches its package lists. It adds arm64 libraries beside the amd64 ones
# (libc6:arm64 and the like under /usr/lib/aarch64-linux-gnu) and changes none of them.
if [[ " ${missing[*]} " == *":arm64 "* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
fi
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
