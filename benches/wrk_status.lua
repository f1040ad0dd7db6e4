-- wrk script for benches/load.py: counts every response by status code
-- (wrk itself only tells 2xx/3xx from the rest) and prints one
-- "status CODE COUNT" line per code and thread when the run ends.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do
      io.write(string.format("status %d %d\n", code, n))
    end
  end
end
