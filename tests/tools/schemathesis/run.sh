#!/usr/bin/env bash
# Fuzzes the running API against its own OpenAPI spec with Schemathesis, with all its checks,
# on the embedded store and on Redis, each twice: a server as it starts (no history, no
# incidents), then one with incidents (`--demo`: synthetic traffic whose first outage opens
# within seconds, so incident records, the outages ranking and the spec's links from the
# listings to an incident are exercised with real data). Any server error or any response
# that the spec does not describe fails the run.
#
#   tests/tools/schemathesis/run.sh            # both stores
#   tests/tools/schemathesis/run.sh memory     # one store
#
# Schemathesis comes from PyPI into a virtual environment under target/ (made on first use).
# The server is the debug build (or $BIN); Redis is a private redis-server on a free loopback port.
# GET /v1/events is left out: it is an endless stream, which a request-response fuzzer can only
# time out on (tests/api/events.rs tests it with real SSE clients).
# A run once failed on an error inside the fuzzer, not a finding: Hypothesis, parsing
# Schemathesis's own sources, hit CPython 3.11's "AST constructor recursion depth mismatch"
# (python/cpython#106905; the counter it checks is shared by threads). So one worker (no
# slower here: 16 s either way), and a run that fails on that error alone is run once more.
set -euo pipefail
cd "$(dirname "$0")/../../.."

SCHEMATHESIS_VERSION=4.32.5
venv=target/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi
# BIN: a downradar binary to fuzz instead of the debug build.
bin=${BIN:-}
if [ -z "$bin" ]; then
  cargo build --quiet
  bin=${CARGO_TARGET_DIR:-target}/debug/downradar
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {  # url
  for _ in $(seq 1 200); do
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" \
      2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "no answer from $1" >&2
  return 1
}

wait_for_incident() {  # url of a listing of one incident
  for _ in $(seq 1 300); do
    if python3 -c 'import json, sys, urllib.request
sys.exit(not json.load(urllib.request.urlopen(sys.argv[1], timeout=1))["incidents"])' "$1" \
      2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "no incident at $1 after 300 tries, 0.1 s apart" >&2
  return 1
}

pids=()
work=$(mktemp -d)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fuzz() {  # memory | redis, then plain | demo
  local store=$1 mode=$2 port flags=(--detector-warmup 1h)
  port=$(free_port)
  if [ "$mode" = demo ]; then flags=(--demo); fi
  if [ "$store" = redis ]; then
    local redis_port
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$work" >/dev/null 2>&1 &
    pids+=($!)
    flags+=(--redis-url "redis://127.0.0.1:$redis_port/")
  fi
  DOWNRADAR_REPORTER_SECRET=schemathesis RUST_LOG=warn \
    "$bin" serve --listen "127.0.0.1:$port" "${flags[@]}" \
    >"$work/server-$store-$mode.log" 2>&1 &
  pids+=($!)
  # (`set -e` does not reach into a function called with `||`: each failure returns.)
  wait_for "http://127.0.0.1:$port/readyz" || return 1
  if [ "$mode" = demo ]; then
    wait_for_incident "http://127.0.0.1:$port/v1/incidents?limit=1" || return 1
  fi
  echo "== schemathesis on the $store store, $mode (port $port)"
  local attempt
  for attempt in 1 2; do
    if "$venv/bin/schemathesis" --config-file tests/tools/schemathesis/schemathesis.toml \
        run "http://127.0.0.1:$port/openapi.json" \
        --checks all \
        --exclude-path /v1/events \
        --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
        --request-timeout 10 \
        --workers 1 \
        --suppress-health-check all \
        --seed "${SCHEMATHESIS_SEED:-1}" \
        --generation-database none \
        --no-color | tee "$work/schemathesis-$store-$mode.out"; then
      return 0
    fi
    # Run again only when the fuzzer's own error is the whole of what failed.
    local out="$work/schemathesis-$store-$mode.out" errors
    errors=$(awk '/^Errors:/ {on = 1; next} on && /^$/ {on = 0} on' "$out")
    if [ "$attempt" = 1 ] && ! grep -q "^Failures:" "$out" &&
      grep -q "AST constructor recursion depth mismatch" "$out" &&
      [ "$(printf '%s\n' "$errors" | grep -c .)" = 1 ] &&
      printf '%s\n' "$errors" | grep -q "Runtime Error: 1$"; then
      echo "== schemathesis failed on CPython's AST error alone (see above); once more" >&2
      continue
    fi
    break
  done
  echo "schemathesis found problems on the $store store, $mode; server log:" >&2
  tail -n 50 "$work/server-$store-$mode.log" >&2
  return 1
}

stores=("${@:-memory}")
[ $# -eq 0 ] && stores=(memory redis)
status=0
for store in "${stores[@]}"; do
  for mode in plain demo; do
    fuzz "$store" "$mode" || status=1
    # Each run's server (a demo one makes traffic) and Redis stop before the next starts.
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
  done
done
exit $status
