#!/usr/bin/env bash
# Backtest speed benchmark (not a test): `downradar backtest` over 30 days of one-minute
# buckets for 12 services (the first 12 of the built-in catalog, about 40 region x problem
# cells each: about 2.1 million rows from `downradar simulate`), with a catalog of those 12
# services, beside a naive Python read-and-sum of the same file as the reference measured in
# the same run. Rounds are interleaved; every time is printed, then the medians. Also prints
# the backtest's peak memory (maximum resident set). Needs GNU time (apt-get install -y time).
#
#   tests/bench/backtest.sh                       # 3 rounds, seed 1
#   ROUNDS=5 SEED=2 tests/bench/backtest.sh
#   BIN=/path/to/downradar tests/bench/backtest.sh   # another build (e.g. before a change)
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
SEED=${SEED:-1}
SERVICES=12

[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install -y time" >&2; exit 1; }
cargo build --release --quiet
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/downradar}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The first $SERVICES services of the built-in catalog, their dependencies among themselves.
python3 - "$SERVICES" src/catalog/default.toml >"$work/catalog.toml" <<'EOF'
import json, sys, tomllib
n, path = int(sys.argv[1]), sys.argv[2]
services = tomllib.load(open(path, "rb"))["service"][:n]
ids = {s["id"] for s in services}
for s in services:
    print("[[service]]")
    for key in ("id", "name", "problems"):
        print(f"{key} = {json.dumps(s[key])}")
    deps = [d for d in s.get("depends_on", []) if d in ids]
    if deps:
        print(f"depends_on = {json.dumps(deps)}")
    print()
EOF
"$bin" simulate --catalog "$work/catalog.toml" --days 30 --seed "$SEED" \
  --output "$work/counts.csv" --truth "$work/truth.json" 2>/dev/null
echo "input: $(($(wc -l <"$work/counts.csv") - 1)) rows, $SERVICES services, 30 days; $(nproc) cores; $ROUNDS rounds" >&2

seconds() { # command... -> wall seconds and peak KiB of the command
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || {
    cat "$work/stderr" >&2
    exit 1
  }
  cat "$work/time"
}
backtests=()
pythons=()
for round in $(seq "$ROUNDS"); do
  read -r b kib < <(seconds "$bin" backtest --catalog "$work/catalog.toml" --input "$work/counts.csv")
  read -r p _ < <(seconds python3 -c '
import csv, collections, sys
sums = collections.Counter()
rows = csv.reader(open(sys.argv[1]))
next(rows)
for row in rows:
    sums[row[1]] += int(row[4])
' "$work/counts.csv")
  echo "round $round: backtest ${b} s (peak ${kib} KiB), python read-and-sum ${p} s" >&2
  backtests+=("$b")
  pythons+=("$p")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
echo "median: backtest $(median "${backtests[@]}") s, python read-and-sum $(median "${pythons[@]}") s (target: backtest under 5 s)"
