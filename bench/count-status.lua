-- Counts responses by status class so goodput (2xx) and shed load (503) can be told apart.
local counts = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, shed, other = 0, 0, 0
end

response = function(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1
  elseif status == 503 then shed = shed + 1
  else other = other + 1 end
end

request = function()
  return wrk.format("POST", "/counters/load/incr", nil, "")
end

function done(summary, latency, requests)
  local total_ok, total_shed, total_other = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_shed = total_shed + thread:get("shed")
    total_other = total_other + thread:get("other")
  end
  io.write(string.format("STATUS ok=%d shed=%d other=%d\n", total_ok, total_shed, total_other))
end
