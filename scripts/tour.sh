#!/usr/bin/env bash
# The weft tour (issue 11): three acts run against built binaries, then a text summary on
# stdout and an HTML report.
#   scripts/tour.sh [--build-dir DIR] [--out DIR] [--quick] [--check]
# --build-dir  a CMake build with the apps and bench (default build/release)
# --out        where files and report.html go (default: a fresh mktemp -d)
# --quick      act 1 lasts 6 s instead of 12 s (the whole tour: about 20 s instead of 30 s)
# --check      exit 1 unless the tour showed what it is meant to (429s in the spike,
#              /healthz saturated then ok, geo's breaker opened and closed, partial rows,
#              dead letters, pages crawled); on success the work directory is removed.
#              The CTest entry apps/tour runs --quick --check.
# Acts (each file under scripts/tour/ says what it runs and expects):
#   1. paymentd under a load spike from weft-load (act_payments.sh)
#   2. weft-etl on examples/tour/events.jsonl with a flaky geo API (act_pipeline.sh)
#   3. weft-crawl over weft-slow-server's local site (act_crawl.sh)
# Everything listens on 127.0.0.1 port 0; every process started is stopped on exit,
# error or Ctrl-C. Needs curl, jq and sqlite3 (scripts/install-deps.sh).
set -euo pipefail

TOUR_ROOT=$(cd "$(dirname "$0")/.." && pwd)
build_dir=$TOUR_ROOT/build/release
out_dir=
quick=0
check=0
while (($#)); do
  case $1 in
    --build-dir) build_dir=${2:?--build-dir needs a directory}; shift ;;
    --out) out_dir=${2:?--out needs a directory}; shift ;;
    --quick) quick=1 ;;
    --check) check=1 ;;
    *) echo "usage: tour.sh [--build-dir DIR] [--out DIR] [--quick] [--check]" >&2; exit 2 ;;
  esac
  shift
done
TOUR_BIN=$(cd "$build_dir" && pwd)

source "$TOUR_ROOT/scripts/tour/lib.sh"
source "$TOUR_ROOT/scripts/tour/act_payments.sh"
source "$TOUR_ROOT/scripts/tour/act_pipeline.sh"
source "$TOUR_ROOT/scripts/tour/act_crawl.sh"
source "$TOUR_ROOT/scripts/tour/report.sh"

for tool in curl jq sqlite3; do
  command -v "$tool" >/dev/null || tour_die "needs $tool (bash scripts/install-deps.sh)"
done
for bin in apps/paymentd/paymentd apps/load/weft-load apps/etl/weft-etl \
  apps/etl/weft-upstream apps/crawl/weft-crawl bench/weft-slow-server; do
  [[ -x $TOUR_BIN/$bin ]] || tour_die "no $TOUR_BIN/$bin (build it first: scripts/build.sh)"
done

if [[ -n $out_dir ]]; then
  mkdir -p "$out_dir"
  TOUR_WORK=$(cd "$out_dir" && pwd)
  [[ -z $(ls -A "$TOUR_WORK") ]] || tour_die "--out $out_dir is not empty"
else
  TOUR_WORK=$(mktemp -d "${TMPDIR:-/tmp}/weft-tour.XXXXXX")
fi
: >"$TOUR_WORK/results.env"
trap 'tour_stop_all' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$(tour_now_ms)
tour_act_payments $((quick ? 6 : 12))
tour_act_pipeline
tour_act_crawl
tour_result tour_seconds "$(awk -v ms=$(($(tour_now_ms) - t0)) 'BEGIN {printf "%.1f", ms / 1000}')"

tour_summary
tour_report "$TOUR_WORK/report.html"
echo "== the tour took $(tour_get tour_seconds) s; report: $TOUR_WORK/report.html"

((check)) || exit 0
failed=()
(($(tour_get load_spike_429) > 0)) || failed+=("no 429 during the spike")
(($(tour_get paymentd_rejected) > 0)) || failed+=("paymentd_rejected_total is 0")
(($(tour_get healthz_ok_before) == 1)) || failed+=("/healthz not ok before the spike")
(($(tour_get healthz_saturated_polls) > 0)) || failed+=("/healthz never saturated")
(($(tour_get healthz_ok_after) == 1)) || failed+=("/healthz not ok again after the spike")
(($(tour_get etl_breaker_to_open) > 0)) || failed+=("geo's breaker never opened")
(($(tour_get etl_breaker_to_closed) > 0)) || failed+=("geo's breaker never closed again")
(($(tour_get etl_retries_geo) > 0)) || failed+=("no retries to geo")
(($(tour_get etl_rows_partial) > 0)) || failed+=("no partial rows")
(($(tour_get etl_dead_letters) > 0)) || failed+=("no dead letters")
(($(tour_get crawl_ok) > 0)) || failed+=("no page crawled")
if ((${#failed[@]})); then
  printf 'tour check FAILED: %s\n' "${failed[@]}" >&2
  echo "tour: files kept in $TOUR_WORK" >&2
  exit 1
fi
echo "tour check: ok"
rm -rf "$TOUR_WORK"
