-- wrk script: every request is POST /v3/kv/put through etcd 3.4's HTTP/JSON gateway with a random key from the
-- same bounded space as put-kv.lua and the same 256-byte value. The gateway wants base64 for key and value, so
-- the value on the wire is 344 characters but etcd stores exactly 256 bytes, like example-kv behind Tandem.
local KEYS = 100000
local VALUE_BYTES = 256
local headers = { ["Content-Type"] = "application/json" }

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(data)
  local out = {}
  for i = 1, #data, 3 do
    local a, b, c = data:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1)
      .. (b and b64chars:sub(c3 + 1, c3 + 1) or "=") .. (c and b64chars:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

local value64 = base64(string.rep("v", VALUE_BYTES))
-- Precompute the encoded keys once: base64 per request would cost wrk CPU that the Tandem run does not pay.
local keys64 = {}

local thread_counter = 0
function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("thread_seed", thread_counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + (thread_seed or 0))
end

function request()
  local i = math.random(0, KEYS - 1)
  local k = keys64[i]
  if k == nil then
    k = base64("k" .. i)
    keys64[i] = k
  end
  return wrk.format("POST", "/v3/kv/put", headers, '{"key":"' .. k .. '","value":"' .. value64 .. '"}')
end
