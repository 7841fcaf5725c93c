"""Rejected rows as a table (issue 41, docs/quality.md): ``tables/_rejects`` holds the rows of
the CSV error reports, row for row, whatever happened to the files (applied in order, resent,
rebuilt). The judge is the reports themselves, read here with Python's own ``csv`` module."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from support import landing

import minilake
from minilake.lake.layout import Layout


def reports_rows(root: Path) -> list[tuple]:
    """Every row of every error report under the root: (report, its place, errors, the raw
    fields by column), read with ``csv``."""
    out = []
    for path in sorted((root / "error_reports").glob("errors_*.csv")):
        with path.open(newline="", encoding="utf-8") as text:
            for n, row in enumerate(csv.DictReader(text), start=1):
                errors = row.pop("errors")
                out.append((path.name, n, errors, row))
    return out


def table_rows(root: Path) -> list[tuple]:
    """The rejects table's rows, through ``minilake sql``, as :func:`reports_rows` gives
    them."""
    frame = minilake.sql("SELECT report, report_row, errors, fields FROM rejects", root=root)
    return sorted(((r.report, r.report_row, r.errors, json.loads(r.fields))
                   for r in frame.itertuples()), key=lambda r: (r[0], r[1]))


@pytest.fixture(scope="module")
def four_days(small_root, tmp_path_factory) -> Path:
    """A small world's four days, applied (its broken day in samples/, not landed)."""
    root = tmp_path_factory.mktemp("rejects") / "four_days"
    for name in ("landing_zone", "samples"):
        shutil.copytree(small_root / name, root / name)
    assert minilake.run(root).ok
    return root


@pytest.fixture(scope="module")
def applied(four_days, tmp_path_factory) -> Path:
    """The four days and then the broken day (bad rows in each source), applied."""
    root = shutil.copytree(four_days, tmp_path_factory.mktemp("rejects") / "root")
    minilake.land_sample(root, "broken_day")
    assert minilake.run(root).ok
    return root


@pytest.fixture
def broken(applied, tmp_path) -> Path:
    """A copy of ``applied`` of the test's own, at ``tmp_path/root``."""
    return shutil.copytree(applied, tmp_path / "root", symlinks=True)


def test_the_rejects_table_is_the_error_reports_row_for_row(broken):
    want = reports_rows(broken)
    assert {r[0].split("_")[1] for r in want} == {"customer", "product", "sales"}
    assert table_rows(broken) == want
    files = minilake.sql("SELECT DISTINCT source, file, file_date FROM rejects", root=broken)
    assert all(f.file in {p.name for p in (broken / "archive" / f.source).iterdir()}
               and f.file_date.strftime("%Y%m%d") in f.file for f in files.itertuples())
    runs_of(broken)


def runs_of(root: Path) -> dict[str, str]:
    """Each file's run as the table names it, checked to be a run whose report lists the
    file as applied (one run a file)."""
    named = minilake.sql("SELECT DISTINCT file, run FROM rejects", root=root)
    assert named["file"].is_unique and len(named)
    for row in named.itertuples():
        report = json.loads((root / "reports" / "runs" / f"{row.run}.json").read_text())
        assert report["run_id"] == row.run
        assert {"file": row.file, "status": "applied"}.items() <= next(
            f for f in report["files"] if f["file"] == row.file).items()
    return dict(zip(named["file"], named["run"], strict=True))


def test_a_resent_file_replaces_its_rows_and_a_rebuild_keeps_them(broken):
    """The broken day's sales resent without its first three bad rows' lines: its report has
    three rows fewer, and so has the table; a rebuild of every source leaves it as it is."""
    report = next(r[0] for r in reports_rows(broken) if r[0].startswith("errors_sales_"))
    archived = broken / "archive" / "sales" / f"sales_{report[13:21]}.txt"
    bad = {r[3]["sale_id"] for r in reports_rows(broken) if r[0] == report}
    lines = archived.read_bytes().decode().split("\r\n")
    dropped = [line for line in lines if line.split("~")[0] in bad][:3]
    assert len(dropped) == 3
    (broken / "landing_zone" / archived.name).write_bytes(
        "\r\n".join(line for line in lines if line not in dropped).encode())
    before, runs = len(table_rows(broken)), runs_of(broken)
    assert minilake.run(broken).ok
    assert table_rows(broken) == reports_rows(broken)
    assert len(table_rows(broken)) == before - 3
    again = runs_of(broken)                     # the resent file's rows: the new run's
    assert {f for f in again if again[f] != runs[f]} == {archived.name}
    minilake.rebuild(root=broken)
    assert table_rows(broken) == reports_rows(broken)


def test_a_late_day_replays_the_reports_after_it_as_in_order(broken, small_root, tmp_path):
    """The second day held back while the rest (the broken day too) is applied, then late:
    its sources are repaired from its date on, the broken day's files replayed, and the
    table is the reports of in-order arrival, row for row."""
    root = tmp_path / "late"
    for name in ("landing_zone", "samples"):
        shutil.copytree(small_root / name, root / name)
    minilake.land_sample(root, "broken_day")
    landing.run_without(root, "*20241010*")
    assert minilake.run(root).ok
    assert minilake.sql("SELECT count(*) AS n FROM ingest_log WHERE event = 'replay'",
                        root=root)["n"].iloc[0] > 0
    assert table_rows(root) == reports_rows(root) == reports_rows(broken)


def test_a_table_made_before_the_run_column_is_made_again_from_the_reports(broken):
    """A ``_rejects`` made by an earlier minilake (no ``run`` column) is made again, whole,
    from every report, by the next sync; its earlier version stays readable."""
    from deltalake import DeltaTable, write_deltalake

    from minilake.load import rejects

    path = Layout.of(broken).rejects
    old = DeltaTable(str(path)).to_pyarrow_table().drop_columns(["run"])
    write_deltalake(str(path), old, mode="overwrite", schema_mode="overwrite")
    version = DeltaTable(str(path)).version()
    rejects.sync(Layout.of(broken))
    assert table_rows(broken) == reports_rows(broken)
    assert minilake.sql("SELECT count(*) AS n FROM rejects WHERE run IS NULL",
                        root=broken)["n"].iloc[0] == 0
    assert DeltaTable(str(path), version=version).to_pyarrow_table().num_rows == len(
        reports_rows(broken))


def test_the_table_stays_a_few_files_as_daily_runs_add_to_it(tmp_path):
    """A run a day adds a file a source with bad rows; every fifth commit puts the table's
    files together (a data-unchanged commit), and the rows stay the reports'."""
    from deltalake import DeltaTable

    world, root = tmp_path / "world", tmp_path / "root"
    minilake.generate(world, days=6, customers=60, seed=5, landing_only=True)
    (root / "landing_zone").mkdir(parents=True)
    by_day: dict[str, list[Path]] = {}
    for path in (world / "landing_zone").iterdir():
        by_day.setdefault(path.stem.split("_")[-1], []).append(path)
    for day in sorted(by_day):
        for path in by_day[day]:
            data = path.read_bytes()
            if path.suffix == ".txt":              # a sale of quantity -1: a bad row a day
                fields = data.split(b"\r\n")[0].split(b"~")
                fields[0], fields[3] = b"B" + day.encode(), b"-1"
                data += b"~".join(fields) + b"\r\n"
            (root / "landing_zone" / path.name).write_bytes(data)
        assert minilake.run(root).ok
    assert len(table_rows(root)) == 6 and table_rows(root) == reports_rows(root)
    table = DeltaTable(str(Layout.of(root).rejects))
    assert table.version() == 6                     # six syncs, then the compaction
    assert len(table.file_uris()) == 1


def test_no_bad_row_no_rejects_and_nothing_logged_twice(small_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(small_root / "landing_zone", root / "landing_zone")
    assert minilake.run(root).ok
    assert table_rows(root) == reports_rows(root)
    versions = len(minilake.sql("SELECT * FROM ingest_log", root=root))
    assert minilake.run(root).ok                    # nothing new: no commit either
    assert len(minilake.sql("SELECT * FROM ingest_log", root=root)) == versions
    assert Layout.of(root).rejects.is_dir() or not reports_rows(root)


def budget_world(four_days: Path, root: Path, contract: str, without_sales: bool = False
                 ) -> tuple[Path, object, str]:
    """The four days, then the broken day under ``contract``, run; the root, the run's
    result, and the broken day's sales file's name."""
    shutil.copytree(four_days, root)
    landed = minilake.land_sample(root, "broken_day")
    sales = next(n for n in landed if n.startswith("sales_"))
    if without_sales:
        (root / "landing_zone" / sales).unlink()
    if contract:
        (root / "minilake.toml").write_text(contract)
    return root, minilake.run(root), sales


def test_a_file_over_its_error_budget_is_quarantined_whole_or_said_to_be_over(
        broken, four_days, tmp_path):
    """docs/quality.md, error budgets: the broken day's sales file has ``rejected`` bad rows
    of ``read`` (counted here from the raw file and the report of a run without a budget).
    Under a budget below that share it is quarantined with the counts and nothing of it
    applied (the sales table is a run's without the file); warned, it is applied as without
    a budget and says so; under a budget above the share, nothing is said."""
    report = next(r[0] for r in reports_rows(broken) if r[0].startswith("errors_sales_"))
    rejected = sum(1 for r in reports_rows(broken) if r[0] == report)
    sales = f"sales_{report[13:21]}.txt"
    read = len([line for line in (broken / "archive" / "sales" / sales).read_bytes()
                .split(b"\r\n") if line])
    share = rejected / read
    below, above = f"max_rejected = {share * 0.9:.6f}", f"max_rejected = {share * 1.1:.6f}"

    root, result, _ = budget_world(four_days, tmp_path / "fail", f"[contract.sales]\n{below}\n")
    reasons = {f.file: f.reason for f in result.ingest.quarantined}
    assert list(reasons) == [sales], reasons
    assert reasons[sales].startswith(f"{rejected} of {read} rows rejected ({share:.1%}), over "
                                     f"the source's budget of {share * 0.9:.1%}")
    assert reasons[sales].endswith(": nothing of it applied") and "most often '" in \
        reasons[sales]
    assert (root / "quarantine" / "sales" / sales).is_file()
    without, *_ = budget_world(four_days, tmp_path / "without", "", without_sales=True)
    key = ["sale_id", "effective_from"]
    assert minilake.read_table("sales", root=root).sort_values(key).reset_index(drop=True) \
        .equals(minilake.read_table("sales", root=without).sort_values(key)
                .reset_index(drop=True))

    warned, result, _ = budget_world(four_days, tmp_path / "warn",
                                     f'[contract.sales]\n{below}\nover_budget = "warn"\n')
    assert result.ok
    note = next(f.note for f in result.ingest.files if f.file == sales)
    assert f"{rejected} of {read} rows rejected" in note
    assert table_rows(warned) == reports_rows(broken)
    assert len(minilake.read_table("sales", root=warned)) == len(
        minilake.read_table("sales", root=broken))

    _, result, _ = budget_world(four_days, tmp_path / "within", f"[contract.sales]\n{above}\n")
    assert result.ok and not any("budget" in f.note for f in result.ingest.files)


FIX = {"gender": "U", "email": "fixed@example.com", "date_of_birth": "1970-01-01",
       "membership_status": "active", "language": "en-US", "first_name": "Fixed",
       "last_name": "Fixed"}


def test_corrected_rows_replayed_give_the_tables_of_an_in_order_run_with_them(
        broken, small_root, tmp_path):
    """docs/quality.md, fix and replay: the broken day's bad customer rows corrected by hand
    (each failing field given a good value; a row whose key itself fails stays out) and
    replayed as that day's delivery give the customer table, and the rejects, of a run in
    which the file came with those rows right."""
    report = next(r[0] for r in reports_rows(broken) if r[0].startswith("errors_customer_"))
    delivery = f"customer_{report[16:24]}.csv"
    fixed = {}
    for name, _, errors, fields in reports_rows(broken):
        failing = {e.split(":")[0] for e in errors.split("; ")}
        if name == report and failing <= set(FIX):
            fixed[json.dumps(fields, sort_keys=True)] = {**fields, **{f: FIX[f]
                                                                      for f in failing}}
    assert len(fixed) >= 2, "the broken day has customer rows to correct"
    corrections = tmp_path / "corrections.csv"
    with corrections.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, list(next(iter(fixed.values()))), quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows(fixed.values())

    result = minilake.replay_rejects(corrections, delivery, root=broken)
    assert result.ok, [f.line() for f in result.ingest.quarantined]
    assert any(f.file == delivery and f.event == "resent" for f in result.ingest.files)

    right = tmp_path / "right"
    for name in ("landing_zone", "samples"):
        shutil.copytree(small_root / name, right / name)
    minilake.land_sample(right, "broken_day")
    path = right / "landing_zone" / delivery
    with path.open(newline="", encoding="utf-8") as text:
        rows = list(csv.DictReader(text))
    rows = [fixed.get(json.dumps(r, sort_keys=True), r) for r in rows]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, list(rows[0]), quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows(rows)
    assert minilake.run(right).ok

    key = ["customer_id", "effective_from"]
    mine, want = (minilake.read_table("customer", root=r).sort_values(key)
                  .reset_index(drop=True) for r in (broken, right))
    import pandas as pd
    pd.testing.assert_frame_equal(mine, want)
    assert {tuple(f.items()) for _, _, _, f in reports_rows(broken)} == {
        tuple(f.items()) for _, _, _, f in reports_rows(right)}
    assert table_rows(broken) == reports_rows(broken)
    assert len([r for r in reports_rows(broken) if r[0] == report]) == \
        len([r for r in reports_rows(right) if r[0] == report])


def test_corrections_that_cannot_be_replayed_are_one_line(broken, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text('"customer_id"\n"1"\n')
    for delivery, says in (("customer_20991231.csv", "no such delivery in archive/customer/"),
                           ("orders_20241016.csv", "not the name of a source's delivery")):
        with pytest.raises(ValueError, match=says):
            minilake.replay_rejects(bad, delivery, root=broken)
    archived = sorted(p.name for p in (broken / "archive" / "customer").iterdir())[0]
    with pytest.raises(ValueError, match="not customer rows in the form of"):
        minilake.replay_rejects(bad, archived, root=broken)
