"""The marts' refresh for one new day, and a representative SQL query (README, Marts and SQL).

    .venv/bin/python benchmarks/marts.py --scale 100        # one new day at 100x, a query
    .venv/bin/python benchmarks/marts.py --flat             # refresh cost against history

``--scale``: generates a week (``minilake generate --landing-only``), applies six days, then
the seventh with ``run`` in a child process, and times in their own children the marts'
refresh of that day's month (``minilake.marts(root, [month])``) and a query joining the current
sales with the catalogue as of a date. ``--flat``: a steady world (constant daily volumes) from
2024-08-01; the refresh of one month after its 10th day, in August (10 days of history) and in
October (71 days): the two months hold the same number of days, so any difference is history.
Each figure is the median of ``--repeat`` runs; peak RSS is the child's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from run import CRLF_ADDRESSES, SAMPLE_CUSTOMERS, run_child

QUERY = ("SELECT p.name, round(sum(s.total_price), 2) AS revenue FROM sales_current AS s "
         "JOIN product_as_of('{day}') AS p USING (product_id) GROUP BY ALL ORDER BY revenue DESC")
REFRESH = "import datetime as dt, sys, minilake; minilake.marts(sys.argv[1], [dt.date({m})])"


def timed(args: list[str], repeat: int) -> tuple[float, float]:
    runs = [run_child(args) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def generate(root: Path, python: str, customers: int, days: int, start: str,
             steady: bool = False) -> None:
    run_child([python, "-m", "minilake", "generate", "--root", str(root), "--landing-only",
               "--days", str(days), "--customers", str(customers), "--start", start,
               "--crlf-addresses", CRLF_ADDRESSES, *(["--steady"] if steady else [])])


def hold_back(root: Path, after: dt.date) -> Path:
    """Move the landing files dated after ``after`` aside; return where."""
    held = root / "held"
    held.mkdir(exist_ok=True)
    for path in list((root / "landing_zone").iterdir()):
        if dt.datetime.strptime(path.name.rsplit("_", 1)[1][:8], "%Y%m%d").date() > after:
            shutil.move(path, held / path.name)
    return held


def release(held: Path, root: Path, until: dt.date) -> None:
    for path in list(held.iterdir()):
        if dt.datetime.strptime(path.name.rsplit("_", 1)[1][:8], "%Y%m%d").date() <= until:
            shutil.move(path, root / "landing_zone" / path.name)


def scale(args, work: Path, python: str) -> None:
    root = work / "world"
    start = dt.date(2024, 10, 9)
    generate(root, python, int(SAMPLE_CUSTOMERS * args.scale), 7, start.isoformat())
    held = hold_back(root, start + dt.timedelta(days=5))
    run_child([python, "-m", "minilake", "run", "--root", str(root)])
    release(held, root, start + dt.timedelta(days=6))
    seconds, peak = run_child([python, "-m", "minilake", "run", "--root", str(root)])
    print(f"day 7 at {args.scale:g}x, run (split, ingest, marts): {seconds:.1f} s, "
          f"{peak:,.0f} MB")
    month = f"{start.year}, {start.month}, 1"
    seconds, peak = timed([python, "-c", REFRESH.format(m=month), str(root)], args.repeat)
    print(f"marts refresh of {start:%Y-%m} (one day's month): {seconds:.2f} s, {peak:,.0f} MB")
    seconds, peak = timed([python, "-m", "minilake", "sql", QUERY.format(day="2024-10-12"),
                           "--root", str(root)], args.repeat)
    print(f"sql (current sales x catalogue as of a date): {seconds:.2f} s, {peak:,.0f} MB")


def flat(args, work: Path, python: str) -> None:
    root = work / "steady"
    start = dt.date(2024, 8, 1)
    generate(root, python, int(SAMPLE_CUSTOMERS * args.scale), 71, start.isoformat(), True)
    held = hold_back(root, dt.date(2024, 8, 10))
    run_child([python, "-m", "minilake", "run", "--root", str(root)])
    august = timed([python, "-c", REFRESH.format(m="2024, 8, 1"), str(root)], args.repeat)
    release(held, root, dt.date(2024, 10, 10))
    run_child([python, "-m", "minilake", "run", "--root", str(root)])
    october = timed([python, "-c", REFRESH.format(m="2024, 10, 1"), str(root)], args.repeat)
    print(f"refresh of a month's first 10 days at {args.scale:g}x: August (10 days of "
          f"history) {august[0]:.2f} s, {august[1]:,.0f} MB; October (71 days) "
          f"{october[0]:.2f} s, {october[1]:,.0f} MB; ratio {october[0] / august[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=None)
    parser.add_argument("--flat", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"# {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="minilake-marts-") as work:
        if args.flat:
            args.scale = args.scale or 1
            flat(args, Path(work), sys.executable)
        else:
            args.scale = args.scale or 100
            scale(args, Path(work), sys.executable)


if __name__ == "__main__":
    main()
