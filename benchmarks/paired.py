"""A normal day of a three-year lake against one of a young lake, in turn (issue 39, SPEC §15).

    .venv/bin/python benchmarks/paired.py --old DIR/root [--old-day 1095] [--young-day 30]
        [--runs 14] [--scale 1] [--work DIR]

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

Prints each pair, then both medians and their ratio.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--old-day", type=int, default=1095)
    parser.add_argument("--young-day", type=int, default=30)
    parser.add_argument("--runs", type=int, default=14)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--work", type=Path, default=Path("paired-work"))
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
    young = linked(lake, lake.root, args.work / "young")
    old = linked(lake, args.old, args.work / "old")
    for which, day in ((young, args.young_day), (old, args.old_day)):    # untimed
        which.deliver(day + 1)
        which.run()
    times: dict[str, list[float]] = {"young": [], "old": []}
    for i in range(2, args.runs + 2):
        for name in ("young", "old") if i % 2 else ("old", "young"):
            which, day = (young, args.young_day) if name == "young" else (old, args.old_day)
            which.deliver(day + i)
            times[name].append(which.run()[0])
        print(f"{i - 1}: young (day {args.young_day + i}) {times['young'][-1]:.2f} s, "
              f"old (day {args.old_day + i}) {times['old'][-1]:.2f} s", flush=True)
    a, b = statistics.median(times["young"]), statistics.median(times["old"])
    print(f"young median {a:.3f} s, old median {b:.3f} s: ratio {b / a:.3f}")


if __name__ == "__main__":
    main()
