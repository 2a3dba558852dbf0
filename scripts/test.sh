#!/usr/bin/env bash
# Install what the tests need, then build and run every test in release, asan (ASan +
# UBSan) and tsan modes, and the core tests on AArch64 under qemu. Ends with one line:
#   "tests: N passed, N failed"
# WEFT_TEST_MODES overrides the mode list (e.g. "release").
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh || { echo "test.sh: installing dependencies failed" >&2; exit 1; }

bash scripts/check-format.sh || exit 1

modes=${WEFT_TEST_MODES:-"release asan tsan"}
passed=0
failed=0
failed_names=()
jobs=$(nproc)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

# The PostgreSQL server the database tests use (tests/db, the apps' PostgreSQL stores):
# a private one from scripts/pg-start.sh, stopped and removed at exit, unless
# WEFT_TEST_PG_URL already names one. WEFT_TEST_PG_REQUIRED makes those tests fail rather
# than skip without it, and a server that will not start is a failure of its own.
export WEFT_TEST_PG_REQUIRED=1
if [[ -z "${WEFT_TEST_PG_URL:-}" ]]; then
  trap 'bash scripts/pg-stop.sh' EXIT
  if pg_url=$(bash scripts/pg-start.sh); then
    export WEFT_TEST_PG_URL=$pg_url
    echo "=== postgres: $WEFT_TEST_PG_URL" >&2
  else
    echo "=== postgres: START FAILED (the database tests will fail)" >&2
    failed=$((failed + 1))
    failed_names+=("postgres: start")
  fi
fi

count_ctest() { # $1 mode, $2 log
  local p f
  p=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* +Passed' "$2")
  f=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*(\*\*\*|Failed|Timeout|Not Run)' "$2")
  passed=$((passed + p))
  failed=$((failed + f))
  if ((f > 0)); then
    failed_names+=("$1: $(grep -E '^ *[0-9]+/[0-9]+ Test +#' "$2" | grep -vE ' Passed' | sed -E 's/.*Test +#[0-9]+: ([^ ]+).*/\1/' | tr '\n' ' ')")
  fi
}

for mode in $modes; do
  echo "=== $mode: build" >&2
  if ! dir=$(bash scripts/build.sh "$mode"); then
    echo "=== $mode: BUILD FAILED" >&2
    failed=$((failed + 1))
    failed_names+=("$mode: build")
    continue
  fi
  echo "=== $mode: test" >&2
  log=$(mktemp)
  (cd "$dir" && ctest --output-on-failure -j "$jobs" 2>&1) | tee "$log" >&2
  count_ctest "$mode" "$log"
  rm -f "$log"
done

# An extra suite run by its own script; it fails when the script fails or ran no test.
run_suite() { # name title script
  echo "=== $2" >&2
  local log rc
  log=$(mktemp)
  bash "$3" 2>&1 | tee "$log" >&2
  rc=${PIPESTATUS[0]}
  count_ctest "$1" "$log"
  if ((rc != 0)) || ! grep -qE 'Test +#[0-9]+: .* +Passed' "$log"; then
    failed=$((failed + 1))
    failed_names+=("$1: build or run")
  fi
  rm -f "$log"
}

if [[ " $modes " == *" release "* ]]; then
  run_suite install "install: pkg-config, find_package, symbol prefix" scripts/test-install.sh
  if [[ "${WEFT_SKIP_AARCH64:-0}" != 1 && -x scripts/test-aarch64.sh ]]; then
    run_suite aarch64 "aarch64 (qemu): build and test" scripts/test-aarch64.sh
  fi
  if [[ "${WEFT_SKIP_PORTABLE:-0}" != 1 && -x scripts/test-portable.sh ]]; then
    run_suite portable "portable switch (ucontext): build and test" scripts/test-portable.sh
  fi
  if [[ "${WEFT_SKIP_FUZZ:-0}" != 1 && -f scripts/test-fuzz.sh ]]; then
    run_suite fuzz "fuzz (libFuzzer, fixed runs): HTTP request and response parsing" \
      scripts/test-fuzz.sh
  fi
fi

if ((failed > 0)); then
  echo "failed: ${failed_names[*]}" >&2
fi
echo "tests: $passed passed, $failed failed"
((failed == 0))
