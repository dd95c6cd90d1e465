-- POST the request bodies listed in $BENCH_MANIFEST ("path<TAB>body file" per line) in turn.
-- $BENCH_LIMIT > 0 exits after that many responses (no latency figures then). One JSON line is printed.
local manifest = assert(os.getenv("BENCH_MANIFEST"), "set BENCH_MANIFEST")
local limit = tonumber(os.getenv("BENCH_LIMIT") or "0")
local reqs = {}
local i = 0

-- Requests are built in init(), after wrk has put the Host header into wrk.headers: built at load
-- time they carried no Host, which HTTP/1.1 requires (gunicorn let it pass, most servers answer 400).
function init(args)
  for line in io.lines(manifest) do
    local path, file = line:match("^([^\t]+)\t(.+)$")
    local f = assert(io.open(file, "rb"))
    local body = f:read("*a")
    f:close()
    reqs[#reqs + 1] = wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
  end
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end

if limit > 0 then
  -- wrk itself only stops at -d: after `limit` responses print the summary and exit (use -t 1).
  local seen, bad, started = 0, 0, os.time()
  function response(status, headers, body)
    seen = seen + 1
    if status >= 400 then
      bad = bad + 1
    end
    if seen >= limit then
      io.write(string.format(
        'BENCH {"requests": %d, "duration_us": %d, "connect": 0, "read": 0, "write": 0, "status": %d, '
          .. '"timeout": 0, "p50_us": 0, "p99_us": 0, "max_us": 0}\n',
        seen, math.max(1, os.time() - started) * 1000000, bad))
      io.flush()
      os.exit(0)
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, '
      .. '"timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
