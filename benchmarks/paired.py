"""A normal day of a three-year lake against one of a young lake, in turn (issue 39, SPEC §15).

    .venv/bin/python benchmarks/paired.py --old DIR/root [--old-day 1095] [--young-day 30]
        [--runs 14] [--scale 1] [--work DIR] [--young-erasures same|none] [--short-logs]

This VM's speed drifts by more than the target's 10 % within an hour (the same young lake's day
took 1.10 s, then 1.55 s, 55 minutes apart), and ``run.py --years`` measures day 30 and day
1,095 some twenty minutes apart. Here the two lakes run in turn, one day each, so the drift
falls on both:

- ``--old``: the root ``run.py --years 3 --keep DIR`` left (every day up to ``--old-day``
  applied);
- the world is generated again, ``--old-day + runs + 2`` days with the benchmark's seed and
  customers: a steady world's days do not depend on how many follow, so its first days are the
  benchmark's, byte for byte (checked on the old lake's last sales file), and the days after
  are real next days for the old lake;
- a young lake is built from its days 1 to ``--young-day``, one run a day (as
  ``years.py`` builds, whose world and lake this uses);
- each lake is copied by hard links (minilake never rewrites a file in place: a new one is
  renamed over it), given one day that is not timed (a first day after an erasure, say, makes
  the month's gone customers again), then ``--runs`` days each, in turn, every run
  ``python -m minilake run`` in a child process, in ``benchmarks/.venv-core``.

The young lake is given the erasure requests the old lake had by ``--young-day`` (``years.py``
erases one customer on each day it measures, the first on day 30), so that both lakes scrub the
erased customer from each customer snapshot still sending them (~25 ms a day at 1×): a cost of
having had an erasure, not of age. ``--young-erasures none`` leaves them out, as before.

``--short-logs`` runs a third lake in turn with the two: the old lake with each table's log
entries before its latest checkpoint removed, so its versions before that are gone. minilake
never does this under its history policy (docs/history.md); it measures what the length of the
logs alone costs a day (delta-rs lists a table's whole ``_delta_log`` on every open and commit).

Prints each round, then the medians and their ratios to the young lake's: of the wall time,
and of the CPU time (user and system, a run's threads together), which this VM's steal time
moves less.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import sys
from pathlib import Path

from run import core_python  # benchmarks/run.py and years.py, beside this script
from years import Lake

SAMPLE_CUSTOMERS = 5000


def linked(lake: Lake, base: Path, to: Path) -> Lake:
    """``lake`` (its world) delivering to a hard-linked copy of the root ``base`` at ``to``."""
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(base, to, copy_function=os.link)
    other = copy.copy(lake)
    other.root = to
    return other


def shorten_logs(root: Path) -> int:
    """Every table's log entries before its latest checkpoint removed (links only: the files
    they link to stay in the lake copied from); how many."""
    removed = 0
    for log in sorted((root / "tables").rglob("_delta_log")):
        checkpoints = sorted(log.glob("*.checkpoint.parquet"))
        if not checkpoints:
            continue
        latest = int(checkpoints[-1].name[:20])
        for entry in log.iterdir():
            if entry.name[:20].isdigit() and int(entry.name[:20]) < latest:
                entry.unlink()
                removed += 1
    return removed


def given_erasures(old: Path, lake: Lake, day: int) -> list[str]:
    """The erasure requests the old lake archived dated up to ``day``, landed in ``lake`` and
    run (untimed); their names."""
    last = lake.stamps[day - 1]
    requests = sorted(p for p in (old / "archive" / "erasure_requests").glob("*.json")
                      if p.stem.rsplit("_", 1)[-1] <= last)
    for request in requests:
        shutil.copy(request, lake.root / "landing_zone" / request.name)
    if requests:
        lake.run()
    return [p.name for p in requests]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--old-day", type=int, default=1095)
    parser.add_argument("--young-day", type=int, default=30)
    parser.add_argument("--runs", type=int, default=14)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--work", type=Path, default=Path("paired-work"))
    parser.add_argument("--young-erasures", choices=["same", "none"], default="same")
    parser.add_argument("--short-logs", action="store_true")
    args = parser.parse_args()
    python = core_python(sys.executable)
    days = args.old_day + args.runs + 2
    held = args.work / "held" / "landing_zone"
    if held.is_dir() and len({p.stem.rsplit("_", 1)[-1] for p in held.iterdir()}) < days:
        shutil.rmtree(held.parent)                  # a shorter world: generated again
    lake = Lake(args.work, python, days, int(SAMPLE_CUSTOMERS * args.scale))
    last = next(p for p in lake.days[lake.stamps[args.old_day - 1]]
                if p.name.startswith("sales_"))
    if (args.old / "archive" / "sales" / last.name).read_bytes() != last.read_bytes():
        raise SystemExit(f"{args.old} does not hold this world's day {args.old_day} "
                         f"({last.name} differs): another scale or seed?")
    lake.build(1, args.young_day)                       # the young lake, in lake.root
    if args.young_erasures == "same":
        given = given_erasures(args.old, lake, args.young_day)
        print(f"the young lake is given the old lake's erasure requests of days 1 to "
              f"{args.young_day}: {', '.join(given) or 'none'}")
    lakes = {"young": (linked(lake, lake.root, args.work / "young"), args.young_day),
             "old": (linked(lake, args.old, args.work / "old"), args.old_day)}
    if args.short_logs:
        lakes["short"] = (linked(lake, args.old, args.work / "short"), args.old_day)
        print(f"short logs: {shorten_logs(lakes['short'][0].root)} log entries removed")
    for which, day in lakes.values():                                   # untimed
        which.deliver(day + 1)
        which.run()
    names = list(lakes)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for i in range(2, args.runs + 2):
        turn = i % len(names)
        for name in names[turn:] + names[:turn]:
            which, day = lakes[name]
            which.deliver(day + i)
            times[name].append(which.run()[0])
            cpu[name].append(which.cpu_s)
        print(f"{i - 1}: " + ", ".join(f"{name} (day {lakes[name][1] + i}) "
                                       f"{times[name][-1]:.2f} s ({cpu[name][-1]:.2f} s CPU)"
                                       for name in names), flush=True)
    for what, seconds in (("wall", times), ("CPU", cpu)):
        young = statistics.median(seconds["young"])
        print(f"{what}: young median {young:.3f} s; " + "; ".join(
            f"{name} median {statistics.median(seconds[name]):.3f} s: ratio "
            f"{statistics.median(seconds[name]) / young:.3f}" for name in names[1:]))


if __name__ == "__main__":
    main()
