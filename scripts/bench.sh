#!/usr/bin/env bash
# Benchmark weft against its Go peer on the same machine in one run:
#   scripts/bench.sh [NAME...]
# builds weft-bench (release) and the Go peer gobench if it is missing, then runs every
# workload (default: all of weft-bench --list) ROUNDS times, alternating weft and Go
# within each workload so both see the same machine state, and prints a markdown table on
# stdout: the median over the rounds of each program's median, the ratio weft/Go and the
# target. Every round's values go to stderr. Workloads gobench does not know are run for
# weft only.
#
# Environment:
#   WEFT_BENCH_BUILD_DIR  weft build directory (default build/bench)
#   WEFT_BENCH_PEERS_BIN  where the Go peers are built (default <build dir>/peers)
#   WEFT_GO_PEER_DIR      the Go peer sources (default ../shared/peers/go beside the repo)
#   WEFT_BENCH_ROUNDS     alternations per workload (default 3)
#   WEFT_BENCH_REPS       --reps passed to both programs (default 5)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

build_dir=${WEFT_BENCH_BUILD_DIR:-build/bench}
peers_bin=${WEFT_BENCH_PEERS_BIN:-$build_dir/peers}
go_peer=${WEFT_GO_PEER_DIR:-$root/../shared/peers/go}
rounds=${WEFT_BENCH_ROUNDS:-3}
reps=${WEFT_BENCH_REPS:-5}

die() {
  echo "bench.sh: $*" >&2
  exit 1
}

# ---- build ----

WEFT_BENCH_DEPS=1 bash scripts/install-deps.sh || die "installing dependencies failed"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWEFT_BUILD_TESTS=OFF \
  -DWEFT_BUILD_EXAMPLES=OFF >&2 || die "cmake failed"
cmake --build "$build_dir" --target weft-bench >&2 || die "building weft-bench failed"
weft=$build_dir/bench/weft-bench

[[ -f $go_peer/build.sh ]] || die "no Go peer at $go_peer (set WEFT_GO_PEER_DIR)"
gobench=$peers_bin/gobench
if [[ ! -x $gobench || $go_peer/gobench/main.go -nt $gobench ]]; then
  mkdir -p "$peers_bin"
  peers_abs=$(cd "$peers_bin" && pwd)
  bash "$go_peer/build.sh" "$peers_abs" >&2 || die "building the Go peer failed"
fi

# ---- run ----

if (($# > 0)); then
  names=("$@")
else
  mapfile -t names < <("$weft" --list)
fi
mapfile -t go_names < <("$gobench" --list)

# Target per workload, as the largest allowed ratio weft/Go and how to show it.
target_ratio() {
  case $1 in
    switch_1p) echo 0.2 ;;
    spawn_join) echo 0.5 ;;
    sleep_100k) echo 1 ;;
    parked_mem) echo 1 ;;
    *) echo "" ;;
  esac
}
target_text() {
  case $1 in
    switch_1p) echo "≤ 1/5 of Go" ;;
    spawn_join) echo "≤ 1/2 of Go" ;;
    sleep_100k) echo "≤ Go" ;;
    parked_mem) echo "≤ Go (long-term aim)" ;;
    *) echo "—" ;;
  esac
}

has_go() {
  local n
  for n in "${go_names[@]}"; do
    [[ $n == "$1" ]] && return 0
  done
  return 1
}

# One measurement: prints "<value> <unit>" of program $1 for workload $2.
measure() {
  local line f
  line=$("$1" --reps "$reps" "$2") || die "$1 $2 failed"
  read -r -a f <<<"$line"
  [[ ${#f[@]} == 3 && ${f[0]} == "$2" ]] || die "unexpected output from $1: $line"
  echo "${f[1]} ${f[2]}"
}

median() {
  tr ' ' '\n' | sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) exit
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Print v with the precision weft-bench uses for unit u.
fmt_value() {
  case $2 in
    bytes/op) printf '%.0f' "$1" ;;
    ms) printf '%.2f' "$1" ;;
    *) printf '%.1f' "$1" ;;
  esac
}

for n in "${names[@]}"; do
  "$weft" --list | grep -qx -- "$n" || die "weft-bench has no workload \"$n\""
done

echo "| workload | weft | Go | weft/Go | target |"
echo "|---|---|---|---|---|"
for n in "${names[@]}"; do
  wv=() gv=() unit=""
  for ((r = 1; r <= rounds; r++)); do
    read -r v unit < <(measure "$weft" "$n")
    wv+=("$v")
    if has_go "$n"; then
      read -r v _ < <(measure "$gobench" "$n")
      gv+=("$v")
    fi
  done
  echo "bench.sh: $n ($unit): weft ${wv[*]}${gv:+ | go ${gv[*]}}" >&2
  wm=$(echo "${wv[*]}" | median)
  w_cell="$(fmt_value "$wm" "$unit") $unit"
  g_cell="—" ratio="—" target=$(target_text "$n")
  has_go "$n" || target="— (no Go counterpart)"
  if ((${#gv[@]} > 0)); then
    gm=$(echo "${gv[*]}" | median)
    g_cell="$(fmt_value "$gm" "$unit") $unit"
    ratio=$(awk -v a="$wm" -v b="$gm" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "—" }')
    limit=$(target_ratio "$n")
    if [[ -n $limit && $ratio != "—" ]]; then
      if awk -v a="$wm" -v b="$gm" -v l="$limit" 'BEGIN { exit !(a / b <= l) }'; then
        target="$target: met"
      else
        target="$target: missed"
      fi
    fi
  fi
  echo "| $n | $w_cell | $g_cell | $ratio | $target |"
done
