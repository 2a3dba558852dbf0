# scripts/tour/lib.sh: what every act of the tour shares (sourced by scripts/tour.sh).
# shellcheck shell=bash
#
# Invariants: every process an act starts goes through tour_start, which records its pid
# in TOUR_PIDS; tour_stop_all (the EXIT trap) stops each of them, so a failed act or a
# Ctrl-C never leaves a server behind. Every file goes under $TOUR_WORK. Results are
# "key=value" lines appended to $TOUR_WORK/results.env, written only from numbers read
# from the tools' own outputs; the summary, the report and the checks read that file.

TOUR_PIDS=()

tour_die() {
  echo "tour: $*" >&2
  exit 1
}

# tour_start LOG CMD...: runs CMD in the background, stdout and stderr to LOG.
tour_start() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  TOUR_PIDS+=("$!")
}

# tour_stop PID: SIGTERM, then SIGKILL after 3 s; waits for it. Never fails.
tour_stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

tour_stop_all() {
  local pid
  for pid in "${TOUR_PIDS[@]}"; do tour_stop "$pid"; done
  TOUR_PIDS=()
}

# tour_wait_log LOG SED_EXPR: the first match of SED_EXPR (a sed -n s///p) in LOG, waiting
# up to 10 s for it to appear. Used to read the address a tool bound to port 0.
tour_wait_log() {
  local log=$1 expr=$2 v
  for _ in $(seq 200); do
    v=$(sed -n "$expr" "$log" 2>/dev/null | head -1)
    if [[ -n $v ]]; then
      echo "$v"
      return 0
    fi
    sleep 0.05
  done
  tour_die "no address in $log after 10 s: $(tail -3 "$log")"
}

# The "addr" of a JSON log record whose msg is "listening" (paymentd, weft-upstream).
tour_listen_addr() {
  tour_wait_log "$1" 's/.*"msg":"listening".*"addr":"\([^"]*\)".*/\1/p'
}

tour_result() { echo "$1=$2" >>"$TOUR_WORK/results.env"; }

# tour_get KEY: a result recorded by an act ("" if none).
tour_get() { sed -n "s/^$1=//p" "$TOUR_WORK/results.env" | tail -1; }

# tour_metric FILE NAME{LABELS}: a sample's value from a Prometheus text scrape (0 if absent).
tour_metric() {
  awk -v want="$2" '$1 == want {v = $2} END {print v == "" ? 0 : v}' "$1"
}

tour_now_ms() { echo $(($(date +%s%N) / 1000000)); }
