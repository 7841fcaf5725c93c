"""The snapshot safety valve and one writing command per root (issue 5)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import rawfiles as raw
from support.commands import minilake as minilake_cli

import minilake
from minilake.lake.layout import Layout
from minilake.lake.lock import RootBusy, hold
from minilake.lake.logs import read_log


@pytest.fixture
def truncated(small_root, tmp_path) -> Path:
    """Three good days, then a customer snapshot cut to a third of its rows."""
    shutil.copytree(small_root / "landing_zone", tmp_path / "landing_zone")
    path = tmp_path / "landing_zone" / "customer_20241012.csv"
    rows = path.read_bytes().split(b'\n"')
    path.write_bytes(b'\n"'.join(rows[: len(rows) // 3]) + b"\n")
    return tmp_path


def test_a_truncated_snapshot_is_quarantined(truncated):
    done = minilake_cli("run", "--root", str(truncated))
    assert done.returncode == 1
    assert "customer_20241012.csv: quarantined: would expire" in done.stdout
    reason = (truncated / "quarantine" / "customer" / "customer_20241012.csv.reason.txt")
    assert "--allow-mass-delete" in reason.read_text()
    current = minilake.read_table("customer", as_of="2024-10-12", root=truncated)
    on_day_3 = minilake.read_table("customer", as_of="2024-10-11", root=truncated)
    assert len(current) == len(on_day_3), "the table did not change"
    assert not (truncated / "error_reports" / "errors_customer_20241012.csv").exists()


def test_allow_mass_delete_applies_it(truncated):
    done = minilake_cli("run", "--root", str(truncated), "--allow-mass-delete")
    assert done.returncode == 0, done.stdout + done.stderr
    log = read_log(Layout.of(truncated))
    row = log[log["file"] == "customer_20241012.csv"].iloc[0]
    archive = truncated / "archive" / "customer"
    kept = set(raw.customers(archive / "customer_20241012.csv")["customer_id"])
    gone = set(raw.customers(archive / "customer_20241011.csv")["customer_id"]) - kept
    assert (row["status"], row["rows_read"], row["expired"]) == ("applied", len(kept), len(gone))
    current = minilake.read_table("customer", as_of="2024-10-12", root=truncated)
    assert len(current) == row["rows_loaded"]


def test_a_second_writer_exits_at_once_naming_the_holder(small_root, tmp_path):
    shutil.copytree(small_root / "landing_zone", tmp_path / "landing_zone")
    with hold(Layout.of(tmp_path).root, "run (test)"):      # held until the checks are done:
        done = minilake_cli("run", "--root", str(tmp_path))  # it ended without waiting for it
        assert done.returncode == 2
        assert f"pid {os.getpid()} (run (test)" in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert (tmp_path / "landing_zone" / "sales_20241009.txt").exists(), "nothing moved"
        with pytest.raises(RootBusy):
            with hold_in_child(tmp_path):
                pass
    assert minilake_cli("run", "--root", str(tmp_path)).returncode == 0   # free again


class hold_in_child:
    """Try the lock from another process (flock is per open file, so a thread would not do)."""

    def __init__(self, root: Path):
        self.root = root

    def __enter__(self):
        code = ("import sys; from pathlib import Path; from minilake.lake.lock import hold\n"
                "try:\n  with hold(Path(sys.argv[1]), 'x'): pass\n"
                "except Exception as e: print(type(e).__name__); sys.exit(3)")
        done = subprocess.run([sys.executable, "-c", code, str(self.root)], capture_output=True,
                              text=True)
        if done.returncode == 3 and "RootBusy" in done.stdout:
            raise RootBusy("held")
        return self

    def __exit__(self, *exc):
        return False


def test_a_lock_left_by_a_killed_run_is_taken_over(small_root, tmp_path):
    shutil.copytree(small_root / "landing_zone", tmp_path / "landing_zone")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from pathlib import Path\n"
                               "from minilake.lake.lock import hold\n"
                               "with hold(Path(sys.argv[1]), 'run'):\n"
                               "    print('held', flush=True); time.sleep(600)", str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert minilake_cli("run", "--root", str(tmp_path)).returncode == 2
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert str(holder.pid) in (tmp_path / ".minilake.lock").read_text(), "the lock is left"
    done = minilake_cli("-v", "run", "--root", str(tmp_path))
    assert done.returncode == 0
    assert "taking over the lock left by a run that did not finish" in done.stderr
    assert str(holder.pid) in done.stderr


def test_the_api_is_reentrant_within_one_process(small_root, tmp_path):
    shutil.copytree(small_root / "landing_zone", tmp_path / "landing_zone")
    with hold(Layout.of(tmp_path).root, "notebook"):
        assert minilake.run(tmp_path).ok         # run -> split -> ingest, one lock


def test_a_root_whose_path_delta_cannot_hold_is_refused_before_anything_moves(small_root,
                                                                                tmp_path):
    root = tmp_path / "shop%20data"          # delta-rs would read /shop data/
    shutil.copytree(small_root / "landing_zone", root / "landing_zone")
    landed = sorted(p.name for p in (root / "landing_zone").iterdir())
    done = minilake_cli("run", "--root", str(root))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], "one line"
    assert str(root) in done.stderr and "'%'" in done.stderr
    assert sorted(p.name for p in (root / "landing_zone").iterdir()) == landed
    assert not (root / "archive").exists() and not (root / "tables").exists()
