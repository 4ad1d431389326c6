-- wrk script: every request is PUT /kv/<random key> with a fixed 256-byte body, the write of bench-writes.sh.
-- Keys are drawn from a bounded space (KEYS below) so the in-memory app does not grow without limit during a run.
-- Each wrk thread seeds its own generator, so threads do not write the same key sequence.
local KEYS = 100000
local VALUE_BYTES = 256
local body = string.rep("v", VALUE_BYTES)
local headers = { ["Content-Type"] = "application/octet-stream" }

local thread_counter = 0
function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("thread_seed", thread_counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + (thread_seed or 0))
end

function request()
  local key = "k" .. math.random(0, KEYS - 1)
  return wrk.format("PUT", "/kv/" .. key, headers, body)
end
