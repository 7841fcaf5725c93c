"""History kept by policy (docs/history.md, issue 33): age does not remove versions nobody asked to
remove; a declared retention removes only what it allows, and says so; lineage outlives the
versions; reads as known at a time.

A lake is aged the way a month of daily runs ages it: every file under ``tables/`` given a
modification time far in the past (``os.utime``), then more days applied, so that the
checkpoints that delta-rs's defaults would clean the log at (entries older than 30 days) are
crossed. What every version read before the ageing is compared with what it reads after.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from support.arrivals import table_contents

import minilake
from minilake.generate import generate
from minilake.lake import delta, logs, policy
from minilake.lake.layout import KEPT, MARTS, Layout
from minilake.load import history

SOURCES = ("customer", "product", "sales")
DAYS = [f"202410{d:02d}" for d in range(9, 17)]          # eight days: 2024-10-09 … 16


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("retention_world")
    generate(root, start="2024-10-09", days=len(DAYS), customers=150, seed=33,
             landing_only=True)
    return root


def lake(world: Path, root: Path) -> Path:
    """A root holding the world's deliveries, waiting in ``held/`` (one day per run)."""
    (root / "landing_zone").mkdir(parents=True)
    shutil.copytree(world / "landing_zone", root / "held")
    return root


def apply_days(root: Path, days: list[str]) -> list[list[str]]:
    """One run per day; each run's output lines."""
    said = []
    for day in days:
        for path in (root / "held").glob(f"*_{day}.*"):
            shutil.move(path, root / "landing_zone" / path.name)
        result = minilake.run(root)
        assert result.ok, result.lines()
        said.append(result.lines())
    return said


def every_table(root: Path) -> dict[str, Path]:
    layout = Layout.of(root)
    paths = {name: layout.table(name) for name in SOURCES}
    paths["_ingest_log"] = layout.ingest_log
    paths |= {f"marts/{m}": layout.table("marts") / m for m in (*MARTS, *KEPT)}
    return {name: path for name, path in paths.items() if delta.exists(path)}


def snapshot(root: Path) -> dict[str, dict[int, pd.DataFrame]]:
    """Every table's every version, read by version, in a canonical row order."""
    out = {}
    for name, path in every_table(root).items():
        out[name] = {}
        for version in delta.versions(path)["version"]:
            if name in SOURCES:
                frame = minilake.read_table(name, root=root, version=int(version))
            else:
                frame = delta.dataset(path, int(version)).to_table().to_pandas()
            out[name][int(version)] = frame.sort_values(list(frame.columns)).reset_index(
                drop=True)
    return out


def age(root: Path, days: int) -> None:
    """Every file under tables/ as a month of daily runs would have left it: ``days`` old."""
    then = time.time() - days * 86_400
    for path in (root / "tables").rglob("*"):
        os.utime(path, (then, then))


def assert_versions_read_as_before(before: dict, after: dict, only: set | None = None) -> None:
    for name, versions in before.items():
        for version, frame in versions.items():
            if only is not None and (name, version) not in only:
                continue
            assert version in after[name], f"{name} version {version} is gone"
            pd.testing.assert_frame_equal(after[name][version], frame,
                                          obj=f"{name} version {version}")


def test_an_aged_lake_keeps_every_version_of_every_table(world, tmp_path):
    root = lake(world, tmp_path / "root")
    apply_days(root, DAYS[:6])
    before = snapshot(root)
    assert len(before["customer"]) == 6 and len(before["_ingest_log"]) >= 6  # one a run
    listed = {s: minilake.versions(s, root=root)["files"].tolist() for s in SOURCES}
    age(root, 40)
    apply_days(root, DAYS[6:])
    after = snapshot(root)
    assert_versions_read_as_before(before, after)
    for source in SOURCES:
        now = minilake.versions(source, root=root)
        assert now["kept"].all() and now["files"].tolist()[:6] == listed[source]
    for name, path in every_table(root).items():
        assert policy.Policy().holds(delta.delta(path).metadata().configuration), name


def test_a_retention_removes_only_what_is_older_and_says_so(world, tmp_path):
    root = lake(world, tmp_path / "root")
    apply_days(root, DAYS[:6])
    before = snapshot(root)
    listed = {s: minilake.versions(s, root=root) for s in SOURCES}
    age(root, 40)
    (root / "minilake.toml").write_text("[history]\nkeep_days = 10\n")
    said = apply_days(root, DAYS[6:7])[0]
    assert any(line.startswith("history: ") and "brought to the root's policy "
               "(versions kept 10 day(s))" in line for line in said), said
    removed = [line for line in said if "removed (older than 10 day(s)" in line]
    assert any(line.startswith("history: customer: versions 0-") for line in removed), said
    after = snapshot(root)
    status = minilake.status(root).set_index("source")
    for source in SOURCES:
        kept = set(after[source])
        gone = set(before[source]) - kept
        assert gone and min(kept) == max(gone) + 1, source   # the oldest went, in one piece
        # what stayed reads as before; what went was all older than the window
        assert_versions_read_as_before({source: before[source]}, after,
                                       only={(source, v) for v in kept})
        lineage = minilake.versions(source, root=root).set_index("version")
        for version in gone:
            assert not lineage.loc[version, "kept"]
            assert "history policy" in lineage.loc[version, "note"]
            assert lineage.loc[version, "files"] == listed[source].set_index(
                "version").loc[version, "files"]
        assert status.loc[source, "versions_gone"] == len(gone)
        assert "history policy" in status.loc[source, "gone_why"]
        with pytest.raises(ValueError, match=f"{source} version {min(gone)} no longer exists: "
                           "removed by the root's history policy"):
            minilake.read_table(source, root=root, version=min(gone))
    # the tables are still whole: time travel by date reads every day
    for day in ("2024-10-09", "2024-10-15"):
        assert len(minilake.read_table("customer", as_of=day, root=root))


def test_a_lake_made_before_the_policy_is_brought_to_it_once_then_keeps_its_history(
        world, tmp_path, monkeypatch):
    root = lake(world, tmp_path / "root")
    with monkeypatch.context() as earlier:           # minilake before this change
        earlier.setattr(delta, "created", lambda path: {})
        earlier.setattr(history, "bring_to_policy", lambda layout: [])
        apply_days(root, DAYS[:5])
    for name, path in every_table(root).items():
        assert not policy.Policy().holds(delta.delta(path).metadata().configuration), name
    said = apply_days(root, DAYS[5:6])[0]
    brought = [line for line in said if "brought to the root's policy" in line]
    assert len(brought) == 1 and "every version kept" in brought[0], said
    assert "customer" in brought[0] and "_ingest_log" in brought[0]
    before = snapshot(root)
    age(root, 40)
    said = apply_days(root, DAYS[6:])
    assert not any("brought" in line for lines in said for line in lines), said   # once
    assert_versions_read_as_before(before, snapshot(root))


def test_an_erasure_on_an_aged_lake_purges_what_came_before_it_and_nothing_else(
        world, tmp_path):
    root = lake(world, tmp_path / "root")
    apply_days(root, DAYS[:6])
    before = snapshot(root)
    age(root, 40)
    current = minilake.read_table("customer", root=root)
    victim = str(current.loc[current["is_current"], "customer_id"].iloc[0])
    (root / "landing_zone" / f"erasure_requests_{DAYS[6]}.json").write_text(
        json.dumps([{"customer_id": victim}]))
    apply_days(root, DAYS[6:])
    after = snapshot(root)
    erased = minilake.erasures(root)
    first = int(erased["history_from_version"].iloc[0])
    assert set(after["customer"]) == set(range(first, first + len(after["customer"])))
    assert min(after["customer"]) > max(before["customer"])     # every earlier one purged
    lineage = minilake.versions("customer", root=root)
    assert lineage.loc[~lineage["kept"], "note"].str.startswith(
        "purged by the erasure requested by erasure_requests_").all()
    assert_versions_read_as_before({s: before[s] for s in ("product", "sales")}, after)
    assert_versions_read_as_before({"_ingest_log": before["_ingest_log"]}, after)


def test_the_policy_file_is_read_or_refused_in_one_line(tmp_path):
    assert policy.of(tmp_path) == policy.Policy()
    (tmp_path / "minilake.toml").write_text("[history]\nkeep_days = \"forever\"\n")
    assert policy.of(tmp_path).keep_days is None
    (tmp_path / "minilake.toml").write_text("[history]\nkeep_days = 0\n")
    assert policy.of(tmp_path).properties()["delta.logRetentionDuration"] == "interval 0 days"
    for text, says in [("[history]\nkeep_days = -1\n", "whole number of days"),
                       ("[history]\nkeep_days = 1.5\n", "whole number of days"),
                       ("[history]\nkeep = 3\n", "no setting 'keep'"),
                       ("[history\n", "not TOML")]:
        (tmp_path / "minilake.toml").write_text(text)
        with pytest.raises(policy.PolicyError, match=says) as error:
            policy.of(tmp_path)
        assert "minilake.toml" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.xdist_group("s3-b")
def test_on_s3_nothing_goes_by_default_and_a_retention_of_0_removes_the_older(
        s3, s3_env, world, tmp_path):
    """S3 objects cannot be back-dated: the default must remove nothing however many
    checkpoints pass; a retention of 0 days then lets everything before the latest
    checkpoint go, said, the rest read as before."""
    local = lake(world, tmp_path / "staged")
    root = s3.new_root("retention", local)
    fs = s3.fs()
    prefix = root.removeprefix("s3://")

    def deliver(day: str) -> None:
        for path in sorted((local / "held").glob(f"*_{day}.*")):
            fs.put_file(str(path), f"{prefix}/landing_zone/{path.name}")
        result = minilake.run(root)
        assert result.ok, result.lines()

    for day in DAYS[:7]:
        deliver(day)
    before = snapshot(s3.mirror(root, tmp_path / "before"))
    assert len(before["customer"]) == 7
    for name, path in every_table(s3.mirror(root, tmp_path / "props")).items():
        assert policy.Policy().holds(delta.delta(path).metadata().configuration), name
    fs.pipe_file(f"{prefix}/minilake.toml", b"[history]\nkeep_days = 0\n")
    deliver(DAYS[7])
    after = snapshot(s3.mirror(root, tmp_path / "after"))
    assert min(after["customer"]) > 0 and min(after["customer"]) <= 7
    kept = {(n, v) for n, versions in after.items() for v in versions if n in before}
    assert_versions_read_as_before(before, after, only=kept)
    assert not all(set(before[n]) <= set(after[n]) for n in SOURCES)


def test_read_as_known_at_each_run_end_equals_the_root_as_it_was_then(world, tmp_path):
    """The days one run at a time, a late file and a resent one among them; a copy of the
    root after each run. For each run's end T and each date D of the week, what the final
    root says about D as known at T is what the copy taken at T said about D."""
    root = lake(world, tmp_path / "root")
    late = root / "held" / f"sales_{DAYS[2]}.txt"
    shutil.move(late, root / "late.txt")
    ends, copies = [], []

    def run_and_copy() -> None:
        assert minilake.run(root).ok
        time.sleep(0.01)
        ends.append(dt.datetime.now(dt.UTC))
        copies.append(shutil.copytree(root, tmp_path / f"copy{len(copies)}",
                                      ignore=shutil.ignore_patterns("held", "late.txt")))
        time.sleep(0.01)

    for n, day in enumerate(DAYS[:7]):
        for path in (root / "held").glob(f"*_{day}.*"):
            shutil.move(path, root / "landing_zone" / path.name)
        if n == 4:                                   # day 3's sales arrive with day 5's
            shutil.move(root / "late.txt", root / "landing_zone" / late.name)
        run_and_copy()
        if n == 5:                                   # day 2's customers sent again, changed
            resent = root / "landing_zone" / f"customer_{DAYS[1]}.csv"
            shutil.copy(root / "archive" / "customer" / resent.name, resent)
            text = resent.read_text(encoding="utf-8")
            resent.write_text(text.replace('"active"', '"inactive"', 3), encoding="utf-8")
            run_and_copy()
    log = logs.read_log(Layout.of(root))
    assert {"late", "resent"} <= set(log["event"]), "the late and the resent file"
    dates = [dt.date(2024, 10, 9) + dt.timedelta(days=d) for d in range(7)]
    for end, copy in zip(ends, copies, strict=True):
        for date in dates:
            for source in SOURCES:
                then = minilake.read_table(source, as_of=date, root=copy)
                known = minilake.read_table(source, as_of=date, root=root, known_at=end)
                pd.testing.assert_frame_equal(known, then, obj=f"{source} {date} at {end}")
        query = "SELECT count(*) AS n, sum(total_price) AS s FROM sales_as_of('2024-10-11')"
        pd.testing.assert_frame_equal(minilake.sql(query, root=root, known_at=end),
                                      minilake.sql(query, root=copy), obj=f"sql at {end}")
    first = minilake.read_table("customer", root=root, known_at=ends[0] - dt.timedelta(
        minutes=5))
    assert len(first) == 0 and list(first.columns) == list(table_contents(root)[
        "customer"].columns)
    today = minilake.read_table("customer", root=root, known_at=dt.date.today())
    pd.testing.assert_frame_equal(today, minilake.read_table("customer", root=root))
