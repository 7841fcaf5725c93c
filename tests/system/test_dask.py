"""The Dask engine (README, A distributed engine, issue 18) against the local one, on a real
LocalCluster.

Every case runs the same files through both engines and compares what they leave: the tables,
the ingest log (bar times; the table version too), error reports, quarantine and the delivered
files. Ranges are forced above the cluster's two threads so that files are really cut.
"""

from __future__ import annotations

import csv
import shutil
import socket
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from support import drifting
from support.commands import finish, start
from test_crash import assert_same, erasure_outcome, make_erasure_world, make_world, outcome

import minilake
from minilake.contract.sources import SOURCES
from minilake.generate import generate
from minilake.lake.layout import Layout
from minilake.lake.logs import read_log
from minilake.load import parts
from minilake.load.distributed import Engine, local_cluster
from minilake.load.keys import range_codes

pytestmark = pytest.mark.xdist_group("dask")

RANGES = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with local_cluster(str(tmp_path_factory.mktemp("dask")), workers=2) as running:
        yield running.scheduler_address


def versions_in_log(root: Path) -> list:
    """Each file's table version, counted without maintenance's compactions (a run compacts a
    table once ten small files gather: the Dask engine writes a file per key range, so its
    tables get there sooner; compaction changes no data, docs/history.md)."""
    log = read_log(Layout.of(root)).sort_values(["source", "file"])
    rank = {}
    for source in log["source"].unique():
        if source in ("customer", "product", "sales"):
            listed = minilake.versions(source, root)
            kept = listed[listed["operation"] != "COMPACT"]["version"].tolist()
            rank |= {(source, v): n for n, v in enumerate(kept)}
    return [rank.get((source, int(v)), int(v)) if v == v else -1
            for source, v in zip(log["source"], log["table_version"], strict=True)]


def run_both(world: Path, tmp_path: Path, cluster: str, steps, *, of=outcome,
             ranges: int = RANGES) -> tuple[dict, dict, Path]:
    """Copy ``world`` twice; apply ``steps(root, run)`` to each, with the local engine and
    with the Dask engine; return both outcomes and the Dask root."""
    got = {}
    for engine in ("local", "dask"):
        root = tmp_path / engine
        shutil.copytree(world, root)
        options = {} if engine == "local" else {"engine": "dask", "cluster": cluster,
                                                 "ranges": ranges}
        steps(root, lambda root=root, options=options: minilake.run(root, **options))
        found = of(root)
        # files copied in by a step are newer in the second copy: when is not what
        found["log"] = found["log"].drop(columns=["mtime_ns"], errors="ignore")
        got[engine] = (found, versions_in_log(root))
    (want, want_versions), (dask, dask_versions) = got["local"], got["dask"]
    assert dask_versions == want_versions, "table versions in the ingest log"
    return want, dask, tmp_path / "dask"


def current_intervals(root: Path, source: str) -> list[tuple]:
    table = DeltaTable(str(root / "tables" / source))
    files = pa.table(table.get_add_actions(flatten=True))
    files = files.filter(files["partition.is_current"]).to_pylist()
    key = SOURCES[source].key
    return sorted((f[f"min.{key}"], f[f"max.{key}"]) for f in files)


def test_the_sample_week_and_its_broken_day_give_the_same_lake(sample_root, tmp_path, cluster):
    world = tmp_path / "world"
    shutil.copytree(sample_root / "landing_zone", world / "landing_zone")

    def steps(root, run):
        assert run().ok
        for path in (sample_root / "samples" / "broken_day").iterdir():
            shutil.copy(path, root / "landing_zone" / path.name)
        assert run().ok

    want, got, root = run_both(world, tmp_path, cluster, steps)
    assert_same(got, want, "dask vs local")
    assert any(len(rows) > 1 for rows in want["error_reports"].values()), "no bad rows"
    # the Dask engine writes each range's current files in key order: cut into ranges, and
    # no two current files overlap, so a later file can be cut again
    intervals = current_intervals(root, "customer")
    assert len(intervals) >= RANGES
    assert all(a[1] < b[0] for a, b in zip(intervals, intervals[1:], strict=False)), intervals


def test_late_and_resent_files_give_the_same_lake(tmp_path, cluster):
    world = tmp_path / "world"
    generate(world, start="2024-10-09", days=4, customers=300, seed=21, landing_only=True)
    held = world / "held"
    held.mkdir()
    for path in (world / "landing_zone").glob("*20241011*"):
        shutil.move(path, held / path.name)

    def steps(root, run):
        assert run().ok                             # days 1, 2 and 4
        for path in (root / "held").iterdir():      # day 3, late
            shutil.move(path, root / "landing_zone" / path.name)
        assert run().ok
        resent = root / "landing_zone" / "customer_20241010.csv"
        lines = (root / "archive" / "customer" / resent.name).read_text().splitlines()
        lines[3] = lines[3].replace('"active"', '"inactive"').replace('"M"', '"F"')
        resent.write_text("\n".join(lines[:-5]) + "\n")        # changed, and 5 rows fewer
        assert run().ok

    want, got, _ = run_both(world, tmp_path, cluster, steps)
    assert_same(got, want, "dask vs local")
    assert {"late", "resent"} <= set(want["log"]["event"])


def test_an_erasure_gives_the_same_lake(tmp_path, cluster):
    world = make_erasure_world(make_world(tmp_path / "crash_world"), tmp_path / "world")
    want, got, _ = run_both(world, tmp_path, cluster, lambda root, run: run(),
                            of=erasure_outcome)
    assert_same(got, want, "dask vs local")
    assert len(want["erasures"]) == 2
    assert got["erasures"].equals(want["erasures"])


def test_a_drifting_day_gives_the_same_lake_and_schema_log(tmp_path, cluster):
    """docs/contracts.md: a column more (added to the customer and sales tables, the
    product's discarded) and a column fewer (kept empty) in each form, customers gone
    tombstoned, phone numbers updated in place, a date widened to a date and time and a
    quantity to numbers, the contract followed on the workers too."""
    world = tmp_path / "world"
    generate(world, start="2024-10-09", days=3, customers=300, seed=40, landing_only=True)
    (world / "minilake.toml").write_text("".join(
        f'[contract.{s}]\nnew_column = "{"discard" if s == "product" else "evolve"}"\n'
        f'missing_column = "evolve"\nvanished = "tombstone"\n'
        + ('in_place = ["phone_number"]\n' if s == "customer" else "")
        + ('widen = ["creation_date"]\n' if s == "product" else "")
        + ('widen = ["quantity"]\n' if s == "sales" else "") for s in SOURCES))
    drifting.new_phones(world / "landing_zone")
    drifted = world / "drifted"
    drifted.mkdir()
    for path in (world / "landing_zone").glob(f"*{drifting.DAY}*"):
        shutil.copy(path, drifted / path.name)
    drifting.add_column(drifted)
    drifting.widen_column(drifted)
    drifting.drop_column(world / "landing_zone")

    def steps(root, run):
        run()                                       # the sales file lacks a required field
        for path in (root / "drifted").iterdir():   # then the day resent, a column more
            shutil.move(path, root / "landing_zone" / path.name)
        assert run().ok

    def with_changes(root):
        return {**outcome(root), "changes": drifting.schema_changes(root)}

    want, got, _ = run_both(world, tmp_path, cluster, steps, of=with_changes)
    assert_same(got, want, "dask vs local")
    pd.testing.assert_frame_equal(got["changes"], want["changes"])
    assert len(want["changes"]) == 9, want["changes"]    # 7, and the two widened
    customers = want["customer"]
    assert (customers["effective_from"] == customers["expiry_date"]).any(), "no tombstone"
    log = want["log"]
    assert log.loc[log["file"] == "customer_20241011.csv", "note"].str.contains(
        "updated in place").any()


def test_a_key_repeated_across_a_cut_is_bad_in_every_copy(tmp_path, cluster):
    """A customer key repeated at both ends of the file (once as ``0``+key, the same integer)
    sits exactly on the cut between two ranges: all its copies land in one range, and all are
    bad, as when the file is validated whole."""
    world = tmp_path / "world"
    generate(world, start="2024-10-09", days=2, customers=400, seed=5, landing_only=True)
    path = world / "landing_zone" / "customer_20241009.csv"
    with path.open(newline="") as file:
        header, *rows = list(csv.reader(file))
    key = sorted(int(r[0]) for r in rows)[len(rows) // 2]
    row = next(r for r in rows if r[0] == str(key))
    rows = [row, *rows, [f"0{key}", *row[1:]]]
    with path.open("w", newline="") as file:
        csv.writer(file, quoting=csv.QUOTE_ALL).writerows([header, *rows])

    split = parts.read_split("customer", str(path), np.zeros((0, 2), np.int64), 2)
    assert split.bounds.tolist() == [key], "the cut is not at the repeated key"
    holding = [p.index for p in split.parts
               if (range_codes(pa.array(p.text.rows["customer_id"]), True) == key).any()]
    assert len(holding) == 1
    assert sum(len(p.text.rows) for p in split.parts) == len(rows)

    want, got, root = run_both(world, tmp_path, cluster, lambda root, run: run(), ranges=2)
    assert_same(got, want, "dask vs local")
    report = (root / "error_reports" / "errors_customer_20241009.csv").read_text()
    assert report.count("occurs more than once in the file") == 3


def test_cuts_never_fall_inside_a_current_file():
    codes = np.arange(0, 1000, dtype=np.int64)
    spans = np.array([[100, 400], [600, 610]], np.int64)
    bounds = parts.cuts(codes, spans, 4)            # quantiles 250, 500, 750
    assert bounds.tolist() == [100, 500, 750]       # 250 moved to its file's nearer edge
    assert parts.cuts(codes, spans, 2).tolist() == [500]
    assert parts.cuts(np.full(10, 7, np.int64), spans, 4).tolist() == [7]


@pytest.fixture(scope="module")
def crash_world(tmp_path_factory) -> tuple[Path, dict]:
    world = make_world(tmp_path_factory.mktemp("dask_crash") / "world")
    reference = world.parent / "reference"
    shutil.copytree(world, reference)
    minilake.run(reference)
    return world, outcome(reference)


@pytest.mark.parametrize("hook", ["dask.validated:1", "dask.writing:2"])
def test_a_worker_killed_during_a_file_is_retried(crash_world, tmp_path, hook):
    """SIGKILL of a LocalCluster worker process in the middle of a file: the scheduler runs
    its tasks again, the run ends well, and the lake is that of an uninterrupted run."""
    world, want = crash_world
    root = tmp_path / "root"
    shutil.copytree(world, root)
    marker = tmp_path / "killed"
    run = finish(start("run", "--root", str(root), "--engine", "dask", "--ranges", "3",
                       env={"MINILAKE_CRASH_AT": hook, "MINILAKE_CRASH_ONCE": str(marker)}))
    assert marker.exists(), f"{hook}: no worker was killed"
    assert run.returncode == 1, run.stderr          # the world's two quarantined files
    assert_same(outcome(root), want, hook)


def test_a_file_the_cluster_cannot_finish_stops_the_run_and_a_rerun_completes(crash_world,
                                                                              tmp_path):
    world, want = crash_world
    root = tmp_path / "root"
    shutil.copytree(world, root)
    run = finish(start("run", "--root", str(root), "--engine", "dask",
                       env={"MINILAKE_CRASH_AT": "dask.validated:1",
                            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}))
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert "the Dask cluster failed on this file" in last and "KilledWorker" in last, last
    assert "Traceback" not in run.stderr
    logged = read_log(Layout.of(root))
    assert not len(logged[logged["status"] == "applied"])   # the first file of each source
    again = finish(start("run", "--root", str(root), "--engine", "dask"))
    assert again.returncode == 1, again.stderr
    assert_same(outcome(root), want, "after the rerun")


def test_an_unreachable_scheduler_is_one_line_and_moves_nothing(sample_root, tmp_path):
    from support.seaweed import refusing_port

    root = tmp_path / "root"
    shutil.copytree(sample_root / "landing_zone", root / "landing_zone")
    with refusing_port() as port:
        address = f"tcp://127.0.0.1:{port}"
        run = finish(start("run", "--root", str(root), "--engine", "dask", "--cluster",
                           address))
    assert run.returncode == 2
    error = run.stderr.strip()
    assert error.startswith(f"minilake run: cannot reach the Dask scheduler at {address}: ")
    assert "\n" not in error, error
    assert not (root / "archive").exists()
    assert len(list((root / "landing_zone").iterdir())) == 21


def test_a_run_s_own_cluster_leaves_port_8787_to_others_and_no_scratch(tmp_path, monkeypatch):
    """The LocalCluster of a run serves its scheduler's HTTP routes on a free port: with 8787
    held by another program it starts without a warning (it used to try 8787 first). Its
    scheduler's scratch space goes with the workers': the temp folder is left as it was (it
    used to keep a dask-scratch-space folder)."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with socket.socket() as other:
        try:
            other.bind(("127.0.0.1", 8787))
            other.listen()
        except OSError:
            pass                                # held already: the same case
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            with Engine() as engine:
                port = engine.client.scheduler_info()["services"]["dashboard"]
    assert port != 8787
    assert list(temp.iterdir()) == []
