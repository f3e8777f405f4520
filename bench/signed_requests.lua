-- wrk script: POST pre-signed webhooks from a file (one per line: id \t timestamp \t signature \t body),
-- each thread starting at its own slice so no webhook-id is sent twice. Prints one RESULT line.
local threads_seen = 0

function setup(thread)
  thread:set("tid", threads_seen)
  threads_seen = threads_seen + 1
end

local requests = {}
local index = 0

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  local lines = {}
  for line in io.lines(path) do lines[#lines + 1] = line end
  local slice = math.floor(#lines / nthreads)
  for i = tid * slice + 1, (tid + 1) * slice do
    local id, ts, sig, body = lines[i]:match("([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)")
    requests[#requests + 1] = wrk.format("POST", wrk.path, {
      ["webhook-id"] = id, ["webhook-timestamp"] = ts, ["webhook-signature"] = sig,
      ["content-type"] = "application/json"}, body)
  end
end

function request()
  index = index + 1
  if index > #requests then index = 1 end
  return requests[index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d non2xx=%d socket_errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
