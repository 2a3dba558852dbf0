#!/usr/bin/env bash
# Regenerates events.jsonl, the tour's sample input for weft-etl (scripts/tour.sh, act 2):
#   bash examples/tour/make-events.sh > examples/tour/events.jsonl
# Deterministic (no clock, no random source): 1200 valid events, ev-0000 .. ev-1199, over
# 150 users, 5 currencies and 1200 IPs, with three lines weft-etl cannot decode placed
# among them (lines 201, 602 and 1003), so every run stores exactly three dead letters.
set -euo pipefail
awk 'BEGIN {
  split("EUR USD GBP JPY CHF", cur, " ")
  for (i = 0; i < 1200; i++) {
    if (i == 200) print "{\"event_id\":\"ev-bad-1\",\"ts\":\"2024-05-01T12:00:00Z\",\"user_id\":"
    if (i == 600) print "{\"event_id\":\"ev-bad-2\",\"ts\":\"2024-05-01T12:10:00Z\",\"user_id\":\"u7\",\"ip\":\"10.9.9.9\",\"amount_cents\":100,\"currency\":\"euro\"}"
    if (i == 1000) print "not an event at all"
    printf "{\"event_id\":\"ev-%04d\",\"ts\":\"2024-05-01T%02d:%02d:%02dZ\",\"user_id\":\"u%d\",\"ip\":\"10.%d.%d.%d\",\"amount_cents\":%d,\"currency\":\"%s\"}\n",
      i, 12 + int(i / 3600), int(i / 60) % 60, i % 60, (i * 7) % 150,
      int(i / 65536), int(i / 256) % 256, i % 256, 100 + (i * 37) % 99900, cur[i % 5 + 1]
  }
}'
