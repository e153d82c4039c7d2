#!/usr/bin/env bash
# Loopback ingest benchmark (not a test): reports/s and p50/p99 latency for
#   1. GET /healthz            - the ceiling of the HTTP stack, measured in the same run
#   2. POST reports, embedded  - the in-memory store
#   3. POST reports, Redis     - a private redis-server (AOF on, fsync every second)
# Each is run ROUNDS times, interleaved; medians are reported, and the ratio to the ceiling is
# the median of the ratios within each round, because these machines are shared and noisy. Needs wrk and redis-server (apt-get install -y wrk redis-server).
#
#   tests/bench/ingest.sh                 # defaults: 5 rounds of 10 s, 64 connections
#   ROUNDS=5 DURATION=20s CONNECTIONS=128 tests/bench/ingest.sh
#   BIN=/path/to/downradar tests/bench/ingest.sh   # another build (e.g. before a change)
#   SHAPE=outage tests/bench/ingest.sh    # every report in a few cells of one service
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}

NEEDS="wrk redis-server"
. tests/bench/common.sh

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec \
  --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
mem_port=$(free_port)
red_port=$(free_port)
export DOWNRADAR_REPORTER_SECRET=bench RUST_LOG=warn
"$bin" serve --listen "127.0.0.1:$mem_port" 2>"$work/mem.log" &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
"$bin" serve --listen "127.0.0.1:$red_port" --redis-url "redis://127.0.0.1:$redis_port/" 2>"$work/redis-app.log" &
pids+=($!)
wait_http "http://127.0.0.1:$mem_port/healthz"
wait_http "http://127.0.0.1:$red_port/readyz"
# The detector's first tick (its warm-up) must not share the CPU with the first round.
wait_led() { for _ in $(seq 600); do curl -sf "$1/metrics" | grep -q '^downradar_detector_leader 1' && return 0; sleep 0.05; done; echo "the detector of $1 never led" >&2; exit 1; }
wait_led "http://127.0.0.1:$mem_port"
wait_led "http://127.0.0.1:$red_port"

run() { # mode port -> "rps p50 p99 errors"; every run its own reporters (RUN)
  RUN=$(date +%s%N) MODE=$1 wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" -s tests/bench/load.lua \
    "http://127.0.0.1:$2" | awk '/^RESULT/ {print $2, $3, $4, $5}'
}

echo "machine: $(nproc) cores; $ROUNDS rounds of $DURATION, $CONNECTIONS connections, $WRK_THREADS wrk thread(s), load shape ${SHAPE:-spread}" >&2
declare -A results
ratios_memory="" ratios_redis=""
for round in $(seq "$ROUNDS"); do
  h=$(run healthz "$red_port"); m=$(run report "$mem_port"); r=$(run report "$red_port")
  results[healthz]+="$h"$'\n'; results[memory]+="$m"$'\n'; results[redis]+="$r"$'\n'
  # Ratios are taken within a round, so a machine that slows down between rounds skews less.
  ratios_memory+="$(awk -v a="${m%% *}" -v b="${h%% *}" 'BEGIN {printf "%.3f", a / b}')"$'\n'
  ratios_redis+="$(awk -v a="${r%% *}" -v b="${h%% *}" 'BEGIN {printf "%.3f", a / b}')"$'\n'
  echo "round $round/$ROUNDS: healthz ${h%% *}/s, embedded ${m%% *}/s, redis ${r%% *}/s" >&2
done

median() { sort -n -k1 | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
printf '%-22s %10s %9s %9s %7s %12s\n' target reports/s p50_ms p99_ms errors vs_healthz
for name in healthz memory redis; do
  read -r rps p50 p99 errors <<<"$(printf '%s' "${results[$name]}" | median)"
  case $name in
    healthz) label="GET /healthz (ceiling)"; ratio=1.000 ;;
    memory) label="POST, embedded store"; ratio=$(printf '%s' "$ratios_memory" | median) ;;
    redis) label="POST, Redis store"; ratio=$(printf '%s' "$ratios_redis" | median) ;;
  esac
  printf '%-22s %10s %9s %9s %7s %11sx\n' "$label" "$rps" "$p50" "$p99" "$errors" "$ratio"
done
echo "(medians over $ROUNDS rounds; vs_healthz is the median of per-round ratios)" >&2
