"""A run with nothing to do says so without loading the pipeline (issue 19,
minilake.lake.unchanged), and only when the root is exactly as the last run that ended well left
it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.commands import finish, start

import minilake
from minilake.lake import unchanged

NOTHING = "split: 0 file(s) archived\ningest: nothing new in archive/\n"


def run(root: Path) -> tuple[str, bool]:
    """(output, whether pandas was imported) of ``python -m minilake run``."""
    done = finish(subprocess.Popen([sys.executable, "-X", "importtime", "-m", "minilake",
                                    "run", "--root", str(root)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True))
    assert done.returncode == 0, done.stderr
    return done.stdout, any(line.rsplit("|", 1)[-1].strip() == "pandas"
                            for line in done.stderr.splitlines())


@pytest.fixture
def lake(small_root, tmp_path) -> Path:
    root = tmp_path / "lake"
    shutil.copytree(small_root / "landing_zone", root / "landing_zone")
    assert minilake.run(root).ok
    return root


def test_nothing_to_do_is_said_without_loading_pandas(lake):
    out, pandas = run(lake)
    assert out == NOTHING and not pandas


def land_next_day(lake: Path) -> str:
    """Land the last customer file again as the next day's; its archived name."""
    name = sorted(p.name for p in (lake / "archive" / "customer").iterdir())[-1]
    day = int(name.split("_")[1][:8]) + 1
    shutil.copy(lake / "archive" / "customer" / name, lake / "landing_zone" / f"customer_{day}.csv")
    return f"customer/customer_{day}.csv"


def test_a_landed_file_is_split_and_applied(lake):
    name = land_next_day(lake)
    out, pandas = run(lake)
    assert f"{name}:" in out and pandas


@pytest.mark.parametrize("given, used", [(None, "0"), ("250", "250")])
def test_arrow_returns_freed_memory_at_once_unless_the_environment_says(lake, given, used):
    """Arrow's allocator (mimalloc) reads its settings once, when pyarrow loads: the command
    sets the purge delay before anything loads pyarrow (minilake/apps/cli.py), and a setting in
    the environment wins."""
    land_next_day(lake)
    # None: unset (this process imported minilake, so its environment has minilake's value);
    # mimalloc prints its options as it starts when verbose. A new interpreter, not a forked
    # one: a fork server may have started Arrow's allocator already (Dask's, in a worker
    # that ran the Dask tests first, imports pandas and pyarrow with its own environment)
    done = finish(start("run", "--root", str(lake), fresh=True,
                        env={"MIMALLOC_PURGE_DELAY": given, "MIMALLOC_VERBOSE": "1"}))
    assert done.returncode == 0, done.stderr
    said = [line.rsplit(":", 1)[-1].strip() for line in done.stderr.splitlines()
            if "option 'purge_delay'" in line]
    assert said == [used], done.stderr[-2000:]


@pytest.mark.parametrize("change", ["table removed", "mart removed", "archive touched",
                                    "scratch left", "log removed"])
def test_any_change_since_the_last_run_is_a_full_run(lake, change):
    if change == "table removed":
        shutil.rmtree(lake / "tables" / "product")
    elif change == "mart removed":
        shutil.rmtree(next(p for p in (lake / "tables" / "marts").iterdir() if p.is_dir()))
    elif change == "archive touched":
        path = next((lake / "archive" / "sales").iterdir())
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    elif change == "scratch left":
        (lake / "tables" / ".rebuild").mkdir()
    else:
        shutil.rmtree(lake / "tables" / "_ingest_log")
    out, pandas = run(lake)
    assert pandas, f"{change}: the pipeline was not loaded"
    out_again, pandas_again = run(lake)             # and then the root is settled again
    assert out_again == NOTHING and not pandas_again, change


def test_a_run_without_its_marts_leaves_no_state_the_next_run_would_trust(small_root,
                                                                        tmp_path):
    root = tmp_path / "lake"
    shutil.copytree(small_root / "landing_zone", root / "landing_zone")
    minilake.run(root, marts=False)
    assert not (root / "tables" / ".run-state.json").exists()
    out, pandas = run(root)
    assert pandas and out.startswith(NOTHING)   # the full run, which refreshes the marts
    assert "marts: every month recomputed" in out
    assert (root / "tables" / "marts").is_dir()


@pytest.mark.parametrize("how", ["rewritten in place", "replaced", "added"])
def test_the_archive_is_listed_once_a_run_and_a_file_changed_meanwhile_is_applied_next(
        lake, monkeypatch, how):
    """The run state is made from the run's own listing of each archive folder (3,300 files
    after three years), with what the run wrote there: a day's run lists archive/customer/
    once. A customer file changed by another process after the run read it (rewritten in
    place, replaced by a rename, or a new one added) while the run goes on to its marts is
    not in the state: the next run is a full one and applies it (the state used to be
    listed again at the end, with the change in it, and the next run did nothing)."""
    from minilake import pipeline

    name = land_next_day(lake)
    archived = lake / "archive" / name
    changed = archived if how != "added" else archived.with_name(
        f"customer_{int(archived.stem.split('_')[1]) + 1}.csv")
    scanned: list[str] = []
    real_scandir, real_refresh = os.scandir, pipeline.refresh_marts

    def scandir(path="."):
        scanned.append(os.fspath(path))
        return real_scandir(path)

    def refresh_marts(root):
        data = archived.read_bytes()
        header, first, rest = data.split(b"\n", 2)
        cells = first.split(b",")
        cells[1] = b'"Someone Else"'                # the first customer's first name
        data = b"\n".join([header, b",".join(cells), rest])
        if how == "rewritten in place":
            with open(changed, "r+b") as handle:
                handle.write(data)
                handle.truncate()
        else:
            partial = changed.with_name(".partial")
            partial.write_bytes(data)
            os.replace(partial, changed)
        return real_refresh(root)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(pipeline, "refresh_marts", refresh_marts)
    assert minilake.run(lake).ok
    monkeypatch.undo()
    assert scanned.count(str(lake / "archive" / "customer")) == 1, scanned
    assert not unchanged.nothing_to_do(lake), f"{how}: a file the run did not read"
    first = int(changed.read_text(encoding="utf-8").splitlines()[1].split(",")[0].strip('"'))
    assert minilake.run(lake).ok
    versions = minilake.read_table("customer", root=lake)
    current = versions[versions["is_current"] & (versions["customer_id"] == first)]
    assert current["first_name"].tolist() == ["Someone Else"], how
    assert unchanged.nothing_to_do(lake)


def test_a_tables_latest_commit_is_the_handles_version_only_when_none_follows(tmp_path,
                                                                             monkeypatch):
    """The run state takes a table's latest commit from the run's handle (two stats, not a
    listing of the whole log) only when that version's commit is there and none after it."""
    import pyarrow as pa
    from deltalake import write_deltalake

    path = tmp_path / "t"
    for n in range(3):
        write_deltalake(str(path), pa.table({"n": [n]}), mode="append")
    latest = "00000000000000000002.json"
    assert [unchanged._latest_commit(path, v) for v in (None, 1, 2, 7)] == [latest] * 4
    # with the handle's version right, the log is not listed
    real_scandir = os.scandir

    def scandir(folder="."):
        assert not os.fspath(folder).endswith("_delta_log"), "the log was listed"
        return real_scandir(folder)

    monkeypatch.setattr(os, "scandir", scandir)
    assert unchanged._latest_commit(path, 2) == latest
