#!/usr/bin/env bash
# Build the libFuzzer targets (tests/fuzz) with clang and run each one: first over its
# committed corpus and crash regressions, then for a fixed number of new inputs from a
# fixed seed (bounded in time). Prints ctest-style lines; exits non-zero on a crash, a
# failed invariant or a build failure. A crash input is kept in the build directory, to be
# committed under tests/fuzz/regressions/<target>/ once fixed.
#
#   WEFT_FUZZ_BUILD_DIR  build directory (default build/fuzz)
#   WEFT_FUZZ_RUNS       new inputs per target (default 200000)
#   WEFT_FUZZ_SECONDS    time bound per target (default 40)
#   WEFT_FUZZ_SEED       libFuzzer seed (default 1)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

dir=${WEFT_FUZZ_BUILD_DIR:-build/fuzz}
runs=${WEFT_FUZZ_RUNS:-200000}
seconds=${WEFT_FUZZ_SECONDS:-40}
seed=${WEFT_FUZZ_SEED:-1}
targets=(http_request http_response)

if ! CC=clang cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_FUZZ=ON \
  -DWEFT_WERROR=ON -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_BENCH=OFF \
  -DWEFT_BUILD_EXAMPLES=OFF >&2; then
  echo "test-fuzz.sh: configure failed (is clang installed?)" >&2
  exit 1
fi
if ! cmake --build "$dir" --target "${targets[@]/#/fuzz_}" >&2; then
  echo "test-fuzz.sh: build failed" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
total=${#targets[@]}
i=0
for t in "${targets[@]}"; do
  i=$((i + 1))
  bin="$dir/tests/fuzz/fuzz_$t"
  corpus=tests/fuzz/corpus/$t
  regress=tests/fuzz/regressions/$t
  mkdir -p "$work/$t" "$dir/artifacts/$t"
  log="$dir/fuzz_$t.log"
  start=$(date +%s.%N)
  # The committed inputs one by one (a regression names itself when it fails), then new
  # inputs grown from them into a scratch corpus.
  mapfile -t inputs < <(find "$corpus" "$regress" -type f ! -name '.*' | sort)
  ok=1
  if ! "$bin" -artifact_prefix="$dir/artifacts/$t/" "${inputs[@]}" >"$log" 2>&1; then
    ok=0
  elif ! "$bin" -runs="$runs" -max_len=8192 -seed="$seed" -max_total_time="$seconds" \
    -timeout=10 -print_final_stats=1 -artifact_prefix="$dir/artifacts/$t/" \
    "$work/$t" "$corpus" "$regress" >>"$log" 2>&1; then
    ok=0
  fi
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  name=$(printf '%-40s' "fuzz/$t " | tr ' ' '.')
  if ((ok)); then
    printf '%d/%d Test #%d: %s   Passed  %6.2f sec\n' "$i" "$total" "$i" "$name" "$secs"
  else
    printf '%d/%d Test #%d: %s***Failed  %6.2f sec\n' "$i" "$total" "$i" "$name" "$secs"
    grep -E 'ERROR|invariant failed|SUMMARY|Test unit written' "$log" | head -20 >&2
    echo "test-fuzz.sh: log in $log; crash inputs in $dir/artifacts/$t/" >&2
    status=1
  fi
done
exit $status
