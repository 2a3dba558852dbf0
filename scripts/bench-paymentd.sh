#!/usr/bin/env bash
# paymentd under load (issue 9): weft's apps/paymentd against the Go peer
# (../shared/peers/go/paymentd, same contract), side by side in one run, with the same
# flags, wrk and bench/paymentd/confirm.lua (valid confirmations, ids unique per run and
# thread) on loopback:
#   scripts/bench-paymentd.sh            # about 5 minutes
#   QUICK=1 scripts/bench-paymentd.sh    # about 1 minute: shorter steps, one SQLite round
#
# (a) Overload, `--store memory: --work-ms 2 --workers 8 --queue 32` (a queue the 10x step overflows): capacity is
#     8 / 2 ms = 4,000 confirmations/s. Three steps: at capacity (8 connections), 10x
#     (80) and 50x (400); a 429 comes back at once, so the offered load is far above
#     capacity. Per step: 200/s, share of 429, other statuses, p50/p99 of all responses,
#     VmRSS sampled every 0.25 s (start, max, end). Each step runs on fresh servers, so
#     every step starts from the same empty store and stores about the same number of
#     records (capped by capacity): what differs is the offered load alone.
#     Fails if weft answers anything but 200 and 429, or if weft's memory is not flat:
#     under 50x, RSS may grow after the first second (connections open, queue full) by
#     no more than the records stored meanwhile (FLAT_BYTES_PER_RECORD, default 256, a
#     generous bound on the memory store's ~80) plus FLAT_SLACK_KIB (default 2048): the
#     hundreds of thousands of 429s must cost nothing that stays.
# (b) Throughput, `--store memory: --work-ms 0 --workers 2` (Go's default, GOMAXPROCS = 2):
#     wrk -t2 -c64, ROUNDS rounds alternating weft and Go, a fresh server each round;
#     median req/s, p99 and peak RSS, and the median of the rounds' weft/Go ratios (a
#     round's two runs share the machine's state, which on this VM changes speed by a
#     third now and then). Target: weft >= 2x Go's req/s (by that median), lower p99, peak
#     RSS <= 1/3 of Go's (reported, not enforced).
# (c) SQLite, `--store sqlite:<temp dir>/x.db --work-ms 0 --workers 2`, durable commits:
#     the same as (b), SQLITE_ROUNDS rounds.
# Markdown tables go to stdout, every step to stderr. wrk and the servers share the
# machine's cores: compare only within one run.
#
# Environment:
#   WEFT_BENCH_BUILD_DIR  weft release build directory (default: scripts/build.sh release)
#   WEFT_BENCH_PEERS_BIN  the Go peers (default /tmp/peers-bin; built when missing)
#   WEFT_GO_PEER_DIR      the Go peer sources (default ../shared/peers/go beside the repo)
#   QUICK=1               steps of 3 s, one SQLite round
#   STEP_SECONDS          wrk duration of every step (default 8, QUICK 3)
#   ROUNDS, SQLITE_ROUNDS rounds of (b) and (c) (default 5 and 3, QUICK 3 and 1)
#   WRK_THREADS           wrk -t (default 2)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

quick=${QUICK:-0}
if [[ $quick == 1 ]]; then
  step=${STEP_SECONDS:-3}
  rounds=${ROUNDS:-3}
  sqlite_rounds=${SQLITE_ROUNDS:-1}
else
  step=${STEP_SECONDS:-8}
  rounds=${ROUNDS:-5}
  sqlite_rounds=${SQLITE_ROUNDS:-3}
fi
threads=${WRK_THREADS:-2}
flat_slack_kib=${FLAT_SLACK_KIB:-2048}
flat_bytes_per_record=${FLAT_BYTES_PER_RECORD:-256}
peers_bin=${WEFT_BENCH_PEERS_BIN:-/tmp/peers-bin}
go_peer=${WEFT_GO_PEER_DIR:-$root/../shared/peers/go}
lua=$root/bench/paymentd/confirm.lua

die() {
  echo "bench-paymentd.sh: $*" >&2
  exit 1
}
log() { echo "$*" >&2; }

command -v wrk >/dev/null || die "wrk is missing (WEFT_BENCH_DEPS=1 scripts/install-deps.sh)"
command -v curl >/dev/null || die "curl is missing (WEFT_BENCH_DEPS=1 scripts/install-deps.sh)"

if [[ -n ${WEFT_BENCH_BUILD_DIR:-} ]]; then
  build_dir=$WEFT_BENCH_BUILD_DIR
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWEFT_WERROR=ON >&2 ||
    die "cmake failed"
  cmake --build "$build_dir" --target paymentd >&2 || die "building paymentd failed"
else
  build_dir=$(scripts/build.sh release) || die "scripts/build.sh release failed"
fi
weft_bin=$build_dir/apps/paymentd/paymentd
[[ -x $weft_bin ]] || die "no $weft_bin"
if [[ ! -x $peers_bin/paymentd ]]; then
  [[ -f $go_peer/build.sh ]] || die "no Go peer at $go_peer (set WEFT_GO_PEER_DIR)"
  mkdir -p "$peers_bin"
  bash "$go_peer/build.sh" "$(cd "$peers_bin" && pwd)" >&2 || die "building the Go peer failed"
fi
go_bin=$peers_bin/paymentd

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port_of() { [[ $1 == weft ]] && echo 18111 || echo 18112; }
bin_of() { [[ $1 == weft ]] && echo "$weft_bin" || echo "$go_bin"; }

# start NAME FLAGS...: a fresh server on its port; sets server_pid once /healthz answers.
start() {
  local name=$1 port
  shift
  port=$(port_of "$name")
  "$(bin_of "$name")" --listen "127.0.0.1:$port" --debug-listen "" --log-level error "$@" \
    2>>"$work/$name.stderr" &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  die "$name did not start on port $port: $(tail -3 "$work/$name.stderr")"
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# sample PID FILE: VmRSS (KiB) every 0.25 s into FILE until the file $FILE.stop exists.
sample() {
  while [[ ! -e $2.stop ]] && kill -0 "$1" 2>/dev/null; do
    rss_kib "$1" >>"$2" || true
    sleep 0.25
  done
}

# load NAME PID CONNS: wrk against the server for one step; sets the globals
# line (confirm.lua's result line) and rss_start, rss_max, rss_end.
step_n=0
load() {
  local name=$1 pid=$2 conns=$3 port samples sampler
  port=$(port_of "$name")
  step_n=$((step_n + 1))
  samples=$work/rss.$step_n
  : >"$samples"
  sample "$pid" "$samples" &
  sampler=$!
  line=$(PAYMENTD_BENCH_RUN="r$$s$step_n" wrk -t"$threads" -c"$conns" -d"${step}s" \
    -s "$lua" "http://127.0.0.1:$port/" | grep '^paymentd-bench ') ||
    die "wrk against $name gave no result line"
  touch "$samples.stop"
  wait "$sampler" 2>/dev/null || true
  rss_start=$(head -1 "$samples")
  rss_warm=$(sed -n 5p "$samples") # 1 s into the step: connections open, queue full
  rss_warm=${rss_warm:-$rss_start}
  rss_max=$(sort -n "$samples" | tail -1)
  rss_end=$(tail -1 "$samples")
  log "$name c=$conns: $line rss_kib=$rss_start/$rss_max/$rss_end"
}

field() { tr ' ' '\n' <<<"$line" | awk -F= -v k="$1" '$1 == k {print $2}'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v us="$1" 'BEGIN {printf "%.2f", us / 1000}'; }
fmt_int() { printf "%'d" "${1%.*}"; }
failures=()

# ---- (a) overload ----
overload_flags=(--store memory: --work-ms 2 --workers 8 --queue 32)
declare -A max_rss grew records_kib
a_rows=()
for mult in 1 10 50; do
  conns=$((8 * mult))
  for name in weft go; do
    start "$name" "${overload_flags[@]}"
    pid=$server_pid
    load "$name" "$pid" "$conns"
    stop "$pid"
    secs=$(field seconds)
    ok_rate=$(awk -v n="$(field ok)" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')
    shed=$(awk -v n="$(field shed)" -v t="$(field requests)" \
      'BEGIN {printf "%.1f%%", t ? 100 * n / t : 0}')
    other=$(field other)
    label=$([[ $mult == 1 ]] && echo "at capacity" || echo "${mult}x")
    a_rows+=("| $name | $label | $conns | $(fmt_int "$ok_rate") | $shed | $other ($(field statuses)) | $(ms "$(field p50_us)") | $(ms "$(field p99_us)") | $(fmt_int "$rss_start") / $(fmt_int "$rss_max") / $(fmt_int "$rss_end") |")
    max_rss[$name.$mult]=$rss_max
    if [[ $mult == 50 ]]; then # what grew after the first second, and what the records explain
      grew[$name]=$((rss_end - rss_warm))
      records_kib[$name]=$(awk -v n="$(field ok)" -v s="$secs" -v b="$flat_bytes_per_record" \
        'BEGIN {printf "%.0f", n * (s - 1) / s * b / 1024}')
    fi
    if [[ $name == weft && $other != 0 ]]; then
      failures+=("weft answered $other requests with a status other than 200 and 429 at ${label}")
    fi
  done
done
echo "### Overload: --store memory: --work-ms 2 --workers 8 --queue 32 (capacity 4,000/s)"
echo
echo "wrk -t$threads -d${step}s -s bench/paymentd/confirm.lua, fresh servers for every step."
echo
echo "| server | load | connections | 200/s | 429 share | other statuses | p50 ms | p99 ms | RSS KiB start / max / end |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${a_rows[@]}"
echo
for name in weft go; do
  echo "$name: under 50x, RSS grew $(fmt_int "${grew[$name]}") KiB from 1 s into the step to its end," \
    "while it stored records worth about $(fmt_int "${records_kib[$name]}") KiB at ${flat_bytes_per_record} B each"
  echo
done
flat_limit=$((records_kib[weft] + flat_slack_kib))
if ((grew[weft] > flat_limit)); then
  failures+=("weft's memory is not flat under 50x: grew ${grew[weft]} KiB > $flat_limit KiB")
fi
echo "Flat (checked for weft): under 50x, growth after the first second <= the stored records + $(fmt_int "$flat_slack_kib") KiB = $(fmt_int "$flat_limit") KiB: $( ((grew[weft] <= flat_limit)) && echo met || echo MISSED)."
echo

# ---- (b) and (c): throughput, rounds alternating weft and Go ----
# series TITLE ROUNDS STORE_KIND: prints a table of medians.
series() {
  local title=$1 n=$2 kind=$3 round name store
  declare -A rps p99 rss
  for round in $(seq "$n"); do
    for name in weft go; do
      if [[ $kind == sqlite ]]; then
        mkdir -p "$work/db.$name.$round"
        store=sqlite:$work/db.$name.$round/paymentd.db
      else
        store=memory:
      fi
      start "$name" --store "$store" --work-ms 0 --workers 2
      pid=$server_pid
      load "$name" "$pid" 64
      stop "$pid"
      [[ $name == weft && $(field other) != 0 ]] &&
        failures+=("weft answered $(field other) requests with another status than 200/429 ($kind)")
      rps[$name]+="$(field rps) "
      p99[$name]+="$(field p99_us) "
      rss[$name]+="$rss_max "
    done
  done
  echo "### $title"
  echo
  echo "| server | req/s (median of $n) | vs Go | p99 ms | peak RSS KiB | rounds req/s |"
  echo "|---|---|---|---|---|---|"
  local go_rps
  go_rps=$(median <<<"${rps[go]}")
  for name in weft go; do
    local r
    r=$(median <<<"${rps[$name]}")
    med_rps[$kind.$name]=$r
    med_p99[$kind.$name]=$(median <<<"${p99[$name]}")
    med_rss[$kind.$name]=$(median <<<"${rss[$name]}")
    echo "| $name | $(fmt_int "$r") | $(awk -v a="$r" -v b="$go_rps" 'BEGIN {printf "%.2f", a / b}') |" \
      "$(ms "${med_p99[$kind.$name]}") | $(fmt_int "${med_rss[$kind.$name]}") | $(for v in ${rps[$name]}; do printf '%s ' "$(fmt_int "$v")"; done)|"
  done
  # Each round's weft and Go ran back to back, in one state of the machine: their ratio
  # survives the VM changing speed between rounds, which the ratio of medians does not.
  local -a w g
  read -r -a w <<<"${rps[weft]}"
  read -r -a g <<<"${rps[go]}"
  local ratios="" i
  for i in "${!w[@]}"; do
    ratios+="$(awk -v a="${w[$i]}" -v b="${g[$i]}" 'BEGIN {printf "%.2f", a / b}') "
  done
  med_ratio[$kind]=$(median <<<"$ratios")
  echo
  echo "weft / Go by round (each pair back to back): ${ratios}-> median ${med_ratio[$kind]}"
  echo
}
declare -A med_rps med_p99 med_rss med_ratio
series "Throughput: --store memory: --work-ms 0 --workers 2, wrk -t$threads -c64 -d${step}s" \
  "$rounds" memory
verdict() { [[ $1 == 1 ]] && echo met || echo missed; }
echo "Target: req/s >= 2x Go (the median of the rounds' ratios): $(verdict "$(awk -v r="${med_ratio[memory]}" 'BEGIN {print (r >= 2)}')");" \
  "p99 below Go's: $(verdict "$(awk -v a="${med_p99[memory.weft]}" -v b="${med_p99[memory.go]}" 'BEGIN {print (a < b)}')");" \
  "peak RSS <= 1/3 of Go's: $(verdict "$(awk -v a="${med_rss[memory.weft]}" -v b="${med_rss[memory.go]}" 'BEGIN {print (3 * a <= b)}')")."
echo
series "SQLite: --store sqlite:<temp dir>/paymentd.db --work-ms 0 --workers 2, wrk -t$threads -c64 -d${step}s" \
  "$sqlite_rounds" sqlite

if ((${#failures[@]} > 0)); then
  printf 'bench-paymentd.sh: FAILED: %s\n' "${failures[@]}" >&2
  exit 1
fi
