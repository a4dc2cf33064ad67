-- wrk script for bench/http.py: GET the first timeline page of a random contact.
-- wrk -s bench/timeline.lua URL -- IDS_FILE API_KEY [LIMIT]
-- IDS_FILE holds one contact id a line. At the end, one line "WRK_JSON {...}" gives the
-- figures (latency in microseconds) so the harness need not parse wrk's own text.

local thread_no = 0

function setup(thread)
  thread_no = thread_no + 1
  thread:set("thread_no", thread_no)
end

local ids = {}
local headers = {}
local limit = 50

function init(args)
  local path, key = args[1], args[2]
  limit = tonumber(args[3] or "50")
  for line in io.lines(path) do
    if #line > 0 then
      ids[#ids + 1] = line
    end
  end
  headers["Authorization"] = "Bearer " .. key
  headers["Accept"] = "application/json"
  -- Distinct, but repeatable, random sequences per thread.
  math.randomseed(1000 + (thread_no or 0))
end

function request()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/v1/contacts/" .. id .. "/timeline?limit=" .. limit, headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
