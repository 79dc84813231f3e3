-- wrk script: customer messages through the simulation port's batch
-- endpoint, BATCH text messages per request, from CUSTOMERS customers
-- picked at random. Needs TOKEN, CHANNEL and KF in the environment.
local token = os.getenv("TOKEN")
local channel = os.getenv("CHANNEL")
local kf = os.getenv("KF")
local batch = tonumber(os.getenv("BATCH") or "1")
local customers = tonumber(os.getenv("CUSTOMERS") or "100000")

local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  n, errors, failed_actions = 0, 0, 0
  path = "/sim/customer/batch?access_token=" .. token
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local actions = {}
  for i = 1, batch do
    n = n + 1
    local c = math.random(customers)
    actions[i] = string.format(
      '{"type":"message","customer":"k%d","open_kfid":"%s","client_msgid":"t%d-%d","msgtype":"text","text":{"content":"hello %d"}}',
      c, kf, id, n, n)
  end
  local body = '{"channel_id":"' .. channel .. '","actions":[' .. table.concat(actions, ",") .. ']}'
  return wrk.format(nil, path, nil, body)
end

function response(status, headers, body)
  if status ~= 200 or not body:find('^{"errcode":0') then
    errors = errors + 1
  end
  for _ in body:gmatch('"errcode":[1-9%-]') do
    failed_actions = failed_actions + 1
  end
end

function done(summary, latency, requests)
  local errs, failed = 0, 0
  for _, t in ipairs(threads) do
    errs = errs + t:get("errors")
    failed = failed + t:get("failed_actions")
  end
  local rps = summary.requests / (summary.duration / 1e6)
  io.write(string.format("RESULT path=customer_message batch=%d requests=%d req_per_s=%.0f msgs_per_s=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f http_errors=%d failed_requests=%d failed_actions=%d\n",
    batch, summary.requests, rps, rps * batch, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    errs, failed))
end
