#!/usr/bin/env bash
# Crawler throughput of weft-crawl against the Go peer (../shared/peers/go/crawl), in one
# run on this machine:
#   scripts/bench-crawl.sh
# weft-slow-server (bench/crawl/slow_server.c) serves /page/0 .. /page/<N-1> on loopback,
# each after 20 ms. Each round crawls all N URLs (read from stdin, `-`) with each crawler in
# turn, alternating (weft, Go, weft, Go, ...) so that both see the same state of the
# machine, with the same flags: the contract's defaults except --per-host, which is set
# equal to --concurrency (every URL is on one host, so the default per-host cap of 8 would
# be the only limit measured). A run counts only when it wrote exactly one line per URL,
# every one with status 200. Prints a markdown table on stdout: per crawler and
# concurrency, the median pages/s (N / wall time) over the rounds, the ratio to Go, the
# median peak resident memory (/usr/bin/time's maximum resident set size) and the median
# CPU time (user + system: where the in-flight limit, not the crawler, sets the pace, this
# is the cost that differs). Every run goes to stderr.
#
# Environment:
#   WEFT_BENCH_BUILD_DIR     weft build directory (default build/bench)
#   WEFT_BENCH_PEERS_BIN     where the Go peers are built (default <build dir>/peers)
#   WEFT_GO_PEER_DIR         the Go peer sources (default ../shared/peers/go beside the repo)
#   WEFT_BENCH_ROUNDS        rounds (default 3)
#   WEFT_CRAWL_URLS          URLs per crawl (default 10000)
#   WEFT_CRAWL_DELAY_MS      the server's delay per page (default 20)
#   WEFT_CRAWL_CONCURRENCY   --concurrency values to measure, each a table row per
#                            crawler (default "50 500": the contract's default, and ten
#                            times it, where the crawler's own cost shows more)
#   WEFT_CRAWL_PROGRAMS      which crawlers (default "weft go")
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

build_dir=${WEFT_BENCH_BUILD_DIR:-build/bench}
peers_bin=${WEFT_BENCH_PEERS_BIN:-$build_dir/peers}
go_peer=${WEFT_GO_PEER_DIR:-$root/../shared/peers/go}
rounds=${WEFT_BENCH_ROUNDS:-3}
nurls=${WEFT_CRAWL_URLS:-10000}
delay=${WEFT_CRAWL_DELAY_MS:-20}
concurrencies=${WEFT_CRAWL_CONCURRENCY:-50 500}
programs=${WEFT_CRAWL_PROGRAMS:-weft go}

die() {
  echo "bench-crawl.sh: $*" >&2
  exit 1
}

WEFT_BENCH_DEPS=1 bash scripts/install-deps.sh || die "installing dependencies failed"
[[ -x /usr/bin/time ]] || die "no /usr/bin/time (Debian package time)"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWEFT_BUILD_TESTS=OFF \
  -DWEFT_BUILD_EXAMPLES=OFF >&2 || die "cmake failed"
targets=(weft-slow-server)
[[ " $programs " == *" weft "* ]] && targets+=(weft-crawl)
cmake --build "$build_dir" --target "${targets[@]}" >&2 || die "building ${targets[*]} failed"
if [[ " $programs " == *" go "* ]]; then
  [[ -f $go_peer/build.sh ]] || die "no Go peer at $go_peer (set WEFT_GO_PEER_DIR)"
  if [[ ! -x $peers_bin/crawl || -n $(find "$go_peer/crawl" -newer "$peers_bin/crawl") ]]; then
    mkdir -p "$peers_bin"
    bash "$go_peer/build.sh" "$(cd "$peers_bin" && pwd)" >&2 || die "building the Go peer failed"
  fi
fi
declare -A bin=([weft]="$build_dir/apps/crawl/weft-crawl" [go]="$peers_bin/crawl")

work=$(mktemp -d)
server_pid=
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$build_dir/bench/weft-slow-server" --listen 127.0.0.1:0 --delay "$delay" --pages "$nurls" \
  >"$work/server.out" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$work/server.out" && break
  sleep 0.05
done
addr=$(sed -n 's/^listening on //p' "$work/server.out")
[[ -n $addr ]] || die "weft-slow-server did not start: $(cat "$work/server.out")"
seq 0 $((nurls - 1)) | sed "s|^|http://$addr/page/|" >"$work/urls"
curl -sf "http://$addr/page/0" | grep -q '<title>page 0</title>' || die "no page from $addr"

# crawl NAME CONCURRENCY: one crawl of every URL; prints "pages/s peak_rss_kib cpu_s".
crawl() {
  local name=$1 c=$2 t0 t1
  t0=$(date +%s%N)
  timeout 600 /usr/bin/time -f '%M %U %S' -o "$work/time" "${bin[$name]}" --concurrency "$c" \
    --per-host "$c" --out "$work/out.jsonl" - <"$work/urls" 2>"$work/err" ||
    die "$name --concurrency $c failed: $(tail -3 "$work/err")"
  t1=$(date +%s%N)
  local lines ok
  lines=$(wc -l <"$work/out.jsonl")
  ok=$(grep -c '"status": *200[,}]' "$work/out.jsonl" || true)
  ((lines == nurls && ok == nurls)) ||
    die "$name --concurrency $c: $lines lines, $ok with status 200 (want $nurls each)"
  read -r rss user sys < <(tail -1 "$work/time")
  awk -v n="$nurls" -v ns=$((t1 - t0)) -v rss="$rss" -v user="$user" -v sys="$sys" \
    'BEGIN {printf "%.0f %d %.2f\n", n / (ns / 1e9), rss, user + sys}'
}

declare -A pps rss cpu
for round in $(seq "$rounds"); do
  for c in $concurrencies; do
    for name in $programs; do
      out=$(crawl "$name" "$c") # dies (set -e) when the crawl fails
      read -r p r t <<<"$out"
      echo "round $round $name --concurrency $c: $p pages/s, peak RSS $r KiB, CPU $t s" >&2
      pps[$name.$c]+="$p "
      rss[$name.$c]+="$r "
      cpu[$name.$c]+="$t "
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| crawler | --concurrency = --per-host | pages/s (median of $rounds) | vs Go | peak RSS (median) | CPU s (median) |"
echo "|---|---|---|---|---|---|"
for c in $concurrencies; do
  go_med=$(echo "${pps[go.$c]:-}" | median)
  for name in $programs; do
    med=$(echo "${pps[$name.$c]}" | median)
    ratio=$(awk -v a="$med" -v b="${go_med:-0}" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}')
    echo "| $name | $c | $med | $ratio | $(echo "${rss[$name.$c]}" | median) KiB |" \
      "$(echo "${cpu[$name.$c]}" | median) |"
  done
done
echo "($nurls URLs on one loopback host, each answered after $delay ms; $(nproc) CPUs," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)"
