-- wrk script of scripts/perf/wrk.py: POSTs a message to one of CONVERSATIONS conversations (named PREFIX-N), each
-- addressed to the user RECIPIENT, with the bearer TOKEN, on PATH; prints one RESULT line for the caller to parse.
local token, recipient, path = os.getenv("TOKEN"), os.getenv("RECIPIENT"), os.getenv("SEND_PATH")
local conversations = tonumber(os.getenv("CONVERSATIONS") or "1000")
local prefix = os.getenv("PREFIX") or "perf"
local n = 0

function request()
  n = n + 1
  local body = string.format('{"conversation_id":"%s-%d","content":"hello from the performance run","recipient_id":"%s"}',
    prefix, n % conversations, recipient)
  return wrk.format("POST", path, { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d errors=%d duration_us=%d p50_us=%d p99_us=%d\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, summary.duration, latency:percentile(50),
    latency:percentile(99)))
end
