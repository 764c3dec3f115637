-- wrk script: a ~1.4 KB chat completion request, streamed when BENCH_STREAM=true.
-- The same request (and Authorization header) goes to the gateway and, directly, to the mock
-- upstream, which ignores the key.
local prompt = string.rep("Summarise the quarterly figures for the board in three bullet points. ", 20)
local stream = os.getenv("BENCH_STREAM") or "false"
wrk.method = "POST"
wrk.body = '{"model":"bench-model","stream":' .. stream ..
  ',"messages":[{"role":"user","content":"' .. prompt .. '"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("PORTCULLIS_KEY") or "")
