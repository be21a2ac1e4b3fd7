-- wrk script: POST /subscribe with a unique address per request (thread id + counter).
-- `tid` is a global: setup() runs in the main Lua state and thread:set() writes the global of
-- each thread's own state (a `local tid` would shadow it and every thread would send the same
-- addresses).
local counter = 0
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
  counter = counter + 1
  local body = string.format("email=bench-%d-%d%%40example.org&name=Bench", tid, counter)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("RESULT requests=%d duration_us=%d non2xx=%d connect_errors=%d read_errors=%d timeouts=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, non2xx, summary.errors.connect, summary.errors.read,
    summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
