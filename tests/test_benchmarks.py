"""The benchmark script runs at 1x as a smoke test (issue 7); real figures are in
benchmarks/README.md, measured by the script itself, not by timed tests."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_benchmark_runs_at_the_sample_scale(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--scales", "1",
                           "--repeat", "2", "--keep", str(tmp_path / "work"), "--json",
                           str(tmp_path / "figures.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    (row,) = json.loads((tmp_path / "figures.json").read_text())
    assert row["scale"] == 1 and row["customers"] == 5000
    assert row["rows"] > 100_000 and row["files"] == 21
    assert row["total_s"] > 0 and row["floor_s"] > 0 and row["peak_mb"] > 50
    assert len(row["total_runs_s"]) == len(row["floor_runs_s"]) == 2
    for stage in ("read_s", "validate_s", "diff_s", "commit_s"):
        assert row[stage] >= 0
    assert "x floor" in done.stdout and "1x" in done.stdout
