"""The benchmark script runs at 1x as a smoke test (issue 7); real figures are in
benchmarks/README.md, measured by the script itself, not by timed tests: here no time is
asserted, only what the figures must be whatever the machine's speed."""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import signal
import statistics
import subprocess
import sys

import pytest
from conftest import REPO
from support import rawfiles as raw
from support.commands import HUNG_AFTER

from minilake.generate import generate

READERS = {"customer": raw.customers, "products": raw.products, "sales": raw.sales}


def benchmark(*args: str) -> subprocess.CompletedProcess:
    """``benchmarks/run.py ARGS`` to its end; one still running after HUNG_AFTER seconds (a
    hang, not a slow machine) fails the test with its threads' stacks."""
    process = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "run.py"), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONFAULTHANDLER": "1"},
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=HUNG_AFTER)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)                      # its stacks
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)               # and the run it waits for
        out, err = process.communicate()
        pytest.fail(f"benchmarks/run.py {' '.join(args)} still running after {HUNG_AFTER} s; "
                    f"its output:\n{out[-2000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def the_1x_world(folder) -> tuple[int, float]:
    """The world the script generates at 1x (the same arguments: the same files, byte for
    byte): its rows, counted by the tests' own readers, and its size in MB."""
    generate(folder, customers=5000, days=7, landing_only=True, crlf_addresses=0.25)
    files = sorted((folder / "landing_zone").iterdir())
    rows = sum(len(READERS[p.name.split("_")[0]](p)) for p in files)
    return rows, sum(p.stat().st_size for p in files) / 1e6


def test_benchmark_runs_at_the_sample_scale(tmp_path):
    done = benchmark("--scales", "1", "--repeat", "2", "--keep", str(tmp_path / "work"),
                     "--json", str(tmp_path / "figures.json"), "--python", sys.executable)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads((tmp_path / "figures.json").read_text())
    rows, megabytes = the_1x_world(tmp_path / "world")
    assert row["scale"] == 1 and row["customers"] == 5000 and row["days"] == 7
    assert (row["rows"], row["files"], row["input_mb"]) == (rows, 21, megabytes)
    assert row["repeat"] == len(row["total_runs_s"]) == len(row["floor_runs_s"]) == 2
    # the figures are medians of the runs listed (which are rounded to 0.01 s)
    assert row["total_s"] == pytest.approx(statistics.median(row["total_runs_s"]), abs=0.01)
    assert row["floor_s"] == pytest.approx(statistics.median(row["floor_runs_s"]), abs=0.01)
    assert min(row["total_runs_s"] + row["floor_runs_s"]) > 0
    assert row["peak_mb"] > 50                     # a measurement: the interpreter alone
    for stage in ("read_s", "validate_s", "diff_s", "commit_s"):
        assert row[stage] > 0, stage               # each stage is timed on every file
    assert "x floor" in done.stdout and "1x" in done.stdout


SCRIPTS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py"))
HELPERS = {"peers.py", "years.py"}      # run by run.py (a child, a module), not by hand


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_script_starts(script, monkeypatch):
    """Each script's imports resolve and its arguments parse (``--help``, in this process);
    the helpers run.py runs are imported. A script no test runs once stopped at an import
    (s3.py, after the SeaweedFS launcher moved under tests/support/)."""
    path = REPO / "benchmarks" / script
    monkeypatch.setattr(sys, "path", [str(path.parent), *sys.path])   # restored after
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    before = set(sys.modules)
    try:
        if script in HELPERS:
            runpy.run_path(str(path), run_name=f"benchmark_{path.stem}")
            return
        out = io.StringIO()
        with pytest.raises(SystemExit) as done, contextlib.redirect_stdout(out):
            runpy.run_path(str(path), run_name="__main__")
        assert done.value.code == 0 and out.getvalue().startswith("usage:"), out.getvalue()
    finally:            # the scripts' own modules (run, years) go: each test imports its own
        for name in set(sys.modules) - before:
            if str(getattr(sys.modules[name], "__file__", "")).startswith(str(path.parent)):
                del sys.modules[name]
