#!/usr/bin/env bash
# Large series reads beside report ingest (a benchmark, not a test): the reports/s and p50/p99
# latency of a Redis-backed server under a steady report load, while 0, 1 and READERS clients
# keep reading the largest series it serves (2,000 points at 15m: 30,000 one-minute buckets,
# all of them stored), and how many of those reads were answered, refused (503 `overloaded`)
# or not answered within 10 s. Rounds are interleaved. Needs wrk and redis-server
# (apt-get install -y wrk redis-server).
#
#   tests/bench/reads.sh                          # 2 rounds of 10 s, 8 report connections, 32 readers
#   ROUNDS=3 SECONDS_PER_RUN=8 READERS=64 tests/bench/reads.sh
#   BIN=/path/to/downradar tests/bench/reads.sh   # another build (e.g. before a change)
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-2}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONNECTIONS=${CONNECTIONS:-8}
READERS=${READERS:-32}
SERVICE=instagram

NEEDS="wrk redis-server redis-cli python3"
. tests/bench/common.sh

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  --logfile "$work/redis.log" &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis_url="redis://127.0.0.1:$redis_port/"

# 22 days of history up to now: every minute, ten cells of one service.
python3 - "$SERVICE" >"$work/history.csv" <<'EOF'
import sys, time
service = sys.argv[1]
now = int(time.time()) // 60 * 60
cells = [(r, p) for r in ("US", "DE", "GB", "FR", "BR") for p in ("login", "feed")]
print("timestamp,service,region,problem,count")
for t in range(now - 22 * 86400, now, 60):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    for region, problem in cells:
        print(f"{stamp},{service},{region},{problem},3")
EOF
export DOWNRADAR_REPORTER_SECRET=bench RUST_LOG=warn DOWNRADAR_RETENTION=30d
"$bin" import --redis-url "$redis_url" --input "$work/history.csv" 2>"$work/import.log"
port=$(free_port)
"$bin" serve --listen "127.0.0.1:$port" --redis-url "$redis_url" --no-detector 2>"$work/app.log" &
pids+=($!)
base="http://127.0.0.1:$port"
wait_http "$base/readyz"

# The largest series: 2,000 points at 15m, ending with the current quarter hour. Both ends
# are given, so that it stays 2,000 points (not 2,001, refused) when a quarter hour passes.
read -r since until < <(python3 -c 'import time
u = int(time.time()) // 900 * 900 + 900
f = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
print(f(u - 2000 * 900), f(u))')
series="/v1/services/$SERVICE/reports?resolution=15m&since=$since&until=$until"
curl -sf -o /dev/null "$base$series" || { echo "the series read failed" >&2; exit 1; }

# readers -> "reports/s p50 p99 errors answered/s refused/s timeouts"
measure() {
  local readers=$1 reader_pid=
  if [ "$readers" -gt 0 ]; then
    # The readers start first and stop after the report load.
    MODE=series SERIES_PATH=$series wrk -t1 -c"$readers" -d"$((SECONDS_PER_RUN + 2))s" --timeout 10s \
      -s tests/bench/load.lua "$base" >"$work/readers.out" &
    reader_pid=$!
    sleep 1
  fi
  local reports
  reports=$(RUN=$(date +%s%N) MODE=report wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" \
    -s tests/bench/load.lua "$base" | awk '/^RESULT/ {print $2, $3, $4, $5}')
  if [ -n "$reader_pid" ]; then
    wait "$reader_pid"
    # Answered: 2xx; refused: any other status (503 overloaded); timeouts: none in 10 s.
    awk -v r="$reports" -v s="$((SECONDS_PER_RUN + 2))" \
      '/^RESULT/ {printf "%s %.1f %.1f %d\n", r, ($6 - $7) / s, $7 / s, $8}' "$work/readers.out"
  else
    echo "$reports - - -"
  fi
}

echo "machine: $(nproc) cores; $ROUNDS rounds of ${SECONDS_PER_RUN} s, $CONNECTIONS report connections" >&2
printf '%-6s %-8s %10s %8s %8s %7s %11s %10s %9s\n' round readers reports/s p50_ms p99_ms errors reads_ok/s refused/s timeouts
for round in $(seq "$ROUNDS"); do
  for readers in 0 1 "$READERS"; do
    read -r rps p50 p99 errors ok refused timeouts <<<"$(measure "$readers")"
    printf '%-6s %-8s %10s %8s %8s %7s %11s %10s %9s\n' "$round" "$readers" "$rps" "$p50" "$p99" "$errors" "$ok" "$refused" "$timeouts"
  done
done
