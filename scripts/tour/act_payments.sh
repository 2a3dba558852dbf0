# scripts/tour/act_payments.sh: act 1, paymentd under a load spike (sourced by tour.sh).
# shellcheck shell=bash
#
# paymentd runs with a fixed capacity: 4 workers, each confirmation held --work-ms 20, so
# 200 confirmations/s, and a queue of 20. One weft-load run offers a steady 100/s (half
# the capacity) for the whole act and a second one, started a third of the way in, a
# spike of 1500/s (7.5 x the capacity) for a third of the act. Meanwhile /healthz is
# polled every 100 ms. Expected: the spike fills the queue, paymentd answers 429 to what
# it cannot take (both runs see them), /healthz says 503 "saturated"; once the spike ends
# the queue drains in about 100 ms and the steady run is answered 200 again.

# tour_healthz_poll URL OUT N: N polls, 100 ms apart: "ms_since_start http_code status".
tour_healthz_poll() {
  local url=$1 out=$2 n=$3 t0 code status
  t0=$(tour_now_ms)
  for _ in $(seq "$n"); do
    code=$(curl -s -o "$out.body" -w '%{http_code}' --max-time 1 "$url" || true)
    status=$(jq -r '.status // "-"' "$out.body" 2>/dev/null || echo -)
    echo "$(($(tour_now_ms) - t0)) $code $status" >>"$out"
    sleep 0.1
  done
  rm -f "$out.body"
}

# tour_load NAME RATE DURATION ADDR: one open-loop weft-load run, its JSON and SVG in act1/.
tour_load() {
  local name=$1 rate=$2 duration=$3 addr=$4 dir=$TOUR_WORK/act1
  "$TOUR_BIN/apps/load/weft-load" --rate "$rate" --duration "$duration" --quiet \
    --timeout 5s --header 'Content-Type: application/json' \
    --body '{"amount_cents":{{rand:100000}},"currency":"EUR","account":"acct-{{rand:50}}"}' \
    --json "$dir/$name.json" --svg "$dir/$name.svg" \
    "http://$addr/v1/payments/{{id}}/confirm" >"$dir/$name.out" 2>&1
}

tour_act_payments() {
  local dir=$TOUR_WORK/act1 act_s=$1 addr t
  mkdir -p "$dir"
  echo "tour: act 1: paymentd under a load spike (${act_s}s)" >&2
  tour_start "$dir/paymentd.log" "$TOUR_BIN/apps/paymentd/paymentd" --listen 127.0.0.1:0 \
    --debug-listen '' --store memory: --workers 4 --work-ms 20 --queue 20
  local paymentd_pid=${TOUR_PIDS[-1]}
  addr=$(tour_listen_addr "$dir/paymentd.log")

  tour_healthz_poll "http://$addr/healthz" "$dir/healthz.txt" $((act_s * 10)) &
  local poll_pid=$!
  TOUR_PIDS+=("$poll_pid")
  tour_load steady 100 "${act_s}s" "$addr" &
  local steady_pid=$!
  TOUR_PIDS+=("$steady_pid")
  sleep $((act_s / 3))
  tour_load spike 1500 "$((act_s / 3))s" "$addr" || tour_die "weft-load (spike) failed"
  wait "$steady_pid" || tour_die "weft-load (steady) failed: $(tail -2 "$dir/steady.out")"
  wait "$poll_pid" || true
  curl -s --max-time 2 "http://$addr/metrics" >"$dir/metrics.txt" ||
    tour_die "no /metrics from paymentd"
  tour_stop "$paymentd_pid"

  for t in steady spike; do
    tour_result "load_${t}_requests" "$(jq '.requests' "$dir/$t.json")"
    tour_result "load_${t}_200" "$(jq '.status["200"] // 0' "$dir/$t.json")"
    tour_result "load_${t}_429" "$(jq '.status["429"] // 0' "$dir/$t.json")"
    tour_result "load_${t}_errors" "$(jq '.errors_total' "$dir/$t.json")"
    tour_result "load_${t}_p50_ms" "$(jq '.latency_ms.p50 * 10 | round / 10' "$dir/$t.json")"
    tour_result "load_${t}_p99_ms" "$(jq '.latency_ms.p99 * 10 | round / 10' "$dir/$t.json")"
  done
  tour_result paymentd_rejected "$(tour_metric "$dir/metrics.txt" paymentd_rejected_total)"
  tour_result paymentd_confirmed \
    "$(tour_metric "$dir/metrics.txt" 'paymentd_http_requests_total{route="confirm",code="200"}')"
  # The health story: ok before the first "saturated", saturated polls, ok after the last.
  awk '$3 == "saturated" {if (!first) first = $1; last = $1; n++}
       $3 == "ok" {if (!first) okb = 1; lastok = $1}
       END {oka = n > 0 && lastok > last
            printf "healthz_ok_before=%d\nhealthz_saturated_polls=%d\n", okb, n
            printf "healthz_ok_after=%d\nhealthz_saturated_from_ms=%d\n", oka, first
            printf "healthz_saturated_until_ms=%d\n", last}' \
    "$dir/healthz.txt" >>"$TOUR_WORK/results.env"
}
