"""The data files minilake commits itself (new versions and rewritten current files): what the
Delta log says of each file must be true of the file, and a commit removes only the files that
held an expiring version.

Expectations are computed here from the Parquet files with plain Python, not by minilake.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from support.landing import products_file, sales_file

import minilake

END = dt.date(2099, 12, 31)


def log_entries(table: Path) -> list[tuple[int, dict]]:
    """(version, action) for every action of every commit, oldest first."""
    out = []
    for path in sorted((table / "_delta_log").glob("*.json")):
        for line in path.read_text().splitlines():
            out.append((int(path.stem), json.loads(line)))
    return out


def live_files(table: Path) -> dict[str, dict]:
    live = {}
    for _, action in log_entries(table):
        if "add" in action:
            live[action["add"]["path"]] = action["add"]
        if "remove" in action:
            live.pop(action["remove"]["path"])
    return live


def as_log(value: object) -> object:
    """A value as the Delta log's statistics write it (dates ISO)."""
    return value.isoformat() if isinstance(value, dt.date) else value


def check_files(table: Path) -> int:
    """Every live file: its folders name its partition values, its rows agree with them, and
    its statistics are its rows' count, nulls, least and greatest values. Returns the number
    of rows in all live files."""
    total = 0
    for path, add in live_files(table).items():
        folders = dict(part.split("=") for part in path.split("/")[:-1])
        assert folders == add["partitionValues"], path
        rows = pq.read_table(table / path).to_pylist()
        total += len(rows)
        stats = json.loads(add["stats"])
        assert stats["numRecords"] == len(rows), path
        current = add["partitionValues"]["is_current"] == "true"
        for row in rows:        # current versions are open, history is closed
            assert (row["expiry_date"] == END) == current, (path, row)
        for column in rows[0]:
            values = [r[column] for r in rows if r[column] is not None]
            assert stats["nullCount"][column] == len(rows) - len(values), (path, column)
            if values and not isinstance(values[0], bool):
                assert stats["minValues"][column] == as_log(min(values)), (path, column)
                assert stats["maxValues"][column] == as_log(max(values)), (path, column)
    return total


def test_files_and_their_statistics_after_expiries(tmp_path):
    products_file(tmp_path, "2024-01-01", [("P1", "A", 10.0), ("P2", "B", 20.0),
                                           ("P3", "C", 30.0)])
    products_file(tmp_path, "2024-01-02", [("P1", "A", 11.0), ("P2", "B", 20.0),
                                           ("P4", "D", 40.0)])
    products_file(tmp_path, "2024-01-03", [("P1", "A", 12.0), ("P4", "D", 40.0)])
    sales_file(tmp_path, "2024-01-01", [("001", 1, "2.50", "2024-01-01"),
                                        ("002", 2, "5.00", "2024-01-01")])
    sales_file(tmp_path, "2024-01-02", [("002", 3, "7.50", "2024-01-01"),
                                        ("003", 4, "10.00", "2024-01-02")])
    assert minilake.run(tmp_path).ok
    # versions: P1 x3, P2 (closed by its absence on day 3), P3 (closed on day 2), P4; sales:
    # 001, 002 twice, 003
    assert check_files(tmp_path / "tables" / "product") == 6
    assert check_files(tmp_path / "tables" / "sales") == 4


def test_an_expiry_rewrites_only_the_files_that_hold_the_expiring_key(tmp_path):
    days = ["2024-01-01", "2024-01-02", "2024-01-03"]
    # day 1's file spans 001..004 without holding 003: its statistics cannot rule it out
    sales_file(tmp_path, days[0], [("001", 1, "2.50", days[0]), ("004", 1, "2.50", days[0])])
    sales_file(tmp_path, days[1], [("002", 1, "2.50", days[1]), ("003", 1, "2.50", days[1])])
    assert minilake.run(tmp_path).ok
    table = tmp_path / "tables" / "sales"
    holding_003 = [p for p in live_files(table) if "sale_date=2024-01-02" in p]
    assert len(holding_003) == 1
    # day 3 corrects sale 003 of day 2 and adds 005
    sales_file(tmp_path, days[2], [("003", 2, "5.00", days[1]), ("005", 1, "2.50", days[2])])
    assert minilake.run(tmp_path).ok
    last = max(version for version, _ in log_entries(table))
    removed = [a["remove"]["path"] for v, a in log_entries(table) if v == last and "remove" in a]
    assert removed == holding_003           # day 1's file is left as it is
    added = [a["add"]["partitionValues"] for v, a in log_entries(table)
             if v == last and "add" in a]
    assert sorted(tuple(sorted(p.items())) for p in added) == sorted([
        (("is_current", "true"), ("sale_date", "2024-01-02")),     # 002 and 003's new version
        (("is_current", "false"), ("sale_date", "2024-01-02")),    # 003's first version
        (("is_current", "true"), ("sale_date", "2024-01-03")),     # 005
    ])
    assert check_files(table) == 6


def test_a_partition_rewritten_every_day_keeps_one_file(tmp_path):
    # every day P1 changes, P2 stays, one product is new: the current versions are rewritten
    # daily, and small pieces bound for one partition share a file
    for day in range(1, 6):
        products_file(tmp_path, f"2024-01-0{day}",
                      [("P1", "A", 10.0 + day), ("P2", "B", 20.0)]
                      + [(f"P{2 + n}", "N", 1.0) for n in range(1, day + 1)])
        assert minilake.run(tmp_path).ok
        current = [p for p in live_files(tmp_path / "tables" / "product")
                   if p.startswith("is_current=true/")]
        assert len(current) == 1, (day, current)
    # P1 five times, P2 once, P3..P7 once each
    assert check_files(tmp_path / "tables" / "product") == 5 + 1 + 5


def test_no_python_runs_inside_a_read(tmp_path, monkeypatch):
    """Reads (a repair's, and a rebuild's swap above all, which streams the rebuilt table into
    the live one while other sources run on other threads) go through Arrow's own filesystem: a
    filesystem
    written in Python would take the GIL on Arrow's and delta-rs's threads."""
    from deltalake.fs import DeltaStorageHandler

    opened = []
    real = DeltaStorageHandler.open_input_file
    monkeypatch.setattr(DeltaStorageHandler, "open_input_file",
                        lambda self, path: opened.append(path) or real(self, path))
    products_file(tmp_path, "2024-01-01", [("P1", "A", 10.0)])
    products_file(tmp_path, "2024-01-03", [("P1", "A", 12.0)])
    assert minilake.run(tmp_path).ok
    products_file(tmp_path, "2024-01-02", [("P1", "A", 11.0)])       # late: a repair
    result = minilake.run(tmp_path)
    assert sorted(f.event for f in result.ingest.files) == ["late", "replay"]
    assert len(minilake.read_table("product", root=tmp_path)) == 3
    rebuilt = minilake.rebuild("product", tmp_path)                   # and a rebuild's swap
    assert sorted(f.event for f in rebuilt.files) == ["rebuild"] * 3
    assert len(minilake.status(tmp_path)) == 3
    assert opened == []


def test_a_run_opens_each_table_once(tmp_path, monkeypatch):
    """A run keeps one handle per table (docs/architecture.md, lake/delta.py): each open lists
    the table's whole log and reads its checkpoint, which grew a daily run with the lake's
    age. Counted on a second day's run, every table already there."""
    from deltalake import DeltaTable

    opens = []
    real = DeltaTable.__init__

    def counted(self, uri, *args, **kwargs):
        opens.append(str(uri))
        real(self, uri, *args, **kwargs)

    for day in ("2024-01-01", "2024-01-02"):
        products_file(tmp_path, day, [("P1", "A", 10.0 if day.endswith("1") else 11.0)])
        sales_file(tmp_path, day, [(f"00{day[-1]}", 2, "5.00", day)])
    monkeypatch.setattr(DeltaTable, "__init__", counted)
    assert minilake.run(tmp_path).ok
    opens.clear()
    products_file(tmp_path, "2024-01-03", [("P1", "A", 12.0)])
    sales_file(tmp_path, "2024-01-03", [("003", 1, "2.50", "2024-01-03")])
    assert minilake.run(tmp_path).ok
    twice = {uri for uri in opens if opens.count(uri) > 1}
    assert opens and not twice, sorted(opens)


def test_a_run_reads_the_ingest_log_once_and_what_it_keeps_is_what_the_log_holds(
        tmp_path, monkeypatch):
    """The ingest log is read at a run's start (what is applied) and by its marts (what they
    have not seen): once, the run keeping the rows it read and those it appended. Counted
    on a second day's run, with a quarantined file (a commit of its own) among its files;
    then what the run would read again equals a read by another process's means."""
    from minilake.lake import delta, logs
    from minilake.lake.layout import Layout
    from minilake.lake.lock import hold

    reads = []
    real = delta.dataset

    def counted(path, *args, **kwargs):
        reads.append(str(path))
        return real(path, *args, **kwargs)

    for day in ("2024-01-01", "2024-01-02"):
        products_file(tmp_path, day, [("P1", "A", 10.0 if day.endswith("1") else 11.0)])
        sales_file(tmp_path, day, [(f"00{day[-1]}", 2, "5.00", day)])
    assert minilake.run(tmp_path).ok
    layout = Layout.of(tmp_path)
    products_file(tmp_path, "2024-01-03", [("P1", "A", 12.0)])
    sales_file(tmp_path, "2024-01-03", [("003", 1, "2.50", "2024-01-03")])
    (tmp_path / "landing_zone" / "products_20240104.json").write_text("{")   # quarantined
    monkeypatch.setattr(delta, "dataset", counted)
    result = minilake.run(tmp_path)
    assert [f.file for f in result.ingest.quarantined] == ["products_20240104.json"]
    assert reads.count(str(layout.ingest_log)) == 1, reads
    with hold(layout.root, "test"):
        kept = logs.read_log(layout)
        row = dict.fromkeys(logs.INGEST_SCHEMA.names) | {
            "source": "product", "file": "x", "file_date": dt.date(2024, 1, 5),
            "status": "applied", "inserted": 1, "finished_at": dt.datetime.now(dt.UTC)}
        logs.INGEST.append(layout, [row], doing="a test row")
        kept = logs.read_log(layout)                # the rows read, with the one appended
    assert reads.count(str(layout.ingest_log)) == 2, reads
    fresh = logs.read_log(layout)                   # not held: read from the files
    assert len(fresh) == 8 and list(fresh["file"])[-1] == "x"
    pd.testing.assert_frame_equal(kept, fresh)


def test_the_runs_handle_follows_other_writers_and_a_table_made_again(tmp_path):
    """The run's handle is brought up to date when a commit follows it (made by anyone), and
    let go when the table was made again with fewer versions."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from minilake.lake import delta, storage
    from minilake.lake.layout import Layout
    from minilake.lake.lock import hold

    (tmp_path / "landing_zone").mkdir()
    layout = Layout.of(tmp_path)
    path = layout.table("handles")
    rows = pa.table({"n": pa.array([1], pa.int64())})
    with hold(layout.root, "test"):
        delta.write(path, rows)
        delta.write(path, rows, mode="append")
        mine = delta.delta(path)
        assert mine.version() == 1 and delta.delta(path) is mine
        write_deltalake(DeltaTable(str(path)), rows, mode="append")     # another writer
        assert delta.delta(path) is mine and mine.version() == 2
        assert delta.dataset(path).count_rows() == 3
        storage.remove_tree(path)                                      # made again
        write_deltalake(str(path), pa.table({"n": pa.array([7, 8], pa.int64())}))
        again = delta.delta(path)
        assert again.version() == 0 and again.to_pyarrow_table()["n"].to_pylist() == [7, 8]


@pytest.fixture
def asked(monkeypatch) -> list[str]:
    """The paths whose table a check of ``delta.exists`` looked for, in order."""
    from minilake.lake import delta

    paths: list[str] = []
    real = delta._exists

    def counted(path):
        paths.append(str(path))
        return real(path)

    monkeypatch.setattr(delta, "_exists", counted)
    return paths


def test_a_run_asks_once_whether_each_table_is_there(tmp_path, asked):
    """Under a held root a table comes only by the run's first commit and goes only by its
    removal of the folder, so a run asks whether a table is there once (on S3 each answer is
    a request: a run on a new root asked ~80 times). Counted on a first run, every table
    made by it, and on a second day's run."""
    for day in ("2024-01-01", "2024-01-02"):
        products_file(tmp_path, day, [("P1", "A", 10.0 if day.endswith("1") else 11.0)])
        sales_file(tmp_path, day, [(f"00{day[-1]}", 2, "5.00", day)])
        assert minilake.run(tmp_path).ok
        twice = {path for path in asked if asked.count(path) > 1}
        assert asked and not twice, sorted(asked)
        asked.clear()


def test_what_a_run_knows_of_a_table_follows_its_own_commits_and_removals(tmp_path, asked):
    """The answer a held root keeps: a table made by the run is there without asking again,
    one whose folder the run removed is not, and a create that failed is asked again."""
    import pyarrow as pa

    from minilake.lake import delta, storage
    from minilake.lake.layout import Layout
    from minilake.lake.lock import hold

    (tmp_path / "landing_zone").mkdir()
    layout = Layout.of(tmp_path)
    path = layout.table("known")
    rows = pa.table({"n": pa.array([1], pa.int64())})
    with hold(layout.root, "test"):
        assert not delta.exists(path) and not delta.exists(path)
        assert asked == [str(path)]
        with pytest.raises(Exception):             # noqa: B017 - whatever delta-rs raises
            delta.write(path, rows, partition_by=["no such column"])
        assert not delta.exists(path) and asked == [str(path)] * 2       # asked again
        delta.write(path, rows)
        assert delta.exists(path)
        assert asked == [str(path)] * 2                                  # made: known
        storage.remove_tree(path.parent)             # a folder above it
        assert not delta.exists(path) and asked == [str(path)] * 3
    assert not delta.exists(path) and asked == [str(path)] * 4          # not held: asked
