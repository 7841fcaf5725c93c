"""minilake at 1x, 10x, 100x and 1000x the sample, against the floor of the same I/O.

    .venv/bin/python benchmarks/run.py --scales 1 10 100 [--repeat 3] [--days 7] [--keep DIR]
    .venv/bin/python benchmarks/run.py --flat            # 60 days at 10x: day 60 vs day 2
    .venv/bin/python benchmarks/run.py --years 3         # three years of days (years.py)

For each scale it generates a world with ``minilake generate --landing-only`` (1x = 5,000
customers on day one and about 8,000 sales a day; a quarter of the customers with CRLF inside
their address), runs ``python -m minilake run`` on it in a child process, and prints per stage
(read, validate, SCD2 diff, commit; summed over the files, from the ingest log) the seconds,
the total wall time, rows per second and the peak RSS of the child. The floor is the least any
pipeline must do: read the same raw files with pyarrow and write them once to Parquet;
minilake's total is printed as a multiple of it. Both are run
``--repeat`` times (alternately) and their medians printed.

minilake, the floor and the DuckDB peer run in ``benchmarks/.venv-core`` (made once: the
pinned ``requirements.txt`` and the project), as ``make run`` installs minilake, not in the
project's .venv, which also holds what the suite needs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE_CUSTOMERS = 5000
# Scale worlds: this share of customers has CRLF, not LF, inside the quoted address (issue 12).
CRLF_ADDRESSES = "0.25"
STAGES = ["read_s", "validate_s", "diff_s", "commit_s"]
# Reading the ingest log imports minilake here, which sets Arrow's allocator in this
# process's environment: children get the setting this script was started with, so the floor
# and the peers run with Arrow's own (minilake's children set theirs themselves).
ALLOCATOR = "MIMALLOC_PURGE_DELAY"
ALLOCATOR_GIVEN = os.environ.get(ALLOCATOR)


def child_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ALLOCATOR}
    return env if ALLOCATOR_GIVEN is None else {**env, ALLOCATOR: ALLOCATOR_GIVEN}


def run_child(args: list[str], output: bool = False):
    """Run a command; return (wall seconds, peak RSS in MB of that process), and with
    ``output`` what it printed."""
    began = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE if output else subprocess.DEVNULL,
                               env=child_environment(), text=True)
    said = process.stdout.read() if output else ""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(args)}")
    return (seconds, usage.ru_maxrss / 1024, said) if output else (
        seconds, usage.ru_maxrss / 1024)


FLOOR = """
import json, sys, pyarrow as pa, pyarrow.csv as c, pyarrow.parquet as pq
from pathlib import Path
src, out = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(src.iterdir()):
    if p.suffix == ".csv":
        t = c.read_csv(p, parse_options=c.ParseOptions(newlines_in_values=True))
    elif p.suffix == ".txt":
        t = c.read_csv(p, read_options=c.ReadOptions(autogenerate_column_names=True),
                       parse_options=c.ParseOptions(delimiter="~"))
    else:
        t = pa.Table.from_pylist(json.loads(p.read_text()))
    pq.write_table(t, out / (p.name + ".parquet"))
"""


def stage_seconds(root: Path) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from minilake.lake.layout import Layout
    from minilake.lake.logs import read_log

    log = read_log(Layout.of(root))
    out = {s: float(log[s].sum()) for s in STAGES}
    out["rows"] = int(log["rows_read"].sum())
    out["files"] = len(log)
    out["per_file"] = log[["source", "file", "rows_read", *STAGES]].copy()
    return out


def one_scale(scale: float, days: int, work: Path, python: str, repeat: int) -> dict:
    """Generate a world, then ``repeat`` times: the floor, and minilake on a fresh copy of
    the landing zone (hard links: the world is not copied). Medians are reported: single runs
    on a shared 2-core machine swing by a fifth or more."""
    world = work / f"x{scale:g}_world"
    shutil.rmtree(world, ignore_errors=True)
    customers = int(SAMPLE_CUSTOMERS * scale)
    gen_s, gen_mb = run_child([python, "-m", "minilake", "generate", "--root", str(world),
                               "--customers", str(customers), "--days", str(days),
                               "--landing-only", "--crlf-addresses", CRLF_ADDRESSES])
    size = sum(p.stat().st_size for p in (world / "landing_zone").iterdir())
    floors, runs = [], []
    for _ in range(repeat):
        floor_dir = work / f"floor_x{scale:g}"
        shutil.rmtree(floor_dir, ignore_errors=True)
        floor_dir.mkdir()
        floors.append(run_child([python, "-c", FLOOR, str(world / "landing_zone"),
                                 str(floor_dir)]))
        shutil.rmtree(floor_dir)
        root = work / f"x{scale:g}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        shutil.copytree(world / "landing_zone", root / "landing_zone",
                        copy_function=os.link)
        total_s, peak_mb = run_child([python, "-m", "minilake", "run", "--root", str(root)])
        runs.append((total_s, peak_mb, stage_seconds(root)))
        shutil.rmtree(root)
    shutil.rmtree(world)
    floor_s = statistics.median(s for s, _ in floors)
    total_s = statistics.median(s for s, _, _ in runs)
    stages = min(runs, key=lambda r: abs(r[0] - total_s))[2]       # the median run's stages
    return {"scale": scale, "customers": customers, "days": days, "input_mb": size / 1e6,
            "generate_s": gen_s, "floor_s": floor_s, "floor_mb": max(m for _, m in floors),
            "total_s": total_s, "peak_mb": max(m for _, m, _ in runs), "repeat": repeat,
            "total_runs_s": [round(s, 2) for s, _, _ in runs],
            "floor_runs_s": [round(s, 2) for s, _ in floors], **stages}


def print_table(results: list[dict]) -> None:
    head = (f"{'scale':>6} {'customers':>10} {'input MB':>9} {'rows':>11} {'read':>7} "
            f"{'valid.':>7} {'diff':>7} {'commit':>7} {'total s':>8} {'rows/s':>9} "
            f"{'peak MB':>8} {'floor s':>8} {'x floor':>7}")
    print(head)
    for r in results:
        print(f"{r['scale']:>5g}x {r['customers']:>10,} {r['input_mb']:>9,.0f} {r['rows']:>11,} "
              f"{r['read_s']:>7.1f} {r['validate_s']:>7.1f} {r['diff_s']:>7.1f} "
              f"{r['commit_s']:>7.1f} {r['total_s']:>8.1f} {r['rows'] / r['total_s']:>9,.0f} "
              f"{r['peak_mb']:>8,.0f} {r['floor_s']:>8.1f} {r['total_s'] / r['floor_s']:>7.1f}")
    for r in results:
        if r["repeat"] > 1:
            print(f"{r['scale']:>5g}x runs (s): minilake {r['total_runs_s']}, "
                  f"floor {r['floor_runs_s']}; medians above, peak MB the largest")


def flat(work: Path, python: str, days: int, scale: float) -> None:
    """Ingest day by day (one run per day) and compare the time of the last day with day 2."""
    root = work / f"flat_x{scale:g}"
    shutil.rmtree(root, ignore_errors=True)
    held = work / f"flat_x{scale:g}_held"
    shutil.rmtree(held, ignore_errors=True)
    run_child([python, "-m", "minilake", "generate", "--root", str(held), "--days", str(days),
               "--customers", str(int(SAMPLE_CUSTOMERS * scale)), "--landing-only", "--steady",
               "--crlf-addresses", CRLF_ADDRESSES])
    files = sorted((held / "landing_zone").iterdir())
    by_day: dict[str, list[Path]] = {}
    for path in files:
        by_day.setdefault(path.stem.split("_")[-1], []).append(path)
    (root / "landing_zone").mkdir(parents=True)
    seconds = []
    for stamp in sorted(by_day):
        for path in by_day[stamp]:
            shutil.move(path, root / "landing_zone" / path.name)
        took, _ = run_child([python, "-m", "minilake", "run", "--root", str(root)])
        seconds.append(took)
    stages = stage_seconds(root)["per_file"]
    stages["work_s"] = stages[STAGES].sum(axis=1)
    per_day = stages.assign(day=stages["file"].str.extract(r"_(\d{8})\.")[0]).groupby("day")[
        "work_s"].sum()
    print(f"flat: {days} days at {scale:g}x (steady volumes), one run per day")
    print(f"  run wall time: day 2 {seconds[1]:.2f} s, day {days} {seconds[-1]:.2f} s, "
          f"ratio {seconds[-1] / seconds[1]:.2f}")
    print(f"  ingest work (read+validate+diff+commit): day 2 {per_day.iloc[1]:.2f} s, "
          f"day {days} {per_day.iloc[-1]:.2f} s, ratio {per_day.iloc[-1] / per_day.iloc[1]:.2f}")
    rows = stages.assign(day=stages["file"].str.extract(r"_(\d{8})\.")[0]).groupby("day")[
        "rows_read"].sum()
    print(f"  rows: day 2 {rows.iloc[1]:,}, day {days} {rows.iloc[-1]:,}")
    # One day is one run, and single runs swing by a fifth here: medians of five days too.
    early, late = slice(1, 6), slice(days - 5, days)
    wall = statistics.median(seconds[late]) / statistics.median(seconds[early])
    work = per_day.iloc[late].median() / per_day.iloc[early].median()
    print(f"  medians of days 2-6 and {days - 4}-{days}: run wall time "
          f"{statistics.median(seconds[early]):.2f} s, {statistics.median(seconds[late]):.2f} s, "
          f"ratio {wall:.2f}; ingest work {per_day.iloc[early].median():.2f} s, "
          f"{per_day.iloc[late].median():.2f} s, ratio {work:.2f}")
    shutil.rmtree(held, ignore_errors=True)


def run_tree(args: list[str]) -> tuple[float, float, float]:
    """Run a command, sampling the memory of it and its descendants (a Dask LocalCluster's
    workers) every 0.1 s; return (wall seconds, the driver's peak RSS in MB, the largest
    peak RSS of one descendant in MB)."""
    import psutil

    began = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, env=child_environment())
    driver = psutil.Process(process.pid)
    peaks: dict[int, int] = {}
    while process.poll() is None:
        try:
            for member in [driver, *driver.children(recursive=True)]:
                peaks[member.pid] = max(peaks.get(member.pid, 0), member.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    seconds = time.perf_counter() - began
    if process.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}")
    own = peaks.pop(process.pid, 0)
    return seconds, own / 2**20, max(peaks.values(), default=0) / 2**20


def engines(scales: list[float], days: int, work: Path, python: str, repeat: int,
            ranges: list[int]) -> None:
    """Per scale: ``minilake ingest`` of the week (split first, untimed) with the local engine
    and with ``--engine dask`` (a LocalCluster of a worker per core), alternately, ``repeat``
    times; then the Dask engine once per number of key ranges in ``ranges`` (more ranges than
    workers: how a file's work per range shrinks as it is cut for more workers)."""
    for scale in scales:
        world = work / f"x{scale:g}_world"
        shutil.rmtree(world, ignore_errors=True)
        run_child([python, "-m", "minilake", "generate", "--root", str(world), "--customers",
                   str(int(SAMPLE_CUSTOMERS * scale)), "--days", str(days), "--landing-only",
                   "--crlf-addresses", CRLF_ADDRESSES])

        def once(*extra: str, scale=scale, world=world) -> tuple[float, float, float, dict]:
            root = work / f"x{scale:g}"
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            shutil.copytree(world / "landing_zone", root / "landing_zone",
                            copy_function=os.link)
            # ingest alone is timed: split does not depend on the engine, nor do the marts
            # (which the run refreshes at its end, in the driver, whatever the engine)
            run_child([python, "-m", "minilake", "split", "--root", str(root)])
            figures = run_tree([python, "-m", "minilake", "ingest", "--root", str(root),
                                *extra])
            stages = stage_seconds(root)
            shutil.rmtree(root)
            return (*figures, stages)

        runs: dict[str, list] = {"local": [], "dask": []}
        for _ in range(repeat):
            runs["local"].append(once())
            runs["dask"].append(once("--engine", "dask"))
        print(f"\n## {scale:g}x, {days} days, {repeat} run(s) each (medians; every run's "
              f"seconds in brackets)")
        print("| engine | total s | driver peak MB | largest worker peak MB |")
        print("|---|---|---|---|")
        for name, got in runs.items():
            print(f"| {name} | {statistics.median(r[0] for r in got):.1f} "
                  f"({', '.join(f'{r[0]:.1f}' for r in got)}) | "
                  f"{max(r[1] for r in got):,.0f} | "
                  f"{max(r[2] for r in got):,.0f} |" if name == "dask" else
                  f"| {name} | {statistics.median(r[0] for r in got):.1f} "
                  f"({', '.join(f'{r[0]:.1f}' for r in got)}) | "
                  f"{max(r[1] for r in got):,.0f} | - |", flush=True)
        print("\n| ranges per file | total s | read s | validate s (slowest range, summed "
              "over files) | diff s (slowest range) | commit s | largest worker peak MB |")
        print("|---|---|---|---|---|---|---|")
        for n in ranges:
            seconds, _, worker, stages = once("--engine", "dask", "--ranges", str(n))
            print(f"| {n} | {seconds:.1f} | {stages['read_s']:.1f} | "
                  f"{stages['validate_s']:.1f} | {stages['diff_s']:.1f} | "
                  f"{stages['commit_s']:.1f} | {worker:,.0f} |", flush=True)
        shutil.rmtree(world)


BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
DBT_VENV = BENCH / ".venv-dbt"
CORE_VENV = BENCH / ".venv-core"


def venv(folder: Path, python: str, pins: list[Path], project: bool = False) -> Path:
    """A venv of its own at ``folder`` (created once, again when a pins file, or the project's
    pyproject.toml, is newer), holding the pinned ``pins`` (and this project, editable, when
    ``project``); its python."""
    stamp = folder / ".installed"
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]
    sources = [*pins, PROJECT / "pyproject.toml"] if project else pins
    if not stamp.exists() or any(stamp.stat().st_mtime < p.stat().st_mtime for p in sources):
        subprocess.run([python, "-m", "venv", "--clear", str(folder)], check=True)
        subprocess.run([*pip, *(a for p in pins for a in ("-r", str(p)))], check=True)
        if project:
            subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", str(PROJECT)],
                           check=True)
        stamp.touch()
    return folder / "bin" / "python"


def dbt_venv(python: str) -> Path:
    """The dbt-duckdb peer's own venv (pinned by requirements-dbt.txt)."""
    return venv(DBT_VENV, python, [BENCH / "requirements-dbt.txt"]).parent / "dbt"


def core_python(python: str) -> str:
    """minilake as ``make run`` installs it: the pinned core (requirements.txt) and the
    project, in a venv of its own. The project's .venv also holds what the suite needs, and
    pandera's first validation imports one of those when it is there (hypothesis, which
    schemathesis brings, for pandera's data strategies): 0.09 s more in every run."""
    return str(venv(CORE_VENV, python, [PROJECT / "requirements.txt"], project=True))


def peers(scales: list[float], days: int, work: Path, python: str, repeat: int,
          with_dbt: bool) -> None:
    """Per scale, on one generated world, interleaved, ``repeat`` times: minilake (the week in
    one run; one day per run, its SCD2 step and its marts' refresh each in a process of its
    own), the hand-written DuckDB peer (the same two steps in SQL, a process each) and, with
    ``with_dbt``, dbt-duckdb snapshots. Prints medians (every run's figure beside) and the
    ratios the issue sets targets for, and checks each peer's current and total version
    counts, and the DuckDB peer's marts, against minilake's."""
    sys.path.insert(0, str(BENCH))
    import peers as peer

    dbt = dbt_venv(python) if with_dbt else None
    for scale in scales:
        peers_at(scale, days, work, python, repeat, dbt, peer)


def peers_at(scale: float, days: int, work: Path, python: str, repeat: int, dbt: Path | None,
             peer) -> None:
    world = work / f"x{scale:g}_world"
    shutil.rmtree(world, ignore_errors=True)
    run_child([python, "-m", "minilake", "generate", "--root", str(world), "--customers",
               str(int(SAMPLE_CUSTOMERS * scale)), "--days", str(days), "--landing-only",
               "--crlf-addresses", CRLF_ADDRESSES])
    landing = world / "landing_zone"
    stamps = sorted({p.stem.rsplit("_", 1)[1] for p in landing.iterdir()})

    def fresh(name: str) -> Path:
        folder = work / f"x{scale:g}_{name}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        return folder

    def week() -> tuple[float, float, dict]:
        root = fresh("week")
        shutil.copytree(landing, root / "landing_zone", copy_function=os.link)
        seconds, peak = run_child([python, "-m", "minilake", "run", "--root", str(root)])
        return seconds, peak, minilake_first_rows(root, peer.count_queries())

    def per_day(day) -> tuple[tuple[float, float, float], Path]:
        """Each day in a process of its own: (seconds, of which the marts' refresh, peak MB)
        summed (the peak: the largest) over the days."""
        root = fresh("day")
        total = marts = peak = 0.0
        for stamp in stamps:
            seconds, mb, said = run_child(day(root, stamp), output=True)
            total, peak = total + seconds, max(peak, mb)
            marts += json.loads(said.splitlines()[-1])["marts_s"] if said else 0.0
        return (total, marts, peak), root

    def minilake_day(root: Path, stamp: str) -> list[str]:
        (root / "landing_zone").mkdir(exist_ok=True)
        for p in landing.glob(f"*_{stamp}.*"):
            os.link(p, root / "landing_zone" / p.name)
        return [python, "-c", MINILAKE_DAY, str(root)]

    def duckdb_day(root: Path, stamp: str) -> list[str]:
        return [python, str(BENCH / "peers.py"), "day", str(root / "peer.duckdb"),
                str(landing), stamp]

    def dbt_day(root: Path, stamp: str) -> list[str]:
        os.environ["PEER_DB"] = str(root / "dbt.duckdb")
        # nothing over the network: no usage statistics, no version check
        os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
        os.environ["DBT_VERSION_CHECK"] = "false"
        return [str(dbt), "--quiet", "snapshot", "--project-dir", str(BENCH / "dbt_peer"),
                "--profiles-dir", str(BENCH / "dbt_peer"), "--target-path",
                str(root / "target"), "--log-path", str(root / "logs"), "--vars",
                json.dumps({"landing": str(landing), "day": stamp})]

    def floor() -> tuple[float, float]:
        out = fresh("floor")
        return run_child([python, "-c", FLOOR, str(landing), str(out)])

    names = ["minilake, week in one run (with marts)", "the floor, the week (read, write Parquet)",
             "minilake, one day per run", "DuckDB peer, one day per run"]
    if dbt is not None:
        names.append("dbt-duckdb snapshots, one day per run (no marts)")
    figures: dict[str, list[tuple[float, float, float]]] = {n: [] for n in names}
    differ: list[str] = []
    for _ in range(repeat):
        seconds, peak, want = week()
        figures[names[0]].append((seconds, 0.0, peak))
        seconds, peak = floor()
        figures[names[1]].append((seconds, 0.0, peak))
        day, root = per_day(minilake_day)
        figures[names[2]].append(day)
        assert minilake_first_rows(root, peer.count_queries()) == want, \
            "minilake per day differs from the week"
        own_marts = minilake_first_rows(root, peer.total_queries())
        day, root = per_day(duckdb_day)
        figures[names[3]].append(day)
        got = peer.counts(root / "peer.duckdb")
        assert got == want, f"DuckDB peer counts {got} != minilake {want}"
        differ += check_marts(peer.mart_totals(root / "peer.duckdb"), own_marts)
        if dbt is not None:
            day, root = per_day(dbt_day)
            figures[names[4]].append(day)
            got = peer.counts(root / "dbt.duckdb", dbt=True)
            assert got == want, f"dbt peer counts {got} != minilake {want}"
    tables = ", ".join(f"{k}: {c[0]:,} current, {c[1]:,} versions" for k, c in want.items())
    marts = ", ".join(f"{k}: {r:,} rows" for k, (r, _, _) in own_marts.items())
    same = "every peer's counts and the DuckDB peer's marts equal minilake's" if not differ \
        else "every peer's counts equal minilake's; MARTS DIFFER: " + "; ".join(differ)
    print(f"\n## {scale:g}x, {days} days ({tables}; marts {marts}; {same})")
    print("| what | seconds (runs) | of which SCD2 | of which the marts' refresh | "
          "peak RSS MB (runs) |")
    print("|---|---|---|---|---|")

    def median(got: list, i: int) -> float:
        return statistics.median(r[i] for r in got)

    def runs(got: list, i: int, form: str) -> str:
        return ", ".join(format(r[i], form) for r in got)

    for name, got in figures.items():
        split = "-" if name in names[:2] else f"{median(got, 0) - median(got, 1):.1f}"
        marts_s = "-" if name in names[:2] or name.startswith("dbt") else \
            f"{median(got, 1):.1f} ({runs(got, 1, '.2f')})"
        print(f"| {name} | {median(got, 0):.1f} ({runs(got, 0, '.1f')}) | {split} | {marts_s} | "
              f"{median(got, 2):,.0f} ({runs(got, 2, ',.0f')}) |", flush=True)
    own, other = figures[names[2]], figures[names[3]]
    print(f"minilake / DuckDB peer, one day per run: SCD2 (the day's process bar the marts) "
          f"{(median(own, 0) - median(own, 1)) / (median(other, 0) - median(other, 1)):.2f}x, "
          f"the marts' refresh {median(own, 1) / median(other, 1):.2f}x, the whole day "
          f"{median(own, 0) / median(other, 0):.2f}x, peak memory "
          f"{median(own, 2) / median(other, 2):.2f}x; the week in one run "
          f"{median(figures[names[0]], 0) / median(figures[names[1]], 0):.2f}x the floor",
          flush=True)
    shutil.rmtree(world)


# One day per run, as the peer's is: the SCD2 step (a run without the marts), then the marts'
# refresh from what that run applied, in the same process as ``run`` does it; the refresh is
# timed in the process (as the peer times its own) and printed as the last line.
MINILAKE_DAY = """
import json, sys, time, minilake
minilake.run(sys.argv[1], marts=False, progress=False)
began = time.perf_counter()
minilake.refresh_marts(sys.argv[1])
print(json.dumps({"marts_s": time.perf_counter() - began}))
"""
def minilake_first_rows(root: Path, queries: dict[str, str]) -> dict[str, tuple]:
    """The first row of each query (by its name), answered by ``minilake.sql`` in a child (no
    minilake import here; at 1000x a whole table read into pandas would take gigabytes)."""
    code = ("import json, sys, minilake\n"
            "queries = json.loads(sys.argv[2])\n"
            "print(json.dumps({name: list(minilake.sql(query, root=sys.argv[1])"
            ".to_dict('records')[0].values()) for name, query in queries.items()}))")
    done = subprocess.run([sys.executable, "-c", code, str(root), json.dumps(queries)],
                          check=True, capture_output=True, text=True)
    return {k: tuple(v) for k, v in json.loads(done.stdout).items()}


def check_marts(got: dict, want: dict) -> list[str]:
    """The peer's marts against minilake's: rows and orders equal, money within what adding
    the same doubles in another order can move it (a cent a row, and 1e-11 of the sum: at
    1000x a product's month sums 2 M prices, and the two engines add them in other orders).
    Returns the differences (printed with the figures, which are not lost)."""
    out = []
    for name, (rows, money, orders) in want.items():
        p_rows, p_money, p_orders = got[name]
        if (p_rows, p_orders) != (rows, orders) or abs(p_money - money) > 0.01 * rows + (
                1e-11 * abs(money)):
            out.append(f"DuckDB peer's {name} {got[name]} != minilake's {want[name]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 10, 100])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of minilake and of the floor per scale (medians printed)")
    parser.add_argument("--flat", action="store_true", help="the flat-cost run instead")
    parser.add_argument("--flat-days", type=int, default=60)
    parser.add_argument("--flat-scale", type=float, default=10)
    parser.add_argument("--years", type=float, default=None, help="the long-life run instead: "
                        "that many years of daily history, measured at day 30, 365, 730, 1095 "
                        "(benchmarks/years.py)")
    parser.add_argument("--years-scale", type=float, default=1)
    parser.add_argument("--keep", default=None, help="work folder to keep (default: a temp)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--engine", choices=["local", "dask"], default="local",
                        help="dask: the local engine against --engine dask per scale")
    parser.add_argument("--peers", action="store_true", help="minilake against a DuckDB SQL "
                        "peer and dbt-duckdb snapshots, one day per run")
    parser.add_argument("--no-dbt", action="store_true",
                        help="with --peers: leave dbt-duckdb out (at 1000x it runs for long)")
    parser.add_argument("--ranges", type=int, nargs="+", default=[2, 4, 8],
                        help="with --engine dask: key ranges per file to try")
    parser.add_argument("--python", default=None,
                        help="run minilake, the floor and the DuckDB peer with this interpreter "
                        "instead of benchmarks/.venv-core (the suite's smoke test gives its own: "
                        "nothing is installed while testing)")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="minilake-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    # the Dask engine needs its extra, which only the project's .venv holds
    python = (args.python or sys.executable if args.engine == "dask"
              else args.python or core_python(sys.executable))
    print(f"# {dt.date.today()} on {platform.node()}: {os.cpu_count()} cores, "
          f"Python {platform.python_version()} ({python}); work folder {work}", flush=True)
    try:
        if args.flat:
            flat(work, python, args.flat_days, args.flat_scale)
            return
        if args.years:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import years  # benchmarks/years.py, beside this script

            years.years(work, python, args.years, args.years_scale, args.json)
            return
        if args.peers:
            peers(args.scales, args.days, work, python, args.repeat, not args.no_dbt)
            return
        if args.engine == "dask":
            engines(args.scales, args.days, work, python, args.repeat, args.ranges)
            return
        results = []
        for scale in args.scales:
            results.append(one_scale(scale, args.days, work, python, args.repeat))
            print_table(results[-1:]) if len(results) == 1 else None
        print_table(results)
        if args.json:
            Path(args.json).write_text(json.dumps(
                [{k: v for k, v in r.items() if k != "per_file"} for r in results], indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
