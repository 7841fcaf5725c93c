"""A new user's first hour (issue 35): stopping a run, a folder that is no lake, the report
after the README's own flow, and the command line's small courtesies."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from deltalake import DeltaTable
from support.commands import HUNG_AFTER, finish, start
from support.commands import minilake as cli

import minilake
from minilake.generate import generate
from minilake.lake.layout import Layout
from minilake.lake.logs import read_log

SOURCES = ("customer", "product", "sales")


@pytest.fixture(scope="module")
def bigger(tmp_path_factory) -> Path:
    """Five days of four times the sample's customers: runs long enough to be stopped."""
    root = tmp_path_factory.mktemp("bigger")
    generate(root, start="2024-10-09", days=5, customers=20_000, seed=35, landing_only=True)
    return root


@pytest.fixture(scope="module")
def uninterrupted(bigger, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bigger_whole") / "root"
    shutil.copytree(bigger, root)
    assert minilake.run(root).ok
    return {s: minilake.read_table(s, root=root) for s in SOURCES}


def applied(root: Path) -> set[tuple[str, str]]:
    """(source, file) of every file the ingest log says is applied."""
    log = read_log(Layout.of(root))
    return set(zip(*(log.loc[log["status"] == "applied", c] for c in ("source", "file")),
                   strict=True))


def committed(root: Path) -> set[tuple[str, str]]:
    """(source, file) of every file a commit of its table names (docs/guarantees.md: the
    commit metadata ``minilake``): applied, whether the ingest log says so yet or not (a run
    logs its files when they are done)."""
    out = set()
    for source in SOURCES:
        table = Layout.of(root).table(source)
        if (table / "_delta_log").is_dir():
            out |= {(source, json.loads(entry["minilake"])["file"])
                    for entry in DeltaTable(table).history() if "minilake" in entry}
    return out


@pytest.mark.parametrize(("sent", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_at_the_next_file_and_the_rerun_finishes_it(
        bigger, uninterrupted, tmp_path, sent, status):
    """Stopped at the next file boundary, counted in files: after the signal each source
    (they go side by side) finishes at most the file it was applying, the file named in the
    last line is not applied, and each file applied was said."""
    root = tmp_path / "root"
    shutil.copytree(bigger, root)
    # paused after the third commit, so that the signal finds files still to apply however
    # slow the machine (a loaded one once let the run reach its marts first)
    process = start("run", "--root", str(root), env={"MINILAKE_PAUSE_AT": "ingest.after_commit:3"})
    watched = psutil.Process(process.pid)
    deadline = time.monotonic() + HUNG_AFTER
    while watched.status() != psutil.STATUS_STOPPED:
        assert process.poll() is None, "the run ended without pausing after its third commit"
        assert time.monotonic() < deadline, f"not paused after {HUNG_AFTER} s (a hang)"
        time.sleep(0.05)
    process.send_signal(sent)                 # held by the kernel until the run goes on
    before = committed(root)
    process.send_signal(signal.SIGCONT)
    done = finish(process)
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr and not watched.is_running()
    last = done.stderr.strip().splitlines()[-1]
    stop = re.fullmatch(rf"minilake run: interrupted \({signal.Signals(sent).name}\): stopped "
                        r"before applying (\w+)/(\S+); .*", last)
    assert stop, last
    after = applied(root)                     # logged as the run stopped
    assert after == committed(root)
    finished = sorted(after - before)
    assert len({source for source, _ in finished}) == len(finished), finished
    assert stop.groups() not in after
    assert len(after) < len(list((bigger / "landing_zone").iterdir())), "nothing was left"
    said = [line for line in done.stdout.splitlines() if " read, " in line]
    assert len(said) == len(after), said
    rerun = cli("run", "--root", str(root))
    assert rerun.returncode == 0, rerun.stderr
    for source, want in uninterrupted.items():
        pd.testing.assert_frame_equal(minilake.read_table(source, root=root), want, obj=source)


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("args", [["run"], ["status"], ["report"], ["ingest"], ["split"],
                                  ["sql", "SELECT 1"], ["export", "customer"], ["vacuum"],
                                  ["marts"], ["reset"]])
def test_a_folder_that_is_no_lake_is_one_line_and_nothing_is_made(tmp_path, args):
    (tmp_path / "notes.txt").write_text("my own files")
    before = listing(tmp_path)
    done = cli(*args, "--root", str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "is not a minilake root" in done.stderr
    assert "minilake init" in done.stderr and "Traceback" not in done.stderr
    assert listing(tmp_path) == before


def test_init_makes_a_root_that_runs(tmp_path):
    said = cli("init", "--root", str(tmp_path / "lake"))
    assert said.returncode == 0 and "made minilake.toml, landing_zone/" in said.stdout
    assert cli("run", "--root", str(tmp_path / "lake")).returncode == 0
    again = cli("init", "--root", str(tmp_path / "lake"))
    assert "nothing to make" in again.stdout


def test_report_after_the_workbooks_flow_matches_up_to_the_last_day_of_the_references(
        repo_copy):
    assert cli("run", "--root", str(repo_copy)).returncode == 0
    minilake.land_sample(repo_copy, "broken_day")
    cli("run", "--root", str(repo_copy))                    # the broken day: bad rows
    done = cli("report", "--root", str(repo_copy))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "compared with final_results/ up to 2024-10-15" in done.stdout
    assert done.stdout.count(": matches") == 5
    growth = pd.read_csv(repo_copy / "reports" / "customer_growth.csv")
    assert growth["date"].max() == "2024-10-16"            # the reports themselves go on


def test_the_small_courtesies_of_the_command_line(tmp_path, small_root):
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("minilake ")
    root = tmp_path / "root"
    shutil.copytree(small_root / "landing_zone", root / "landing_zone")
    verbose = cli("run", "--root", str(root), "-v")          # -v after the command
    assert verbose.returncode == 0 and "INFO " in verbose.stderr
    status = cli("status", "--root", str(root), "--json")
    document = json.loads(status.stdout)
    assert {"sources", "erasures", "pulls", "versions"} <= set(document)
    assert [s["source"] for s in document["sources"]] == list(SOURCES)
    for bad in (["--days", "0"], ["--customers", "0"], ["--days", "x"]):
        refused = cli("generate", "--root", str(tmp_path / "world"), *bad)
        assert refused.returncode == 2 and "positive whole number" in refused.stderr
        assert not (tmp_path / "world").exists()
    help_text = cli("generate", "--help").stdout
    assert "--days" in help_text and "s3://" not in help_text.split("--root")[1].split("--")[0]


def test_the_dask_engine_without_its_extra_is_one_line(tmp_path, small_root):
    root = tmp_path / "root"
    shutil.copytree(small_root / "landing_zone", root / "landing_zone")
    code = ("import sys; sys.modules['distributed'] = None; sys.modules['dask'] = None\n"
            "from minilake.apps.cli import main\n"
            f"sys.exit(main(['run', '--engine', 'dask', '--root', {str(root)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2 and "requirements-dist.txt" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (root / "archive").exists()                    # nothing moved
