# scripts/tour/act_crawl.sh: act 3, weft-crawl over a local site (sourced by tour.sh).
# shellcheck shell=bash
#
# The site is weft-slow-server (bench/crawl/slow_server.c), the crawler benchmark's
# server: /page/0 .. /page/399, each a small HTML page answered after 25 ms. The crawl
# gets the 400 pages and 8 that do not exist (/page/400 .. /page/407: 404, reported as
# http_status errors) with at most 16 requests in flight (--concurrency 16 --per-host
# 16), so about 400 x 25 ms / 16 = 0.6 s of waiting on the server.

tour_act_crawl() {
  local dir=$TOUR_WORK/act3 addr
  mkdir -p "$dir"
  echo "tour: act 3: weft-crawl over a local site" >&2
  tour_start "$dir/server.log" "$TOUR_BIN/bench/weft-slow-server" --listen 127.0.0.1:0 \
    --delay 25 --pages 400
  addr=$(tour_wait_log "$dir/server.log" 's/^listening on //p')
  seq 0 407 | sed "s|^|http://$addr/page/|" >"$dir/urls.txt"
  "$TOUR_BIN/apps/crawl/weft-crawl" --concurrency 16 --per-host 16 --timeout 5s \
    --out "$dir/results.jsonl" - <"$dir/urls.txt" 2>"$dir/crawl.log" ||
    tour_die "weft-crawl failed: $(tail -3 "$dir/crawl.log")"
  tour_stop_all

  local out=$dir/results.jsonl
  tour_result crawl_urls "$(wc -l <"$dir/urls.txt")"
  tour_result crawl_results "$(wc -l <"$out")"
  tour_result crawl_ok "$(jq -s '[.[] | select(.status == 200 and .error == null)] | length' "$out")"
  tour_result crawl_errors "$(jq -s '[.[] | select(.error != null)] | length' "$out")"
  tour_result crawl_error_kinds \
    "$(jq -rs '[.[] | .error // empty] | group_by(.) | map("\(.[0])=\(length)") | join(",")' "$out")"
  tour_result crawl_bytes "$(jq -s '[.[] | .bytes // 0] | add' "$out")"
  tour_result crawl_p50_ms "$(jq -s '[.[] | .duration_ms] | sort | .[length / 2 | floor]' "$out")"
  # "weft-crawl: N results, ..., 0.71s, 574.6 pages/s": the crawler's own wall time.
  tour_result crawl_seconds "$(sed -n 's/^weft-crawl: .*, \([0-9.]*\)s, [0-9.]* pages\/s.*/\1/p' \
    "$dir/crawl.log")"
  tour_result crawl_pages_per_s "$(sed -n 's/^weft-crawl: .*, \([0-9.]*\) pages\/s.*/\1/p' \
    "$dir/crawl.log")"
}
