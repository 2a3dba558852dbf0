#!/usr/bin/env bash
# HTTP throughput of weft-hello against the Go peer (../shared/peers/go/hello) and nginx
# (Debian's nginx-light, one worker, `return 200 hello`), in one run on this machine:
#   scripts/bench-http.sh
# Each round runs `wrk -t2 -c64 -d$DURATION` against each server in turn (bench.md's
# method; wrk shares the cores with the server, so compare only within a run) and
# prints a markdown table on stdout: the median requests/s over the rounds, the ratio to
# Go, and each server's resident memory after the last round. Every round goes to stderr.
#
# Environment:
#   WEFT_BENCH_BUILD_DIR  weft build directory (default build/bench)
#   WEFT_BENCH_PEERS_BIN  where the Go peers are built (default <build dir>/peers)
#   WEFT_GO_PEER_DIR      the Go peer sources (default ../shared/peers/go beside the repo)
#   WEFT_BENCH_ROUNDS     rounds (default 3)
#   WEFT_HTTP_DURATION    wrk duration (default 10s)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

build_dir=${WEFT_BENCH_BUILD_DIR:-build/bench}
peers_bin=${WEFT_BENCH_PEERS_BIN:-$build_dir/peers}
go_peer=${WEFT_GO_PEER_DIR:-$root/../shared/peers/go}
rounds=${WEFT_BENCH_ROUNDS:-3}
duration=${WEFT_HTTP_DURATION:-10s}

die() {
  echo "bench-http.sh: $*" >&2
  exit 1
}

WEFT_BENCH_DEPS=1 bash scripts/install-deps.sh || die "installing dependencies failed"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWEFT_BUILD_TESTS=OFF \
  -DWEFT_BUILD_EXAMPLES=OFF >&2 || die "cmake failed"
cmake --build "$build_dir" --target weft-hello >&2 || die "building weft-hello failed"
[[ -f $go_peer/build.sh ]] || die "no Go peer at $go_peer (set WEFT_GO_PEER_DIR)"
if [[ ! -x $peers_bin/hello || $go_peer/hello/main.go -nt $peers_bin/hello ]]; then
  mkdir -p "$peers_bin"
  bash "$go_peer/build.sh" "$(cd "$peers_bin" && pwd)" >&2 || die "building the Go peer failed"
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# nginx: one worker, everything in a private prefix.
mkdir -p "$work/nginx/logs"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:18093;
    keepalive_requests 1000000;
    location / { default_type text/plain; return 200 hello; }
  }
}
EOF

"$build_dir/bench/weft-hello" --listen 127.0.0.1:18091 2>/dev/null &
pids+=($!)
"$peers_bin/hello" --listen 127.0.0.1:18092 2>/dev/null &
pids+=($!)
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>/dev/null &
pids+=($!)

names=(weft go nginx)
ports=(18091 18092 18093)
for port in "${ports[@]}"; do
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$port/" | grep -qx hello || die "no hello on port $port"
done

declare -A results
for round in $(seq "$rounds"); do
  for i in 0 1 2; do
    rps=$(wrk -t2 -c64 -d"$duration" "http://127.0.0.1:${ports[$i]}/" |
      awk '/Requests\/sec/ {print $2}')
    echo "round $round ${names[$i]} $rps req/s" >&2
    results[${names[$i]}]+="$rps "
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }
nginx_worker=$(pgrep -P "${pids[2]}" | head -1 || true)
rss=("$(rss_kb "${pids[0]}")" "$(rss_kb "${pids[1]}")" "$(rss_kb "${nginx_worker:-${pids[2]}}")")

go_med=$(echo "${results[go]}" | median)
echo "| server | requests/s (median of $rounds) | vs Go | resident memory after |"
echo "|---|---|---|---|"
for i in 0 1 2; do
  med=$(echo "${results[${names[$i]}]}" | median)
  ratio=$(awk -v a="$med" -v b="$go_med" 'BEGIN {printf "%.2f", a / b}')
  echo "| ${names[$i]} | $med | $ratio | ${rss[$i]} KiB |"
done
