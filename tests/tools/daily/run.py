#!/usr/bin/env python3
"""How often a service with a strong daily cycle looks down when it is not.

Every incident this counts is false: the counts are Poisson, with no outage, of a service
used in Great Britain (`GB`), at a night rate until 08:00 local time, `ratio` times that from
08:00 to 18:00, and back at night after, rising and falling either at once (a step) or
geometrically over `rise` minutes centred on the hour.

- **Mornings** (the default): 14 days of such a service, first seen at midnight and at 13:00
  UTC (a fresh deployment with no history), five seeds each, so ten runs per shape. Its
  first three mornings may open an incident (with a step, they all do), as a flood from
  nothing must while the day is unknown; the table counts the incidents opened on the 110
  days after (days 3 to 13).
  Shapes: ten, twenty and a hundred times the night's rate, with a step, then with a rise
  over an hour.
- **`--clock-change`**: 28 days, first seen at midnight, five seeds, with British summer
  time starting on day 14 (2026-03-29, the day comes an hour earlier in UTC) and, in a
  second set of runs, ending on day 14 (2026-10-25, an hour later). The table counts the
  incidents opened on days 14 to 27. Shapes: five, ten and twenty-five times the night's
  rate, rising over two to three hours.

Run from the repository root, after `cargo build --release`:

    python3 tests/tools/daily/run.py                  # target/release/downradar
    python3 tests/tools/daily/run.py --clock-change
    python3 tests/tools/daily/run.py --binary PATH    # another build, to compare

Rows go to stdout as they finish, the totals last. Needs Python 3.11 and its standard
library (and the system's time zone database, for `zoneinfo`); takes about half a minute (two
minutes with `--clock-change`).
"""

import datetime as dt
import random
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lone_service import arguments, opened_at, poisson  # noqa: E402

START = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
LONDON = ZoneInfo("Europe/London")
# The clock-change runs start 14 days before British summer time starts and ends.
CHANGE_STARTS = (("forward", dt.datetime(2026, 3, 15, tzinfo=dt.timezone.utc)),
                 ("back", dt.datetime(2026, 10, 11, tzinfo=dt.timezone.utc)))
SEEDS = (1, 2, 3, 4, 5)
MORNINGS = ((1.0, 10.0, 0), (0.5, 10.0, 0), (0.05, 5.0, 0),
            (1.0, 10.0, 60), (0.5, 10.0, 60), (0.05, 5.0, 60))
CLOCK_CHANGES = ((1.0, 5.0, 180), (0.5, 5.0, 180), (0.5, 5.0, 120), (0.2, 5.0, 180))
CHANGE_DAY = 14



def rate(night: float, day: float, rise: int, hour: float) -> float:
    """Reports per minute at `hour` (local, fractional): `day` from 08:00 to 18:00, `night`
    otherwise, changing at once (`rise` 0) or geometrically over `rise` minutes centred on
    the hour."""
    if not rise:
        return day if 8 <= hour < 18 else night
    span = rise / 60
    up = min(1.0, max(0.0, (hour - 8 + span / 2) / span))
    down = min(1.0, max(0.0, (18 + span / 2 - hour) / span))
    return night * (day / night) ** min(up, down)


def counts(night: float, day: float, rise: int, days: int, start: dt.datetime, seed: int) -> str:
    """The counts CSV of one run from `start` (UTC), on London's clock."""
    rng = random.Random(seed)
    lines = ["timestamp,service,region,problem,count"]
    for m in range(days * 1440):
        at = start + dt.timedelta(minutes=m)
        local = at.astimezone(LONDON)
        n = poisson(rng, rate(night, day, rise, local.hour + local.minute / 60))
        if n:
            lines.append(f"{at.strftime('%Y-%m-%dT%H:%M:%SZ')},svc,GB,login,{n}")
    return "\n".join(lines) + "\n"


def opened_days(binary: Path, text: str, start: dt.datetime) -> list[int]:
    """The days (from `start`) on which the backtest of `text` opened incidents."""
    return [int((at - start.timestamp()) // 86_400) for at in opened_at(binary, text)]


def shape(night: float, day: float, rise: int) -> str:
    return f"{day / night:g}× | {'step' if not rise else f'{rise} min'}"


def mornings(binary: Path) -> None:
    """The default table."""
    print("| day/night | rise | first seen | seed | days 0-2 opened | days 3-13 opened |")
    print("|---|---|---|---|---|---|")
    totals: dict[str, int] = {}
    for night, day, rise in MORNINGS:
        later = 0
        for start_hour in (0, 13):
            for seed in SEEDS:
                start = START + dt.timedelta(hours=start_hour)
                days = opened_days(binary, counts(night, day, rise, 14, start, seed), start)
                first = sum(d < 3 for d in days)
                print(f"| {shape(night, day, rise)} | {start_hour:02}:00 | {seed} | {first} "
                      f"| {len(days) - first} |", flush=True)
                later += len(days) - first
        totals[shape(night, day, rise)] = later
    print("\nincidents opened on days 3 to 13 (110 days, ten runs):")
    for name, later in totals.items():
        print(f"  {name.replace(' | ', ', ')}: {later}")


def clock_change(binary: Path) -> None:
    """The `--clock-change` table."""
    print("| clocks go | day/night | rise | seed | days 0-13 opened | days 14-27 opened |")
    print("|---|---|---|---|---|---|")
    totals: dict[str, list[int]] = {}
    for way, start in CHANGE_STARTS:
        for night, day, rise in CLOCK_CHANGES:
            after = []
            for seed in SEEDS:
                days = opened_days(binary, counts(night, day, rise, 28, start, seed), start)
                before = sum(d < CHANGE_DAY for d in days)
                print(f"| {way} | {shape(night, day, rise)} | {seed} | {before} "
                      f"| {len(days) - before} |", flush=True)
                after.append(len(days) - before)
            totals[f"{way}, {shape(night, day, rise)}"] = after
    print(f"\nincidents opened in the 14 days after the clocks changed, per seed:")
    for name, after in totals.items():
        print(f"  {name.replace(' | ', ', ')}: {after} ({sum(after)} in all)")


def main() -> None:
    args = arguments(
        __doc__, "--clock-change", "runs whose clocks go forward, then back, on day 14"
    )
    if args.clock_change:
        clock_change(args.binary)
    else:
        mornings(args.binary)


if __name__ == "__main__":
    main()
