-- wrk script: kf/send_msg to the customers listed in the file IDS (one
-- external_userid a line, each with a fresh customer message, so five
-- sends each are within WeCom's limit), round robin. Needs TOKEN, KF, IDS.
local token = os.getenv("TOKEN")
local kf = os.getenv("KF")

local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  ids = {}
  for line in io.lines(os.getenv("IDS")) do
    ids[#ids + 1] = line
  end
  n, errors, limited = id, 0, 0
  path = "/cgi-bin/kf/send_msg?access_token=" .. token
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local to = ids[(n % #ids) + 1]
  local body = string.format(
    '{"touser":"%s","open_kfid":"%s","msgtype":"text","text":{"content":"answer %d"}}', to, kf, n)
  return wrk.format(nil, path, nil, body)
end

function response(status, headers, body)
  if body:find('"errcode":95001') then
    limited = limited + 1
  elseif status ~= 200 or not body:find('^{"errcode":0') then
    errors = errors + 1
  end
end

function done(summary, latency, requests)
  local errs, lim = 0, 0
  for _, t in ipairs(threads) do
    errs = errs + t:get("errors")
    lim = lim + t:get("limited")
  end
  local rps = summary.requests / (summary.duration / 1e6)
  io.write(string.format("RESULT path=send_msg requests=%d req_per_s=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f failed_requests=%d over_limit_95001=%d\n",
    summary.requests, rps, latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000, errs, lim))
end
