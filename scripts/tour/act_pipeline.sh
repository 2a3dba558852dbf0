# scripts/tour/act_pipeline.sh: act 2, weft-etl with one flaky API (sourced by tour.sh).
# shellcheck shell=bash
#
# Three weft-upstream processes (users, geo, fx), each answering after 20 ms; geo also
# fails 10 % of its requests with 503 and is down (connections refused) from 1.5 s to
# 3.5 s after it starts. weft-etl reads examples/tour/events.jsonl (1200 events and three
# undecodable lines) with 4 events enriched at once (about 8 s in all), --breaker-open 1s.
# Expected: the 503s are retried away; in the outage geo's calls fail after their retries,
# three failed calls in a row open geo's breaker, its probes fail while geo is down and
# the first probe after the outage closes it; the events whose geo call failed are stored
# "partial" (missing "geo"), the three bad lines are dead letters.
#
# weft-etl exits when the file is drained, and /metrics goes with it, so /metrics is
# scraped every 200 ms while it runs: the last scrape gives the counters, the series of
# scrapes gives geo's breaker state over time. Rows and dead letters come from the SQLite
# file, which outlives the process.

tour_act_pipeline() {
  local dir=$TOUR_WORK/act2 api etl_pid port t0 state extra=()
  local -A addr
  mkdir -p "$dir"
  echo "tour: act 2: the enrichment pipeline with a flaky geo API" >&2
  for api in users geo fx; do
    extra=()
    [[ $api == geo ]] && extra=(--error-rate 0.1 --outage 1500ms:2s)
    tour_start "$dir/upstream-$api.log" "$TOUR_BIN/apps/etl/weft-upstream" --api "$api" \
      --listen 127.0.0.1:0 --latency-median 20ms "${extra[@]}"
  done
  for api in users geo fx; do addr[$api]=$(tour_listen_addr "$dir/upstream-$api.log"); done

  t0=$(tour_now_ms)
  tour_start "$dir/etl.log" "$TOUR_BIN/apps/etl/weft-etl" \
    --source "file:$TOUR_ROOT/examples/tour/events.jsonl" --sink "sqlite:$dir/etl.db" \
    --users "http://${addr[users]}" --geo "http://${addr[geo]}" --fx "http://${addr[fx]}" \
    --listen 127.0.0.1:0 --debug-listen '' --enrich-concurrency 4 --breaker-open 1s
  etl_pid=${TOUR_PIDS[-1]}
  port=$(tour_wait_log "$dir/etl.log" 's/.*"msg":"started".*"listen_port":\([0-9]*\).*/\1/p')
  while kill -0 "$etl_pid" 2>/dev/null; do
    if curl -s --max-time 1 "http://127.0.0.1:$port/metrics" >"$dir/scrape.tmp" &&
      [[ -s $dir/scrape.tmp ]]; then
      mv "$dir/scrape.tmp" "$dir/metrics.txt"
      state=$(tour_metric "$dir/metrics.txt" 'weft_breaker_state{breaker="geo"}')
      echo "$(($(tour_now_ms) - t0)) $state" >>"$dir/breaker.txt"
    fi
    sleep 0.2
  done
  wait "$etl_pid" || tour_die "weft-etl failed: $(tail -3 "$dir/etl.log")"
  tour_result etl_seconds "$(awk -v ms=$(($(tour_now_ms) - t0)) 'BEGIN {printf "%.1f", ms / 1000}')"
  [[ -s $dir/metrics.txt ]] || tour_die "no /metrics scrape from weft-etl"

  local m=$dir/metrics.txt db=$dir/etl.db
  tour_result etl_retries_geo "$(tour_metric "$m" 'etl_enrich_retries_total{api="geo"}')"
  for state in open half_open closed; do
    tour_result "etl_breaker_to_$state" \
      "$(tour_metric "$m" "weft_breaker_transitions_total{breaker=\"geo\",to=\"$state\"}")"
  done
  tour_result etl_rows_complete \
    "$(sqlite3 "$db" "SELECT count(*) FROM enriched_events WHERE status = 'complete'")"
  tour_result etl_rows_partial \
    "$(sqlite3 "$db" "SELECT count(*) FROM enriched_events WHERE status = 'partial'")"
  tour_result etl_dead_letters "$(sqlite3 "$db" "SELECT count(*) FROM dead_letters")"
  sqlite3 -separator ' ' "$db" "SELECT missing, count(*) FROM enriched_events
    WHERE status = 'partial' GROUP BY missing" >"$dir/partial.txt"
  sqlite3 -separator $'\t' "$db" "SELECT origin, error FROM dead_letters ORDER BY rowid" \
    >"$dir/dead_letters.txt"
  for api in users geo fx; do
    curl -s --max-time 2 "http://${addr[$api]}/metrics" >"$dir/upstream-$api.metrics" || true
  done
  tour_result upstream_geo_503 \
    "$(tour_metric "$dir/upstream-geo.metrics" 'upstream_requests_total{api="geo",code="503"}')"
  tour_stop_all
}
