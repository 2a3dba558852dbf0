#!/usr/bin/env bash
# End-to-end throughput and CPU per event of weft-etl against the Go peer
# (../shared/peers/go/etl), in one run on this machine:
#   scripts/bench-etl.sh            # 20,000 events, 3 rounds, two API latencies
#   QUICK=1 scripts/bench-etl.sh    # 4,000 events, 1 round (under a minute)
# bench/etl/gen-events.py writes N deterministic valid events (JSON lines). Three
# weft-upstream processes (users, geo, fx; apps/etl/upstream) play the APIs on loopback,
# the same ones for both pipelines. For each API latency, each round runs weft-etl and then
# the Go peer (alternating, so both see the same state of the machine) with the same flags:
#   --source file:EVENTS --sink sqlite:FRESH_DB --users/--geo/--fx URLS
#   --listen 127.0.0.1:0 --debug-listen ''   (everything else: the contract's defaults)
# A run counts only when it exits 0 and its database holds N rows of enriched_events, all
# `complete`, and no dead letter. Measured per run: wall time (events/s = N / wall, start-up
# and exit included), user + system CPU of the pipeline process (/usr/bin/time; CPU per
# event = (utime + stime) / N), peak RSS, and the three upstreams' CPU during the run
# (from /proc/PID/stat before and after: the same work for both, not in the pipeline's
# CPU per event). Every run goes to stderr; a markdown table of medians and the ratios
# weft / Go goes to stdout, then the median of each round's weft / Go ratio (a round's two
# runs are back to back, which the VM's changes of speed between rounds do not disturb).
#
# Environment:
#   QUICK=1                    4,000 events, 1 round
#   WEFT_BENCH_BUILD_DIR       use this weft build directory (built there with cmake,
#                              Release); default: scripts/build.sh release (build/release)
#   WEFT_BENCH_BUILD=0         use WEFT_BENCH_BUILD_DIR as it is (no cmake)
#   WEFT_BENCH_PEERS_BIN       where the Go peers are (built if missing; default /tmp/peers-bin)
#   WEFT_GO_PEER_DIR           the Go peer sources (default ../shared/peers/go beside the repo)
#   WEFT_BENCH_ROUNDS          rounds (default 3; QUICK: 1)
#   WEFT_ETL_EVENTS            events (default 20000; QUICK: 4000)
#   WEFT_ETL_LATENCIES         the upstreams' delays: "0" (at once), "MEDIAN:P99" (log-normal)
#                              or "D" (fixed); default "0 5ms:20ms 5ms"
#   WEFT_ETL_PROGRAMS          which pipelines (default "weft go")
#   WEFT_ETL_FLAGS             extra flags for both pipelines (default none)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

if [[ -n ${QUICK:-} ]]; then
  def_rounds=1 def_events=4000
else
  def_rounds=3 def_events=20000
fi
peers_bin=${WEFT_BENCH_PEERS_BIN:-/tmp/peers-bin}
go_peer=${WEFT_GO_PEER_DIR:-$root/../shared/peers/go}
rounds=${WEFT_BENCH_ROUNDS:-$def_rounds}
nevents=${WEFT_ETL_EVENTS:-$def_events}
latencies=${WEFT_ETL_LATENCIES:-0 5ms:20ms 5ms}
programs=${WEFT_ETL_PROGRAMS:-weft go}
read -r -a extra <<<"${WEFT_ETL_FLAGS:-}"

die() {
  echo "bench-etl.sh: $*" >&2
  exit 1
}

WEFT_BENCH_DEPS=1 bash scripts/install-deps.sh || die "installing dependencies failed"
[[ -x /usr/bin/time ]] || die "no /usr/bin/time (Debian package time)"
command -v sqlite3 >/dev/null || die "no sqlite3 (Debian package sqlite3)"
command -v python3 >/dev/null || die "no python3"
if [[ -n ${WEFT_BENCH_BUILD_DIR:-} && ${WEFT_BENCH_BUILD:-1} == 0 ]]; then
  build_dir=$WEFT_BENCH_BUILD_DIR
elif [[ -n ${WEFT_BENCH_BUILD_DIR:-} ]]; then
  build_dir=$WEFT_BENCH_BUILD_DIR
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWEFT_WERROR=ON >&2 ||
    die "cmake failed"
  cmake --build "$build_dir" --target weft-etl weft-upstream >&2 || die "build failed"
else
  build_dir=$(bash scripts/build.sh release) || die "scripts/build.sh release failed"
fi
if [[ " $programs " == *" go "* && ! -x $peers_bin/etl ]]; then
  [[ -f $go_peer/build.sh ]] || die "no Go peer at $go_peer (set WEFT_GO_PEER_DIR)"
  mkdir -p "$peers_bin"
  bash "$go_peer/build.sh" "$(cd "$peers_bin" && pwd)" >&2 || die "building the Go peer failed"
fi
declare -A bin=([weft]="$build_dir/apps/etl/weft-etl" [go]="$peers_bin/etl")
upstream_bin=$build_dir/apps/etl/weft-upstream
[[ -x $upstream_bin ]] || die "no $upstream_bin"

work=$(mktemp -d)
up_pids=()
stop_upstreams() {
  local p
  for p in "${up_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${up_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  up_pids=()
}
cleanup() {
  stop_upstreams
  rm -rf "$work"
}
trap cleanup EXIT

python3 bench/etl/gen-events.py "$nevents" >"$work/events.jsonl"
events=$work/events.jsonl

# start_upstreams LATENCY: the three APIs; sets url[users|geo|fx].
declare -A url
start_upstreams() {
  local lat=$1 api args=()
  if [[ $lat == *:* ]]; then
    args=(--latency-median "${lat%%:*}" --latency-p99 "${lat#*:}")
  elif [[ $lat != 0 ]]; then
    args=(--latency-median "$lat") # a fixed delay
  fi
  # A seed per API: each upstream draws its delays from a stream indexed by arrival
  # number, so with one seed the three calls of an event (arriving in step) would wait
  # alike, and the wait for the slowest of the three would be that of one.
  local seed=0
  for api in users geo fx; do
    seed=$((seed + 1))
    "$upstream_bin" --api "$api" --listen 127.0.0.1:0 --seed "$seed" "${args[@]}" \
      >"$work/$api.out" 2>&1 &
    up_pids+=($!)
  done
  for api in users geo fx; do
    local addr=
    for _ in $(seq 100); do
      addr=$(sed -n 's/.*"msg":"listening","addr":"\([^"]*\)".*/\1/p' "$work/$api.out")
      [[ -n $addr ]] && break
      sleep 0.05
    done
    [[ -n $addr ]] || die "weft-upstream --api $api did not start: $(cat "$work/$api.out")"
    url[$api]=http://$addr
  done
  curl -sf "${url[users]}/users/u1" | grep -q '"tier"' || die "no answer from ${url[users]}"
}

# upstream_cpu_ticks: the three upstreams' utime + stime, in clock ticks.
upstream_cpu_ticks() {
  local p t=0 s
  for p in "${up_pids[@]}"; do
    s=$(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
    t=$((t + s))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)

# run NAME: one pipeline run over every event; prints "events/s cpu_us_per_event rss_kib
# upstream_cpu_us_per_event wall_s".
run() {
  local name=$1 db=$work/$1.db t0 t1 u0 u1
  rm -f "$db" "$db-wal" "$db-shm"
  u0=$(upstream_cpu_ticks)
  t0=$(date +%s%N)
  timeout 300 /usr/bin/time -f '%M %U %S' -o "$work/time" "${bin[$name]}" \
    --source "file:$events" --sink "sqlite:$db" --users "${url[users]}" --geo "${url[geo]}" \
    --fx "${url[fx]}" --listen 127.0.0.1:0 --debug-listen '' "${extra[@]}" \
    </dev/null >"$work/$name.log" 2>&1 || die "$name failed: $(tail -3 "$work/$name.log")"
  t1=$(date +%s%N)
  u1=$(upstream_cpu_ticks)
  local rows complete dead
  rows=$(sqlite3 "$db" 'SELECT count(*) FROM enriched_events')
  complete=$(sqlite3 "$db" "SELECT count(*) FROM enriched_events WHERE status = 'complete'")
  dead=$(sqlite3 "$db" 'SELECT count(*) FROM dead_letters')
  ((rows == nevents && complete == nevents && dead == 0)) ||
    die "$name: $rows rows, $complete complete, $dead dead letters (want $nevents, $nevents, 0)"
  read -r rss user sys < <(tail -1 "$work/time")
  awk -v n="$nevents" -v ns=$((t1 - t0)) -v rss="$rss" -v user="$user" -v sys="$sys" \
    -v up=$((u1 - u0)) -v hz="$hz" \
    'BEGIN {printf "%.0f %.1f %d %.1f %.2f\n", n / (ns / 1e9), (user + sys) * 1e6 / n, rss,
            up / hz * 1e6 / n, ns / 1e9}'
}

declare -A eps cpu rss upc
for lat in $latencies; do
  start_upstreams "$lat"
  for round in $(seq "$rounds"); do
    for name in $programs; do
      read -r e c r u w < <(run "$name")
      [[ -n ${w:-} ]] || die "$name: no measurement"
      echo "latency $lat round $round $name: $e events/s ($w s), CPU $c us/event," \
        "peak RSS $r KiB, upstreams' CPU $u us/event" >&2
      eps[$name.$lat]+="$e "
      cpu[$name.$lat]+="$c "
      rss[$name.$lat]+="$r "
      upc[$name.$lat]+="$u "
    done
  done
  stop_upstreams
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
echo "| API latency (median:p99) | pipeline | events/s (median of $rounds) | vs Go |" \
  "CPU µs/event | vs Go | peak RSS | upstreams' CPU µs/event |"
echo "|---|---|---|---|---|---|---|---|"
for lat in $latencies; do
  label=$lat
  [[ $lat == 0 ]] && label="at once"
  [[ $lat != 0 && $lat != *:* ]] && label="$lat fixed"
  go_e=$(echo "${eps[go.$lat]:-}" | median)
  go_c=$(echo "${cpu[go.$lat]:-}" | median)
  for name in $programs; do
    e=$(echo "${eps[$name.$lat]}" | median)
    c=$(echo "${cpu[$name.$lat]}" | median)
    echo "| $label | $name | $e | $(ratio "$e" "${go_e:-0}") | $c | $(ratio "$c" "${go_c:-0}") |" \
      "$(echo "${rss[$name.$lat]}" | median) KiB | $(echo "${upc[$name.$lat]}" | median) |"
  done
done
echo "($nevents events from a file, SQLite sink, three weft-upstream processes on loopback;" \
  "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)"
# A round's weft and Go runs are back to back, in one state of the machine (this VM changes
# speed by a third now and then): the median of the rounds' ratios survives such a change,
# the ratio of the medians may not.
if [[ " $programs " == *" weft "* && " $programs " == *" go "* ]]; then
  echo
  for lat in $latencies; do
    read -r -a we <<<"${eps[weft.$lat]}"
    read -r -a ge <<<"${eps[go.$lat]}"
    read -r -a wc <<<"${cpu[weft.$lat]}"
    read -r -a gc <<<"${cpu[go.$lat]}"
    er="" cr=""
    for i in "${!we[@]}"; do
      er+="$(ratio "${we[$i]}" "${ge[$i]:-0}") "
      cr+="$(ratio "${wc[$i]}" "${gc[$i]:-0}") "
    done
    echo "latency $lat, weft / Go by round: events/s ${er}-> median $(echo "$er" | median);" \
      "CPU per event ${cr}-> median $(echo "$cr" | median)"
  done
fi
