#!/usr/bin/env python3
"""How many slow ramps the detector finds on a service that has nothing else going on.

The simulations mix ramps with every other kind of outage, on services whose traffic is
shaped by many countries. This checks the one thing a slow ramp asks of a baseline: that the
expectation does not climb with the counts. For each combination of

- a rate of 0.3, 1 or 3 reports a minute at the day's mean (0.5 to 1.5 times that over the
  day, one country, one problem),
- counts that are Poisson, or negative binomial with k = 5 (the simulator's),
- a ramp to 4 or 6 times the usual count,
- seeds 1, 2 and 3,

it writes 20 days of one-minute counts with a ramp every other day from the fourth (day 3
of days 0 to 19; at a random time between 08:00 and 20:00 UTC: a linear rise over 45
minutes, then an hour on top), runs `downradar backtest` on them at the default configuration, and counts the ramps
with an incident opened between 2 minutes before the rise and its end, and the incidents
opened anywhere else.

With `--quiet-day` it checks the other side of a slow baseline instead: the same service at
1, 3 and 10 reports a minute (k = 5), with no ramps, but a day (day 10) at 0.3 or 0.5 times
the usual counts, seeds 1 to 5; it counts the incidents opened on the day after the quiet
one, when traffic is back to usual, and on the other days. Every one of them is false.

Run from the repository root, after `cargo build --release`:

    python3 tests/tools/ramps/run.py                 # target/release/downradar
    python3 tests/tools/ramps/run.py --binary PATH   # another build, to compare
    python3 tests/tools/ramps/run.py --quiet-day

Rows go to stdout as they finish, the totals last. Needs Python 3.11 and its standard
library only; takes a few seconds.
"""

import datetime as dt
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lone_service import arguments, counts_csv, daily_mean, opened_at, poisson  # noqa: E402

DAYS = 20
RISE = 45  # minutes to the top
TOP = 60  # minutes on top
START = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)



QUIET_DAY = 10


def counts(
    rate: float, peak: float, k: float, seed: int, quiet: float | None = None
) -> tuple[str, list[int]]:
    """The counts CSV of one run and the minute each ramp starts (none with `quiet`: then
    day `QUIET_DAY` runs at `quiet` times the usual counts)."""
    rng = random.Random(seed)
    ramps = [] if quiet is not None else [
        d * 1440 + rng.randrange(8 * 60, 20 * 60) for d in range(3, DAYS, 2)
    ]
    counts = []
    for m in range(DAYS * 1440):
        mean = daily_mean(rate, m)
        for r in ramps:
            if 0 <= m - r < RISE:
                mean *= 1 + (peak - 1) * (m - r) / RISE
            elif RISE <= m - r < RISE + TOP:
                mean *= peak
        if quiet is not None and m // 1440 == QUIET_DAY:
            mean *= quiet
        if k:
            mean = rng.gammavariate(k, mean / k)
        counts.append(poisson(rng, mean))
    return counts_csv(START, counts), ramps


def opened(binary: Path, text: str) -> list[float]:
    """The minutes (from the start) at which the backtest of `text` opened incidents."""
    start = START.timestamp()
    return [(at - start) / 60 for at in opened_at(binary, text)]


def run(binary: Path, rate: float, peak: float, k: float, seed: int) -> tuple[int, int, int]:
    """Ramps found, ramps, and incidents opened outside every ramp."""
    text, ramps = counts(rate, peak, k, seed)
    at = opened(binary, text)
    within = lambda o, r: r - 2 <= o <= r + RISE + TOP
    found = sum(any(within(o, r) for o in at) for r in ramps)
    elsewhere = sum(not any(within(o, r) for r in ramps) for o in at)
    return found, len(ramps), elsewhere


def quiet_days(binary: Path) -> None:
    """The `--quiet-day` table."""
    print("| reports/min | quiet day at | seed | opened the day after | opened on other days |")
    print("|---|---|---|---|---|")
    totals = [0, 0]
    for rate in (1.0, 3.0, 10.0):
        for quiet in (0.3, 0.5):
            for seed in (1, 2, 3, 4, 5):
                text, _ = counts(rate, 1.0, 5.0, seed, quiet)
                days = [int(o // 1440) for o in opened(binary, text)]
                after = sum(d == QUIET_DAY + 1 for d in days)
                print(f"| {rate:g} | {quiet:g}× | {seed} | {after} | {len(days) - after} |",
                      flush=True)
                totals = [totals[0] + after, totals[1] + len(days) - after]
    print(f"\nincidents opened the day after the quiet day: {totals[0]}; "
          f"on other days: {totals[1]} (30 runs of {DAYS} days)")


def main() -> None:
    args = arguments(__doc__, "--quiet-day", "count false incidents around a quiet day instead")
    if args.quiet_day:
        quiet_days(args.binary)
        return
    print("| counts | reports/min | peak | seed | ramps found | opened elsewhere |")
    print("|---|---|---|---|---|---|")
    totals = [0, 0, 0]
    for k in (0.0, 5.0):
        for rate in (0.3, 1.0, 3.0):
            for peak in (4.0, 6.0):
                for seed in (1, 2, 3):
                    found, ramps, elsewhere = run(args.binary, rate, peak, k, seed)
                    kind = f"NB k={k:g}" if k else "Poisson"
                    print(f"| {kind} | {rate:g} | {peak:g}× | {seed} | {found}/{ramps} | {elsewhere} |",
                          flush=True)
                    totals = [a + b for a, b in zip(totals, (found, ramps, elsewhere))]
    print(f"\nramps found: {totals[0]} of {totals[1]}; incidents opened elsewhere: {totals[2]}")


if __name__ == "__main__":
    main()
