-- wrk script: POST AdmissionReview bodies, cycling over a list of files (bounded run; loopback only).
-- usage: wrk -t1 -c8 -d10s -s admission.lua https://127.0.0.1:PORT/path -- /path/to/bodies.list
-- Copied from the shared benchmark kit (same request/response logic, so figures stay comparable
-- with docs/perf-anchors); added: `counts` is a global and done() prints it as one JSON line
-- ("wrk-status-counts {...}") so bench/webhook-load.sh can check that every answer was a 200.
local bodies = {}
local idx = 0
counts = {}
local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
end
function init(args)
  local list = args[1]
  for fname in io.lines(list) do
    local f = io.open(fname, "rb"); local b = f:read("*a"); f:close()
    bodies[#bodies + 1] = b
  end
  idx = math.random(#bodies)
end
function request()
  idx = idx % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[idx])
end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for status, n in pairs(c) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    parts[#parts + 1] = string.format('"%d":%d', status, n)
  end
  io.write("wrk-status-counts {" .. table.concat(parts, ",") .. "}\n")
end
