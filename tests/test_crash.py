"""Crash safety (issue 5): SIGKILL at 50+ points of a run, then a run to completion, must give
exactly what one uninterrupted run gives.

Points are named hooks in the code (``minilake.crashpoints``, set by ``MINILAKE_CRASH_AT``) hit
for the n-th time, plus kills at random moments that land inside library calls (Delta commits,
Parquet writes). ``MINILAKE_CRASH_DEEP=1`` tries every occurrence of every hook instead of a
spread of them (a few hundred runs).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

import minilake
from minilake.generate import generate
from minilake.layout import Layout
from minilake.tables import read_log

DEEP = os.environ.get("MINILAKE_CRASH_DEEP") == "1"
VOLATILE_LOG = ["started_at", "finished_at", "read_s", "validate_s", "diff_s", "commit_s",
                "table_version"]
# hook -> how many times one run passes it in the world below
HOOKS = {"split.before_move": 12, "split.after_move": 12, "ingest.after_read": 11,
         "ingest.after_diff": 11, "ingest.report_written": 10, "ingest.before_commit": 10,
         "ingest.after_commit": 10, "ingest.after_log": 10, "quarantine.after_log": 2,
         "quarantine.after_reason": 2}
SPREAD = {12: [1, 4, 8, 12], 11: [1, 3, 5, 7, 9, 11], 10: [1, 2, 3, 4, 6, 8, 10], 2: [1, 2]}
TIMED_KILLS = 12


def file_contents(root: Path) -> list[str]:
    """sha256 of every delivered file, wherever it is now (reason files are ours, not theirs)."""
    return sorted(hashlib.sha256(p.read_bytes()).hexdigest()
                  for folder in ("landing_zone", "archive", "quarantine")
                  for p in (root / folder).rglob("*")
                  if p.is_file() and not p.name.endswith(".reason.txt"))


def outcome(root: Path) -> dict:
    """Everything a run leaves behind that must not depend on crashes."""
    out = {}
    for source in ("customer", "product", "sales"):
        frame = minilake.read_table(source, root=root)
        out[source] = frame.sort_values(list(frame.columns[:2]) + ["effective_from"]) \
            .reset_index(drop=True)
    log = read_log(Layout.of(root)).drop(columns=VOLATILE_LOG)
    out["log"] = log.sort_values(["source", "file"]).reset_index(drop=True)
    for folder in ("error_reports", "quarantine"):
        out[folder] = {str(p.relative_to(root)): p.read_bytes()
                       for p in sorted((root / folder).rglob("*")) if p.is_file()}
    out["files"] = file_contents(root)
    return out


def assert_same(got: dict, want: dict, case: str) -> None:
    for key in ("customer", "product", "sales", "log"):
        pd.testing.assert_frame_equal(got[key], want[key], obj=f"{case}: {key}")
    for key in ("error_reports", "quarantine", "files"):
        assert got[key] == want[key], f"{case}: {key}"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """4 days of 3 sources with bad rows, an unreadable file and a truncated snapshot."""
    root = tmp_path_factory.mktemp("crash_world")
    generate(root, start="2024-10-09", days=4, customers=300, seed=11, landing_only=True)
    landing = root / "landing_zone"
    sales = landing / "sales_20241011.txt"
    lines = sales.read_bytes().split(b"\r\n")
    lines[5] = b"~".join(lines[5].split(b"~")[:5] + [b"ERROR"] + lines[5].split(b"~")[6:])
    sales.write_bytes(b"\r\n".join(lines))
    (landing / "products_20241012.json").write_text('{"not": "an array"}')
    customers = landing / "customer_20241012.csv"
    customers.write_bytes(customers.read_bytes()[:20000])      # a truncated export
    return root


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("crash_reference") / "root"
    shutil.copytree(world, root)
    result = minilake.run(root)
    assert [f.file for f in result.ingest.quarantined] == ["customer_20241012.csv",
                                                           "products_20241012.json"]
    return outcome(root)


def run_cli(root: Path, env: dict | None = None, kill_after: float | None = None) -> int:
    process = subprocess.Popen([sys.executable, "-m", "minilake", "run", "--root", str(root)],
                               env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    if kill_after is not None:
        try:
            process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=300)
    assert b"Traceback" not in err, err.decode()
    return process.returncode


def crash_cases(duration: float) -> list[tuple[str, str | None, float | None]]:
    """Hook cases, then kills at random moments within an uninterrupted run's ``duration``
    (after the ~1 s of imports, where nothing happens yet)."""
    cases = []
    for hook, times in HOOKS.items():
        for n in (range(1, times + 1) if DEEP else SPREAD[times]):
            cases.append((f"{hook}:{n}", f"{hook}:{n}", None))
    rng = random.Random(5)
    cases += [(f"timed kill {i}", None, round(rng.uniform(0.5, 1.0) * duration, 2))
              for i in range(TIMED_KILLS)]
    return cases


def test_crash_anywhere_then_rerun_equals_an_uninterrupted_run(world, reference, tmp_path):
    timing = tmp_path / "timing"
    shutil.copytree(world, timing)
    began = time.perf_counter()
    run_cli(timing)
    cases = crash_cases(time.perf_counter() - began)
    assert len(cases) >= 50

    def one(index: int) -> tuple[str, int, dict]:
        case, hook, delay = cases[index]
        root = tmp_path / f"case{index}"
        shutil.copytree(world, root)
        env = {"MINILAKE_CRASH_AT": hook} if hook else {}
        killed = run_cli(root, env, kill_after=delay)
        finished = run_cli(root)                    # the next run finishes the job
        return case, killed, finished, outcome(root)

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, range(len(cases))))
    killed_at = 0
    for case, killed, finished, got in results:
        if case.startswith("timed") and killed != -signal.SIGKILL:
            continue                                # the run ended before the kill
        assert killed == -signal.SIGKILL, f"{case}: the hook was not reached"
        killed_at += 1
        # 1 while it still quarantines a file, 0 if the killed run had done that already
        assert finished in (0, 1), f"{case}: the completing run's exit status"
        assert_same(got, reference, case)
    print(f"\ncrash harness: {killed_at} kills survived ({len(cases) - TIMED_KILLS} hooks, "
          f"{killed_at - len(cases) + TIMED_KILLS} timed) of {len(cases)} cases "
          f"in {time.perf_counter() - began:.0f} s")
    assert killed_at >= 50
