"""What a run report costs on a young lake and an old one (issue 41, docs/quality.md).

    .venv/bin/python benchmarks/run_report.py [--days 7 60] [--customers 5000] [--repeat 5]

For each number of days, a world of that many days is generated and run (one run for all but
the last day), then the last day is run alone, which writes its report. The report of that
run is then built and rendered again ``--repeat`` times in this process (``runreport.build``,
``render``, ``write``: what ``run`` does at its end), and the median printed with the ingest-log
rows it read. The target: an old lake's report within 2x a young one's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import minilake
from minilake.generate import generate
from minilake.lake.layout import Layout
from minilake.outbound import runreport


def measure(days: int, customers: int, repeat: int, work: Path) -> dict:
    root = work / f"days{days}"
    generate(root, start="2024-08-01", days=days, customers=customers, seed=4,
             landing_only=True)
    last = max(p.stem.split("_")[-1] for p in (root / "landing_zone").iterdir())
    held = work / f"held{days}"
    held.mkdir()
    for path in (root / "landing_zone").glob(f"*{last}*"):
        shutil.move(path, held / path.name)
    minilake.run(root, progress=False)
    for path in held.iterdir():
        shutil.move(path, root / "landing_zone" / path.name)
    result = minilake.run(root, progress=False)
    data = json.loads(result.report.with_suffix(".json").read_text())
    files = [runreport.RunFile(**f) for f in data["files"]]
    started = dt.datetime.fromisoformat(data["started_at"])
    layout, took = Layout.of(root), []
    for _ in range(repeat):
        began = time.perf_counter()
        runreport.write(layout, runreport.build(layout, started, dt.datetime.now(dt.UTC),
                                                files))
        took.append(time.perf_counter() - began)
    return {"days": days, "seconds": statistics.median(took), "runs": took,
            "log_rows_read": data["log_rows_read"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, nargs="+", default=[7, 60])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="minilake-report-bench-") as folder:
        got = [measure(d, args.customers, args.repeat, Path(folder)) for d in args.days]
    for g in got:
        print(f"{g['days']} days: report {g['seconds'] * 1000:.1f} ms (median of "
              f"{len(g['runs'])}: {', '.join(f'{s * 1000:.1f}' for s in g['runs'])}), "
              f"{g['log_rows_read']} ingest-log rows in its window")
    if len(got) > 1:
        print(f"ratio {got[-1]['days']} / {got[0]['days']} days: "
              f"{got[-1]['seconds'] / got[0]['seconds']:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
