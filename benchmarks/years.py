"""A lake that lives for years (issue 39, SPEC §15): what a day costs after one month, one, two
and three years of daily runs.

    .venv/bin/python benchmarks/run.py --years 3 [--scale 1] [--keep DIR]

A steady world (``generate --steady``: as many customers arrive as leave, the same sales a day)
of ``years × 365`` days is built one run a day, as a shop runs it, each run in one child process
that runs them all (no interpreter's start-up a day): every table's log, the marts' and the
ingest log's grow as a shop's do (built in runs of a month, the marts and the ingest log had a
thirtieth of their commits, and a normal day looked cheaper at day 1,095 than it is). At day
30, 365, 730 and 1,095 it measures, each in a child process as a shop would run it
(``python -m minilake run``, with the marts):

- nine normal days, one run each (their median is "a normal day": single runs here swing by
  a quarter, and the first run of a month makes that month's gone customers);
- the next day's delivery with the day before it held back, then that held-back day: a delivery
  one day late (its run repairs from that date, replaying two days);
- a delivery resent from a week ago (each source's file of that day with the next day's rows);
- an erasure of one customer present since the first day (``erasure_requests_*.json``);
- ``read_table("customer", as_of=)`` of the oldest date up to two years back and of yesterday,
  and ``read_table("customer", version=)`` of the oldest version kept (an erasure purges those
  before it), in a child process each, before the erasure;
- per table: data files live, data files on disk, log entries, and the time to open it
  (``DeltaTable``, median of three, in one process after its imports).

Prints one line per measurement as it comes and a table at the end; ``--json`` writes them.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHECKPOINTS = (30, 365, 730, 1095)
NORMAL_DAYS = 9         # normal days measured at each checkpoint, one run each

BUILD = """
import json, shutil, sys
import minilake
root, plan = sys.argv[1], sys.argv[2]
with open(plan) as listed:
    days = json.load(listed)
for files in days:
    for name in files:
        shutil.copy(name, root + "/landing_zone/")
    result = minilake.run(root, progress=False)
    if not result.ok:
        sys.exit(f"{files[0]}: the day's run did not apply every file")
"""

READ = """
import json, sys, time
import minilake
import minilake.load.history  # its imports (pandas, pyarrow, deltalake) before the clock
root, how, value = sys.argv[1], sys.argv[2], sys.argv[3]
if how == "version":       # the oldest version kept (an erasure purges those before it)
    listed = minilake.versions("customer", root)
    value = int(listed.loc[listed["kept"], "version"].min())
began = time.perf_counter()
frame = minilake.read_table("customer", root=root, **{how: value})
print(json.dumps({"seconds": time.perf_counter() - began, "rows": len(frame), "what": value}))
"""

TABLES = """
import json, statistics, sys, time
from pathlib import Path
from deltalake import DeltaTable
out = {}
for path in sorted(p.parent for p in Path(sys.argv[1], "tables").rglob("_delta_log")):
    if any(part.startswith(".") for part in path.relative_to(sys.argv[1]).parts):
        continue
    took = []
    for _ in range(3):
        began = time.perf_counter()
        table = DeltaTable(str(path))
        took.append(time.perf_counter() - began)
    log = [p for p in (path / "_delta_log").iterdir() if p.name[:1].isdigit()]
    out[str(path.relative_to(Path(sys.argv[1], "tables")))] = {
        "open_ms": statistics.median(took) * 1000,
        "files_live": len(table.get_add_actions()),
        "files_on_disk": sum(1 for p in path.rglob("*.parquet") if "_delta_log" not in p.parts),
        "log_entries": sum(1 for p in log if p.name.endswith(".json")),
        "checkpoints": sum(1 for p in log if ".checkpoint." in p.name),
        "version": table.version()}
print(json.dumps(out))
"""


def child(python: str, args: list[str], output: bool = False
          ) -> tuple[float, float, str, float]:
    """A child's wall seconds, peak RSS (MB), with ``output`` what it printed, and its CPU
    seconds (user and system, its threads together)."""
    began = time.perf_counter()
    process = subprocess.Popen([python, *args], text=True,
                               stdout=subprocess.PIPE if output else subprocess.DEVNULL)
    said = process.stdout.read() if output else ""
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(args)}")
    return (time.perf_counter() - began, usage.ru_maxrss / 1024, said,
            usage.ru_utime + usage.ru_stime)


class Lake:
    """The world's held files, by day, and the root they are delivered to."""

    def __init__(self, work: Path, python: str, days: int, customers: int):
        self.python, self.root, self.held = python, work / "root", work / "held"
        shutil.rmtree(self.root, ignore_errors=True)
        if not (self.held / "landing_zone").is_dir():
            shutil.rmtree(self.held, ignore_errors=True)
            took, *_ = child(python, ["-m", "minilake", "generate", "--root", str(self.held),
                                        "--days", str(days), "--customers", str(customers),
                                        "--landing-only", "--steady"])
            print(f"generated {days} days of {customers:,} customers in {took:.0f} s",
                  flush=True)
        self.days: dict[str, list[Path]] = {}
        for path in sorted((self.held / "landing_zone").iterdir()):
            self.days.setdefault(path.stem.rsplit("_", 1)[-1], []).append(path)
        self.stamps = sorted(self.days)
        (self.root / "landing_zone").mkdir(parents=True)

    def deliver(self, *numbers: int) -> None:
        """Day ``n`` (1-based) of the world into the landing zone."""
        for n in numbers:
            for path in self.days[self.stamps[n - 1]]:
                shutil.copy(path, self.root / "landing_zone" / path.name)

    def build(self, first: int, last: int) -> float:
        """Days ``first`` to ``last`` delivered and run one at a time, by one child process
        (BUILD); the seconds it took."""
        plan = self.root.parent / "build.json"
        plan.write_text(json.dumps([[str(p) for p in self.days[self.stamps[n - 1]]]
                                    for n in range(first, last + 1)]))
        seconds, *_ = child(self.python, ["-c", BUILD, str(self.root), str(plan)])
        plan.unlink()
        return seconds

    def run(self) -> tuple[float, float]:
        seconds, peak, _, self.cpu_s = child(self.python, ["-m", "minilake", "run", "--root",
                                                          str(self.root)])
        return seconds, peak

    def date(self, n: int) -> dt.date:
        return dt.datetime.strptime(self.stamps[n - 1], "%Y%m%d").date()


def resend(lake: Lake, n: int) -> None:
    """Day ``n``'s files again, each with day ``n + 1``'s rows (new content: a resent file)."""
    for path in lake.days[lake.stamps[n - 1]]:
        following = next(p for p in lake.days[lake.stamps[n]] if p.suffix == path.suffix)
        shutil.copy(following, lake.root / "landing_zone" / path.name)


def erase_one(lake: Lake, n: int) -> str:
    """An erasure request, dated day ``n``, for a customer of day 1 still in day ``n - 1``."""
    first = lake.days[lake.stamps[0]]
    current = lake.days[lake.stamps[n - 2]]

    def ids(files: list[Path]) -> list[str]:
        path = next(p for p in files if p.name.startswith("customer_"))
        with open(path, newline="", encoding="utf-8") as handle:
            return [row["customer_id"] for row in csv.DictReader(handle)]

    still = set(ids(current))
    chosen = next(c for c in ids(first) if c in still)
    (lake.root / "landing_zone" / f"erasure_requests_{lake.stamps[n - 1]}.json").write_text(
        json.dumps([{"customer_id": int(chosen)}]))
    return chosen


def checkpoint(lake: Lake, day: int) -> dict:
    """The measurements at ``day``: days up to ``day - NORMAL_DAYS - 2`` are applied on entry;
    on exit every day up to ``day`` is."""
    out: dict = {"day": day}
    normal = []
    for n in range(day - NORMAL_DAYS - 1, day - 1):         # the normal days
        lake.deliver(n)
        normal.append(lake.run())
    out["normal_s"] = statistics.median(s for s, _ in normal)
    out["normal_runs"] = [round(s, 2) for s, _ in normal]
    out["normal_peak_mb"] = max(p for _, p in normal)
    lake.deliver(day)                                        # the day after next, then the late one
    out["skip_s"], _ = lake.run()
    lake.deliver(day - 1)
    out["late_s"], out["late_peak_mb"] = lake.run()
    resend(lake, day - 7)
    out["resent_s"], out["resent_peak_mb"] = lake.run()
    back = lake.date(max(1, day - 730))
    for name, how, value in (("as_of_old", "as_of", back.isoformat()),
                             ("as_of_yesterday", "as_of", lake.date(day - 1).isoformat()),
                             ("oldest_version", "version", "")):
        _, _, said, _ = child(lake.python, ["-c", READ, str(lake.root), how, value], output=True)
        out[f"{name}_s"] = json.loads(said)["seconds"]
        out[f"{name}_is"] = json.loads(said)["what"]
    _, _, said, _ = child(lake.python, ["-c", TABLES, str(lake.root)], output=True)
    out["tables"] = json.loads(said)
    out["erased_customer"] = erase_one(lake, day)
    out["erasure_s"], out["erasure_peak_mb"] = lake.run()
    return out


def say(m: dict) -> None:
    print(f"day {m['day']}: normal day {m['normal_s']:.2f} s (runs {m['normal_runs']}, peak "
          f"{m['normal_peak_mb']:.0f} MB); one day late {m['late_s']:.2f} s "
          f"({m['late_s'] / m['normal_s']:.1f}x); resent from a week ago {m['resent_s']:.2f} s "
          f"({m['resent_s'] / m['normal_s']:.1f}x); erasure of one customer "
          f"{m['erasure_s']:.2f} s; as_of {m['as_of_old_is']} {m['as_of_old_s']:.3f} s, "
          f"as_of yesterday {m['as_of_yesterday_s']:.3f} s, version {m['oldest_version_is']} "
          f"(the oldest kept) {m['oldest_version_s']:.3f} s",
          flush=True)
    slowest = max(m["tables"].items(), key=lambda kv: kv[1]["open_ms"])
    print(f"  opening a table: slowest {slowest[0]} {slowest[1]['open_ms']:.1f} ms; "
          + "; ".join(f"{name}: {t['files_live']} files live ({t['files_on_disk']} on disk), "
                      f"{t['log_entries']} log entries, {t['open_ms']:.1f} ms"
                      for name, t in m["tables"].items()
                      if name in ("customer", "product", "sales", "_ingest_log")), flush=True)


def years(work: Path, python: str, count: float, scale: float, out_json: str | None
          ) -> None:
    days = int(365 * count)
    points = [c for c in CHECKPOINTS if c <= days] or [days]
    lake = Lake(work, python, days, int(5000 * scale))
    built, measured = 0, []
    for point in points:
        began = time.perf_counter()
        if built < point - NORMAL_DAYS - 2:                 # up to the checkpoint's start
            lake.build(built + 1, point - NORMAL_DAYS - 2)
            built = point - NORMAL_DAYS - 2
        print(f"built days 1-{built}, one run a day, in {time.perf_counter() - began:.0f} s",
              flush=True)
        measured.append(checkpoint(lake, point))
        built = point
        say(measured[-1])
    first, last = measured[0], measured[-1]
    print(f"\nnormal day: day {first['day']} {first['normal_s']:.2f} s, day {last['day']} "
          f"{last['normal_s']:.2f} s, ratio {last['normal_s'] / first['normal_s']:.2f}")
    print("| day | normal day s | one day late s (× normal) | resent from a week ago s (× normal)"
          " | erasure s | as_of old / yesterday s | oldest version s | slowest open ms |")
    print("|---|---|---|---|---|---|---|---|")
    for m in measured:
        slowest = max(t["open_ms"] for t in m["tables"].values())
        print(f"| {m['day']} | {m['normal_s']:.2f} | {m['late_s']:.2f} "
              f"({m['late_s'] / m['normal_s']:.1f}×) | {m['resent_s']:.2f} "
              f"({m['resent_s'] / m['normal_s']:.1f}×) | {m['erasure_s']:.2f} | "
              f"{m['as_of_old_s']:.3f} / {m['as_of_yesterday_s']:.3f} | "
              f"{m['oldest_version_s']:.3f} |"
              f" {slowest:.1f} |")
    if out_json:
        Path(out_json).write_text(json.dumps(measured, indent=2))


if __name__ == "__main__":
    print("run it as: benchmarks/run.py --years N", file=sys.stderr)
    raise SystemExit(2)
