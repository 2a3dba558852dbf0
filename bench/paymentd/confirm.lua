-- confirm.lua: wrk script for paymentd (shared/specs/paymentd.md). Every request is a valid
-- POST /v1/payments/{id}/confirm whose id is unique per run and thread:
--   <run>-<thread>-<n>, with <run> from $PAYMENTD_BENCH_RUN (else the clock and a random
--   number), so that repeated runs against one server never replay a stored confirmation.
-- Each thread counts the responses by status; done() prints one line that
-- scripts/bench-paymentd.sh parses (key=value pairs, latencies in microseconds, of all
-- responses whatever their status):
--   paymentd-bench requests=N seconds=S rps=R ok=N200 shed=N429 other=N errors=E
--     p50_us=.. p90_us=.. p99_us=.. max_us=.. statuses=200:N,429:N,...
-- "other" counts every status except 200 and 429; "errors" wrk's socket errors
-- (connect, read, write, timeout), which are not responses.

local run = os.getenv("PAYMENTD_BENCH_RUN")
if not run or run == "" then
  math.randomseed(os.time())
  run = string.format("%d%04d", os.time(), math.random(0, 9999))
end

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("tid", next_thread)
  thread:set("run", run)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

local n = 0
local prefix
counts = {} -- global: done() reads it with thread:get
local headers = { ["Content-Type"] = "application/json" }
local body = '{"amount_cents":1250,"currency":"EUR","account":"acct-0001"}'

function init(args)
  prefix = "/v1/payments/" .. run .. "-" .. tid .. "-"
end

function request()
  n = n + 1
  return wrk.format("POST", prefix .. n .. "/confirm", headers, body)
end

function response(status, hdrs, resp_body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for status, c in pairs(t:get("counts")) do
      total[status] = (total[status] or 0) + c
    end
  end
  local codes, list, ok, shed, other = {}, {}, 0, 0, 0
  for status, c in pairs(total) do
    table.insert(codes, status)
    if status == 200 then
      ok = ok + c
    elseif status == 429 then
      shed = shed + c
    else
      other = other + c
    end
  end
  table.sort(codes)
  for _, status in ipairs(codes) do
    table.insert(list, status .. ":" .. total[status])
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "paymentd-bench requests=%d seconds=%.3f rps=%.1f ok=%d shed=%d other=%d errors=%d " ..
      "p50_us=%d p90_us=%d p99_us=%d max_us=%d statuses=%s\n",
    summary.requests, seconds, summary.requests / seconds, ok, shed, other,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, #list > 0 and table.concat(list, ",") or "none"))
end
