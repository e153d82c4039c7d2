#!/usr/bin/env python3
"""Whether an outage that comes back soon after it ended is reported again.

The simulations keep a service's outages an hour or more apart, so each is one incident;
real outages come back (a fix that did not hold, a second failure). For each combination of

- a rate of 1, 3 or 10 reports a minute at the day's mean (0.5 to 1.5 times that over the
  day, one country, one problem; counts negative binomial with k = 5, the simulator's),
- a return at 4, 6 or 10 times the usual count,
- 20 or 40 minutes between the end of the first outage and the return,
- seeds 1, 2 and 3,

it writes 14 days of one-minute counts with, once a day from the sixth (day 5 of days 0 to
13; at a random hour), a first outage at ten times the usual count for 40 minutes and, after
the gap, its return for 40 minutes; runs `downradar backtest` on them at the default
configuration, and counts the returns during which an incident was open (a new one, or the
first outage's, still open), and how many minutes into the return that began. It counts the
first outages found too, and the incidents opened outside every outage and its return.

With `--apart` the return comes 150 minutes after the first outage's end instead: what the
same detector finds of such outages when they are not returns.

Run from the repository root, after `cargo build --release`:

    python3 tests/tools/relapse/run.py                 # target/release/downradar
    python3 tests/tools/relapse/run.py --binary PATH   # another build, to compare
    python3 tests/tools/relapse/run.py --apart

Rows go to stdout as they finish, the totals last. Needs Python 3.11 and its standard
library only; takes about a minute.
"""

import datetime as dt
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lone_service import arguments, counts_csv, daily_mean, open_spans, poisson  # noqa: E402

DAYS = 14
FIRST_DAY = 5
LASTS = 40  # minutes, each outage and each return
FIRST = 10.0  # the first outage's multiple of the usual count
START = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
K = 5.0


def counts(rate: float, back: float, gap: int, seed: int) -> tuple[str, list[int]]:
    """The counts CSV of one run and the minute each first outage starts."""
    rng = random.Random(seed)
    firsts = [d * 1440 + rng.randrange(2 * 60, 20 * 60) for d in range(FIRST_DAY, DAYS)]
    counts = []
    for m in range(DAYS * 1440):
        mean = daily_mean(rate, m)
        for f in firsts:
            if 0 <= m - f < LASTS:
                mean *= FIRST
            elif 0 <= m - (f + LASTS + gap) < LASTS:
                mean *= back
        counts.append(poisson(rng, rng.gammavariate(K, mean / K)))
    return counts_csv(START, counts), firsts


def run(binary: Path, rate: float, back: float, gap: int, seed: int):
    """Minutes into each return before an incident was open (None: none was), first
    outages found, and incidents opened outside every outage and return."""
    text, firsts = counts(rate, back, gap, seed)
    start = START.timestamp()
    spans = [((a - start) / 60, (b - start) / 60) for a, b in open_spans(binary, text)]
    covered = []
    for f in firsts:
        r = f + LASTS + gap
        minute = next(
            (m for m in range(r, r + LASTS) if any(a <= m < b for a, b in spans)), None
        )
        covered.append(None if minute is None else minute - r)
    # An opening detects an outage from 2 minutes before it to 15 minutes after its end.
    detects = lambda o, start: start - 2 <= o <= start + LASTS + 15
    found = sum(any(detects(a, f) for a, _ in spans) for f in firsts)
    elsewhere = sum(
        not any(detects(a, f) or detects(a, f + LASTS + gap) for f in firsts)
        for a, _ in spans
    )
    return covered, found, len(firsts), elsewhere


def main() -> None:
    args = arguments(
        __doc__, "--apart", "the second outage 150 minutes after the first, not a return"
    )
    gaps = (150,) if args.apart else (20, 40)
    print("| reports/min | return at | gap (min) | returns reported | median minutes in "
          "| first outages found | opened elsewhere |")
    print("|---|---|---|---|---|---|---|")
    headline = [0, 0]
    totals = [0, 0, 0, 0, 0]
    for rate in (1.0, 3.0, 10.0):
        for back in (4.0, 6.0, 10.0):
            for gap in gaps:
                covered, found, firsts, elsewhere = [], 0, 0, 0
                for seed in (1, 2, 3):
                    c, f, n, e = run(args.binary, rate, back, gap, seed)
                    covered += c
                    found, firsts, elsewhere = found + f, firsts + n, elsewhere + e
                minutes = [c for c in covered if c is not None]
                median = f"{statistics.median(minutes):g}" if minutes else "-"
                print(f"| {rate:g} | {back:g}× | {gap} | {len(minutes)}/{len(covered)} | "
                      f"{median} | {found}/{firsts} | {elsewhere} |", flush=True)
                if back >= 5:
                    headline = [headline[0] + len(minutes), headline[1] + len(covered)]
                totals = [a + b for a, b in
                          zip(totals, (len(minutes), len(covered), found, firsts, elsewhere))]
    print(f"\nreturns reported: {totals[0]} of {totals[1]} ({headline[0]} of {headline[1]} "
          f"at 5 times or more); first outages found: {totals[2]} of {totals[3]}; "
          f"incidents opened elsewhere: {totals[4]}")


if __name__ == "__main__":
    main()
