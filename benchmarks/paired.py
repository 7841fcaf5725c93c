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
- a young lake is built from its days 1 to ``--young-day``, one run a day;
- each lake is copied by hard links (minilake never rewrites a file in place: a new one is
  renamed over it), given one day that is not timed (a first day after an erasure, say, makes
  the month's gone customers again), then ``--runs`` days each, in turn, every run
  ``python -m minilake run`` in a child process, in ``benchmarks/.venv-core``.

Prints each pair, then both medians and their ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from run import core_python  # benchmarks/run.py, beside this script

SAMPLE_CUSTOMERS = 5000


def world(python: str, folder: Path, days: int, customers: int) -> list[list[Path]]:
    """The steady world's files by day (generated once into ``folder``)."""
    landing = folder / "landing_zone"
    if len({p.stem.rsplit("_", 1)[-1] for p in landing.glob("*")}) < days:
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([python, "-m", "minilake", "generate", "--root", str(folder), "--days",
                        str(days), "--customers", str(customers), "--landing-only",
                        "--steady"], check=True, stdout=subprocess.DEVNULL)
    by_day: dict[str, list[Path]] = {}
    for path in sorted(landing.iterdir()):
        by_day.setdefault(path.stem.rsplit("_", 1)[-1], []).append(path)
    return [by_day[stamp] for stamp in sorted(by_day)]


def run(python: str, root: Path, files: list[Path]) -> float:
    """One day delivered and run; its wall seconds."""
    for path in files:
        shutil.copy(path, root / "landing_zone" / path.name)
    began = time.perf_counter()
    subprocess.run([python, "-m", "minilake", "run", "--root", str(root)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def linked(base: Path, to: Path) -> Path:
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(base, to, copy_function=os.link)
    return to


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
    days = world(python, args.work / "world", args.old_day + args.runs + 2,
                 int(SAMPLE_CUSTOMERS * args.scale))
    last = next(p for p in days[args.old_day - 1] if p.name.startswith("sales_"))
    if (args.old / "archive" / "sales" / last.name).read_bytes() != last.read_bytes():
        raise SystemExit(f"{args.old} does not hold this world's day {args.old_day} "
                         f"({last.name} differs): another scale or seed?")
    young_base = args.work / f"young-{args.young_day}"
    if not (young_base / "tables").is_dir():
        shutil.rmtree(young_base, ignore_errors=True)
        (young_base / "landing_zone").mkdir(parents=True)
        for n in range(args.young_day):
            run(python, young_base, days[n])
    young = linked(young_base, args.work / "young")
    old = linked(args.old, args.work / "old")
    run(python, young, days[args.young_day])
    run(python, old, days[args.old_day])
    times: dict[str, list[float]] = {"young": [], "old": []}
    for i in range(1, args.runs + 1):
        order = ("young", "old") if i % 2 else ("old", "young")
        for which in order:
            n = (args.young_day if which == "young" else args.old_day) + i
            times[which].append(run(python, young if which == "young" else old, days[n]))
        print(f"{i}: young (day {args.young_day + i + 1}) {times['young'][-1]:.2f} s, "
              f"old (day {args.old_day + i + 1}) {times['old'][-1]:.2f} s", flush=True)
    a, b = statistics.median(times["young"]), statistics.median(times["old"])
    print(f"young median {a:.3f} s, old median {b:.3f} s: ratio {b / a:.3f}")


if __name__ == "__main__":
    main()
