# scripts/tour/report.sh: the tour's text summary and its HTML report (sourced by tour.sh).
# shellcheck shell=bash
# Both read only $TOUR_WORK/results.env and the acts' files; the report is one
# self-contained file (weft-load's SVGs inlined, no scripts, no external resources).

tour_summary() {
  local g=tour_get
  cat <<EOF
== act 1: paymentd (4 workers x 20 ms = 200/s, queue 20), steady 100/s + spike 1500/s
   spike:  $($g load_spike_requests) requests, $($g load_spike_200) x 200, $($g load_spike_429) x 429, $($g load_spike_errors) errors, p99 $($g load_spike_p99_ms) ms
   steady: $($g load_steady_requests) requests, $($g load_steady_200) x 200, $($g load_steady_429) x 429 (during the spike), p99 $($g load_steady_p99_ms) ms
   /healthz: ok, then 503 saturated from $($g healthz_saturated_from_ms) ms to $($g healthz_saturated_until_ms) ms ($($g healthz_saturated_polls) polls), ok again: $( (($($g healthz_ok_after))) && echo yes || echo no)
   /metrics: paymentd_rejected_total $($g paymentd_rejected), confirmations answered 200: $($g paymentd_confirmed)
== act 2: weft-etl, geo flaky (10 % 503, down from 1.5 s to 3.5 s), $($g etl_seconds) s
   retries to geo: $($g etl_retries_geo) (geo answered 503 $($g upstream_geo_503) times)
   geo breaker: opened $($g etl_breaker_to_open) x, half-open $($g etl_breaker_to_half_open) x, closed $($g etl_breaker_to_closed) x
   rows: $($g etl_rows_complete) complete, $($g etl_rows_partial) partial (missing geo); dead letters: $($g etl_dead_letters)
== act 3: weft-crawl, $($g crawl_urls) URLs on a local site, --concurrency 16
   $($g crawl_ok) pages, $($g crawl_errors) errors ($($g crawl_error_kinds)), $($g crawl_seconds) s, $($g crawl_pages_per_s) pages/s, median $($g crawl_p50_ms) ms per page
EOF
}

tour_html_escape() { sed 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g'; }

# tour_html_rows FILE: each line's fields (split on tabs, or spaces without tabs) as a row.
tour_html_rows() {
  tour_html_escape <"$1" | awk -F'\t' '{if (NF == 1) n = split($0, f, " "); else n = split($0, f, "\t")
    printf "<tr>"; for (i = 1; i <= n; i++) printf "<td>%s</td>", f[i]; print "</tr>"}'
}

# tour_state_runs FILE: "ms value" lines collapsed to "from_ms to_ms value" runs.
tour_state_runs() {
  awk 'NR == 1 || $2 != v {if (NR > 1) print from, prev, v; from = $1; v = $2} {prev = $1}
       END {if (NR) print from, prev, v}' "$1"
}

tour_report() {
  local out=$1 w=$TOUR_WORK
  {
    cat <<EOF
<!doctype html><html><head><meta charset="utf-8"><title>weft tour</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em}
pre{background:#f4f4f4;padding:.6em}svg{max-width:100%;height:auto}</style></head><body>
<h1>weft tour</h1><p>$(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs, load average
$(cut -d' ' -f1-3 /proc/loadavg). Every number below was read from the tools' outputs
in <code>$w</code>.</p>
<h2>Summary</h2><pre>$(tour_summary | tour_html_escape)</pre>
<h2>Act 1: paymentd under a load spike</h2>
<p>weft-load, open loop, latency from each request's intended start. Steady run (100/s for
the whole act; the spike ran in its middle third):</p>
$(cat "$w/act1/steady.svg")
<p>Spike run (1500/s):</p>
$(cat "$w/act1/spike.svg")
<h3>/healthz over time</h3><table><tr><th>from ms</th><th>to ms</th><th>status</th></tr>
$(awk '{print $1, $3}' "$w/act1/healthz.txt" >"$w/act1/healthz.states"
      tour_state_runs "$w/act1/healthz.states" >"$w/act1/healthz.runs"
      tour_html_rows "$w/act1/healthz.runs")</table>
<h2>Act 2: the enrichment pipeline with a flaky API</h2>
<h3>geo's breaker over time (0 closed, 1 half-open, 2 open)</h3>
<table><tr><th>from ms</th><th>to ms</th><th>state</th></tr>
$(tour_state_runs "$w/act2/breaker.txt" >"$w/act2/breaker.runs"
      tour_html_rows "$w/act2/breaker.runs")</table>
<h3>Partial rows by missing API</h3><table><tr><th>missing</th><th>rows</th></tr>
$(tour_html_rows "$w/act2/partial.txt")</table>
<h3>Dead letters</h3><table><tr><th>origin</th><th>error</th></tr>
$(tour_html_rows "$w/act2/dead_letters.txt")</table>
<h2>Act 3: the crawler</h2><p>weft-crawl's own summary:</p>
<pre>$(tour_html_escape <"$w/act3/crawl.log")</pre>
</body></html>
EOF
  } >"$out"
}
