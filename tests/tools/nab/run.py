#!/usr/bin/env python3
"""Score downradar's detector on NAB's realTweets series, beside the published NAB detectors.

For each of the 10 realTweets files of the Numenta Anomaly Benchmark (NAB v1.1) this:

1. writes a catalog with one service (`nab-aapl` for Twitter_volume_AAPL.csv, one problem
   `mentions`) and a counts CSV with one region (`US`): each NAB row becomes the count of
   its 5-minute bucket;
2. runs `downradar backtest --bucket 5m` on it with the DEFAULT detector configuration (no
   tuning flags, and any DOWNRADAR_* variables removed from the environment), one run per
   file so that the series are detected independently;
3. writes a NAB results file `<out>/downradar/realTweets/Twitter_volume_XXX.csv`
   (`timestamp,anomaly_score`, one row per data row): 1 at the row whose bucket the detector
   decided an `incident.opened` in, 0 elsewhere. Updates and resolutions are not new
   detections. The decision at event time `at` used only the buckets up to `at - 5m`, so
   the score is causal;
4. scores it with shared/tools/nab_score.py at a fixed threshold of 0.5, beside the NAB peers
   at NAB's published corpus thresholds, then per file for downradar alone.

NAB's tweet timestamps sit 2 min 53 s past the 5-minute grid (hh:m2:53, hh:m7:53). Every row
of a file has the same phase, so each row is mapped to the 5-minute bucket that starts just
before it (a constant shift that keeps the rows one-to-one with buckets), and an event is
mapped back through the same table. Buckets missing from a file are zero counts, which is
what an absent row means in the counts CSV. Each backtest's catalog, counts, events and
stderr are kept beside the results, in `<out>/downradar/backtest/Twitter_volume_XXX/`.

Run from the repository root, after `cargo build --release`:

    python3 tests/tools/nab/run.py                  # temporary directory, removed at the end
    python3 tests/tools/nab/run.py --out /tmp/nab   # keep the results, inputs and events

Tables go to stdout, progress to stderr. Needs Python 3.11 and its standard library only.

The NAB data (MIT licence, Copyright Numenta Inc.; see shared/datasets/nab/LICENSE and
README.md) is read from ../shared next to the repository and is not copied into it.
"""


import argparse
import bisect
import csv
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared"
NAB = SHARED / "datasets" / "nab"
SCORER = SHARED / "tools" / "nab_score.py"

CATEGORY = "realTweets"
DETECTOR = "downradar"
PEERS = [
    "ARTime",
    "contextOSE",
    "numenta",
    "htmjava",
    "knncad",
    "twitterADVec",
    "windowedGaussian",
    "relativeEntropy",
]
BUCKET = 300  # seconds: the NAB tweet series count 5-minute buckets
REGION = "US"
PROBLEM = "mentions"
THRESHOLD = "0.5"  # the scores are 0/1: a detection is a 1


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Series:
    """One NAB data file, mapped to downradar's 5-minute buckets."""

    path: Path
    service: str
    timestamps: list[str]  # as in the data file, for the results file
    buckets: list[int]  # bucket start (Unix seconds) of each row
    values: list[int]
    missing: int  # buckets absent between the first row and the last


@dataclass
class Run:
    """What the backtest decided on one series."""

    opened: list[int] = field(default_factory=list)  # rows whose bucket decided an opening
    counts: dict[str, int] = field(default_factory=dict)  # events by type
    shifted: int = 0  # openings decided in a missing bucket, moved to the next row
    dropped: int = 0  # openings decided after the last row
    seconds: float = 0.0
    rows: int = 0  # rows of the data file
    in_probation: int = 0  # openings in NAB's probation period (free, earn nothing)


def service_id(path: Path) -> str:
    """`Twitter_volume_AAPL.csv` -> `nab-aapl`: [a-z0-9-], at most 64 characters."""
    stem = path.stem.removeprefix("Twitter_volume_")
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    return f"nab-{slug}"[:64]


def parse_nab_time(text: str) -> int:
    """NAB's `YYYY-MM-DD HH:MM:SS` (UTC) as Unix seconds."""
    moment = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    return int(moment.replace(tzinfo=dt.timezone.utc).timestamp())


def rfc3339(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def read_series(path: Path) -> Series:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        if next(reader, None) != ["timestamp", "value"]:
            sys.exit(f"{path}: expected the header timestamp,value")
        rows = list(reader)
    if not rows:
        sys.exit(f"{path}: no data rows")
    timestamps = [r[0] for r in rows]
    seconds = [parse_nab_time(t) for t in timestamps]
    phase = seconds[0] % BUCKET
    for line, (t, s) in enumerate(zip(timestamps, seconds), start=2):
        if s % BUCKET != phase:
            sys.exit(f"{path}:{line}: {t} is not on the file's 5-minute grid")
    buckets = [s - phase for s in seconds]
    for line, (a, b) in enumerate(zip(buckets, buckets[1:]), start=3):
        if b <= a:
            sys.exit(f"{path}:{line}: rows are not in strictly increasing time order")
    values = []
    for line, (_, v) in enumerate(rows, start=2):
        if not v.isdigit():
            sys.exit(f"{path}:{line}: value {v!r} is not a non-negative whole number")
        values.append(int(v))
    missing = (buckets[-1] - buckets[0]) // BUCKET + 1 - len(buckets)
    return Series(path, service_id(path), timestamps, buckets, values, missing)


def write_inputs(series: Series, folder: Path) -> tuple[Path, Path]:
    """The catalog and counts CSV of one series, for `downradar backtest`."""
    folder.mkdir(parents=True, exist_ok=True)
    catalog = folder / "catalog.toml"
    catalog.write_text(
        "[[service]]\n"
        f'id = "{series.service}"\n'
        f'name = "{series.path.stem}"\n'
        f'problems = ["{PROBLEM}"]\n'
    )
    counts = folder / "counts.csv"
    with counts.open("w", newline="") as f:
        f.write("timestamp,service,region,problem,count\n")
        for bucket, value in zip(series.buckets, series.values):
            if value:  # absent rows are zeros
                f.write(f"{rfc3339(bucket)},{series.service},{REGION},{PROBLEM},{value}\n")
    return catalog, counts


def backtest(binary: Path, series: Series, folder: Path) -> Run:
    """Runs the detector over one series and maps its openings to data rows."""
    catalog, counts = write_inputs(series, folder)
    # The default configuration only: the backtest would also read these from the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOWNRADAR_")}
    command = [str(binary), "backtest", "--catalog", str(catalog), "--input", str(counts),
               "--bucket", "5m"]
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    run = Run(seconds=time.monotonic() - started, rows=len(series.buckets))
    (folder / "events.jsonl").write_text(done.stdout)
    (folder / "stderr.txt").write_text(done.stderr)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed with status {done.returncode}:\n{done.stderr}")

    for line in done.stdout.splitlines():
        event = json.loads(line)
        kind = event["type"]
        run.counts[kind] = run.counts.get(kind, 0) + 1
        if kind != "incident.opened":
            continue
        if event["incident"]["service"] != series.service:
            sys.exit(f"{series.path.name}: event for unknown service: {line}")
        decided = parse_rfc3339(event["at"]) - BUCKET  # start of the deciding bucket
        row = bisect.bisect_left(series.buckets, decided)
        if row == len(series.buckets):
            run.dropped += 1
            continue
        if series.buckets[row] != decided:
            run.shifted += 1  # decided in a missing bucket: the next row is the first to show it
        run.opened.append(row)
    run.in_probation = sum(row < probation_rows(run.rows) for row in run.opened)
    return run


def write_results(series: Series, run: Run, results: Path) -> None:
    detected = set(run.opened)
    with (results / series.path.name).open("w", newline="") as f:
        f.write("timestamp,anomaly_score\n")
        for row, stamp in enumerate(series.timestamps):
            f.write(f"{stamp},{1 if row in detected else 0}\n")


def probation_rows(rows: int) -> int:
    return min(int(0.15 * rows), 750)


def print_backtests(runs: dict[str, Run]) -> None:
    print("## downradar backtest (default configuration, --bucket 5m)\n")
    print("| file | rows | opened | in probation | updated | resolved |")
    print("|---|---|---|---|---|---|")
    for name, run in runs.items():
        print(f"| {name} | {run.rows} | {len(run.opened)} | {run.in_probation} "
              f"| {run.counts.get('incident.updated', 0)} "
              f"| {run.counts.get('incident.resolved', 0)} |")
    print(f"| total | {sum(r.rows for r in runs.values())} "
          f"| {sum(len(r.opened) for r in runs.values())} "
          f"| {sum(r.in_probation for r in runs.values())} | | |", flush=True)


def score(out: Path, nab: Path, scorer: Path) -> None:
    common = [sys.executable, str(scorer), "--data", str(nab / "data"),
              "--windows", str(nab / "labels" / "combined_windows.json"),
              "--subset", CATEGORY, "--threshold", THRESHOLD]
    runs = [
        (f"{DETECTOR} at a fixed threshold of {THRESHOLD}; the peers at NAB's published "
         "corpus thresholds (nab_thresholds.json)",
         common + ["--results", str(out), "--results", str(nab / "peer-results"),
                   "--detectors", ",".join([DETECTOR, *PEERS]),
                   "--thresholds-json", str(nab / "peer-results" / "nab_thresholds.json"),
                   "--json", str(out / "scores.json")]),
        (f"{DETECTOR} per file",
         common + ["--results", str(out), "--detectors", DETECTOR, "--per-file",
                   "--json", str(out / "scores-per-file.json")]),
    ]
    for title, command in runs:
        log(f"scoring: {title}")
        print(f"\n## {title}\n", flush=True)
        done = subprocess.run(command, stdout=sys.stdout, stderr=sys.stderr)
        if done.returncode != 0:
            sys.exit(f"the scorer failed with status {done.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path,
                        help="keep the results here (default: a temporary directory)")
    parser.add_argument("--downradar", type=Path, default=REPO / "target" / "release" / "downradar",
                        help="the downradar binary (default: %(default)s)")
    parser.add_argument("--nab", type=Path, default=NAB,
                        help="NAB data folder (default: %(default)s)")
    parser.add_argument("--scorer", type=Path, default=SCORER,
                        help="the NAB scorer (default: %(default)s)")
    args = parser.parse_args()

    if not args.downradar.is_file():
        sys.exit(f"{args.downradar}: no such binary; run `cargo build --release` first")
    files = sorted((args.nab / "data" / CATEGORY).glob("*.csv"))
    if not files:
        sys.exit(f"{args.nab / 'data' / CATEGORY}: no data files")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="downradar-nab-") as scratch:
        out = (args.out or Path(scratch)).resolve()
        results = out / DETECTOR / CATEGORY
        results.mkdir(parents=True, exist_ok=True)
        log(f"results in {out}")

        runs = {}
        for path in files:
            series = read_series(path)
            run = backtest(args.downradar, series, out / DETECTOR / "backtest" / path.stem)
            write_results(series, run, results)
            notes = [f"{series.missing} missing buckets"]
            if run.shifted:
                notes.append(f"{run.shifted} openings in missing buckets moved to the next row")
            if run.dropped:
                notes.append(f"{run.dropped} openings after the last row dropped")
            log(f"{path.name}: {run.rows} rows, {len(run.opened)} incidents opened "
                f"({run.in_probation} in probation), {run.seconds:.2f}s; {', '.join(notes)}")
            runs[path.stem] = run

        print_backtests(runs)
        score(out, args.nab, args.scorer)
    log(f"done in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
