-- wrk script for tests/bench/ingest.sh.
--   MODE=report: POST /v1/services/{id}/reports; every request is a new reporter (a unique
--                client_id, unique across runs too: RUN names the run, by default the
--                start time), spread over services, regions and problems, so each one takes
--                the whole counting path (dedup check, bucket and roll-up increments).
--                SHAPE=outage puts every reporter on one service, two countries and two
--                problems, as during an outage (the default spreads them over 200 cells).
--   MODE=healthz: GET /healthz, the ceiling of the HTTP stack on this machine.
--   MODE=series: GET SERIES_PATH (a large series read, for tests/bench/reads.sh).
-- done() prints one machine-readable line:
--   RESULT <rps> <p50 ms> <p99 ms> <errors> <requests> <non-2xx/3xx answers> <timeouts>
-- where errors counts failed connections, timeouts and answers other than 2xx/3xx, and
-- requests counts the answers received (of whatever status).

local mode = os.getenv("MODE") or "report"
local services = {
  { "tiktok", { "app", "login", "video-upload", "feed" } },
  { "netflix", { "streaming", "app", "login" } },
  { "whatsapp", { "messaging", "calls", "connection" } },
  { "aws", { "console", "api", "compute", "storage" } },
  { "discord", { "voice", "messaging", "login" } },
}
local regions = { "DE", "US", "JP", "BR", "NG", "AU", "FR", "IN", "GB", "MX" }
if os.getenv("SHAPE") == "outage" then
  -- An outage: every reporter on one service, in two countries and two problems.
  services = { { "tiktok", { "login", "app" } } }
  regions = { "US", "DE" }
end
local run = os.getenv("RUN") or tostring(os.time())
local threads = {}
local counter = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function request()
  if mode == "healthz" then
    return wrk.format("GET", "/healthz")
  elseif mode == "series" then
    return wrk.format("GET", os.getenv("SERIES_PATH"))
  end
  counter = counter + 1
  local s = services[counter % #services + 1]
  local body = string.format(
    '{"problem":"%s","region":"%s","client_id":"%s-%d-%d"}',
    s[2][counter % #s[2] + 1], regions[counter % #regions + 1], run, tid, counter)
  return wrk.format("POST", "/v1/services/" .. s[1] .. "/reports",
    { ["Content-Type"] = "application/json" }, body)
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %.0f %.3f %.3f %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors, summary.requests,
    summary.errors.status, summary.errors.timeout))
end
