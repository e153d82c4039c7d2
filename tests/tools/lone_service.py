"""What the tools that backtest a lone service (`ramps`, `daily` and `relapse`) share: its
catalog, Poisson counts, and the incidents a backtest of its counts opened. Python 3.11's
standard library only."""

import argparse
import datetime as dt
import json
import math
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CATALOG = '[[service]]\nid = "svc"\nname = "Service"\nproblems = ["login"]\n'


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: exact, and quick enough for the means here (a few hundred at most;
    it would underflow above about 700)."""
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def daily_mean(rate: float, minute: int) -> float:
    """The mean count at `minute` of a service of `rate` reports a minute at the day's mean:
    0.5 to 1.5 times that over the day."""
    day = (minute % 1440) / 1440  # the fraction of the day gone
    return rate * (1 + 0.5 * math.sin(2 * math.pi * (day - 0.3)))


def counts_csv(start: dt.datetime, counts: list[int]) -> str:
    """The counts CSV of the service's one-minute `counts` from `start` (a row for each
    minute with reports)."""
    lines = ["timestamp,service,region,problem,count"]
    for m, n in enumerate(counts):
        if n:
            at = (start + dt.timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ")
            lines.append(f"{at},svc,US,login,{n}")
    return "\n".join(lines) + "\n"


def events(binary: Path, text: str) -> list[dict]:
    """The incident events of `downradar backtest` of the counts CSV `text`, with
    [`CATALOG`]; exits with the backtest's error if it fails. `DOWNRADAR_` settings of the
    caller's environment are left out, so the default configuration is the one run."""
    with tempfile.TemporaryDirectory() as folder:
        catalog, data = Path(folder, "catalog.toml"), Path(folder, "counts.csv")
        catalog.write_text(CATALOG)
        data.write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOWNRADAR_")}
        done = subprocess.run(
            [str(binary), "backtest", "--catalog", str(catalog), "--input", str(data)],
            env=env, capture_output=True, text=True,
        )
    if done.returncode != 0:
        sys.exit(f"backtest failed with status {done.returncode}:\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines()]


def seconds(at: str) -> float:
    """Unix seconds of an event's RFC 3339 `at`."""
    return dt.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def opened_at(binary: Path, text: str) -> list[float]:
    """When (Unix seconds) the backtest of the counts CSV `text` opened incidents (see
    [`events`])."""
    return [seconds(e["at"]) for e in events(binary, text) if e["type"] == "incident.opened"]


def open_spans(binary: Path, text: str) -> list[tuple[float, float]]:
    """When (Unix seconds) each incident of the backtest of `text` opened and was resolved
    (infinity for one still open at the end), in order (see [`events`]; a lone service has
    one incident open at a time)."""
    spans: list[tuple[float, float]] = []
    for e in events(binary, text):
        if e["type"] == "incident.opened":
            spans.append((seconds(e["at"]), math.inf))
        elif e["type"] == "incident.resolved":
            spans[-1] = (spans[-1][0], seconds(e["at"]))
    return spans


def arguments(doc: str, flag: str, help: str) -> argparse.Namespace:
    """The command line of a tool whose module docstring is `doc`: `--binary`, the downradar
    build it runs (default: the release build), and one switch `flag`; exits with what to
    do when that build does not exist."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=REPO / "target/release/downradar")
    parser.add_argument(flag, action="store_true", help=help)
    args = parser.parse_args()
    if not args.binary.exists():
        sys.exit(f"{args.binary} does not exist: run `cargo build --release` first")
    return args
