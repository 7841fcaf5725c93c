"""End to end on the generated sample week (issue 3), checked against the raw files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable
from support import rawfiles as raw
from support.arrivals import corrections
from support.commands import minilake as minilake_cli

import minilake
from minilake.lake.layout import Layout
from minilake.lake.logs import read_log

OPTIONAL = ["address", "phone_number", "job", "company", "city", "state", "country"]


def table_versions(root: Path) -> dict[str, int]:
    """Every Delta table under tables/ (the marts' too) and its version."""
    folders = [*(root / "tables").iterdir(), *(root / "tables" / "marts").glob("*")]
    return {str(p.relative_to(root)): DeltaTable(str(p)).version() for p in folders
            if p.is_dir() and DeltaTable.is_deltatable(str(p))}


@pytest.fixture(scope="module")
def week_lake(sample_root, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("week_lake")
    shutil.copytree(sample_root / "landing_zone", root / "landing_zone")
    result = minilake.run(root)
    assert result.ok and len(result.split.moved) == 21
    return root


@pytest.fixture(scope="module")
def broken_lake(week_lake, sample_root, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("broken_lake") / "lake"
    shutil.copytree(week_lake, root)
    for path in (sample_root / "samples" / "broken_day").iterdir():
        shutil.copy(path, root / "landing_zone" / path.name)
    assert minilake.run(root).ok
    return root


def typed_customers(path: Path) -> pd.DataFrame:
    frame = raw.customers(path)
    frame["customer_id"] = frame["customer_id"].astype("int64")
    frame["date_of_birth"] = pd.to_datetime(frame["date_of_birth"]).dt.date
    frame[OPTIONAL] = frame[OPTIONAL].replace("", None)
    return frame.sort_values("customer_id").reset_index(drop=True)


def typed_products(path: Path) -> pd.DataFrame:
    frame = raw.products(path)
    frame["price"] = frame["price"].astype(float)
    frame["creation_date"] = pd.to_datetime(frame["creation_date"]).dt.date
    frame["description"] = frame["description"].replace("", None)
    return frame.sort_values("product_id").reset_index(drop=True)


def as_rows(frame: pd.DataFrame) -> list[tuple]:
    return [tuple(None if pd.isna(v) else v for v in row)
            for row in frame.astype(object).itertuples(index=False)]


@pytest.mark.parametrize("source,prefix,typed", [("customer", "customer", typed_customers),
                                                 ("product", "products", typed_products)])
def test_snapshot_as_of_each_day_equals_that_days_file(week_lake, source, prefix, typed):
    files = raw.days(week_lake / "archive" / source, prefix)
    assert len(files) == 7
    for path in files:
        expected = typed(path)
        got = minilake.read_table(source, as_of=raw.file_date(path), root=week_lake)
        got = got[expected.columns].sort_values(expected.columns[0] if source == "customer"
                                                else "product_id").reset_index(drop=True)
        assert as_rows(got) == as_rows(expected), path.name


def test_current_sales_equal_the_union_of_the_sales_files(week_lake):
    expected = raw.final_sales(week_lake / "archive" / "sales").sort_values("sale_id")
    table = minilake.read_table("sales", root=week_lake)
    current = table[table["is_current"]].sort_values("sale_id")
    assert current["sale_id"].tolist() == expected["sale_id"].tolist()
    assert current["quantity"].tolist() == expected["quantity"].astype(int).tolist()
    assert current["total_price"].tolist() == expected["total_price"].astype(float).tolist()
    assert current["customer_id"].tolist() == expected["customer_id"].astype("int64").tolist()
    assert current["sale_date"].astype(str).tolist() == expected["sale_date"].tolist()
    # each correction (a later file's row of a sale, with other values) kept the earlier
    # version, expired on the date of the correcting file: exactly those, none other
    fixes = corrections(week_lake / "archive", archived=True)
    assert len(fixes) >= 50, f"the sample week holds only {len(fixes)} correction(s)"
    closed = table[~table["is_current"]]
    assert sorted(zip(closed["sale_id"], closed["effective_from"], closed["expiry_date"],
                      strict=True)) == fixes


def test_every_file_rows_in_equal_rows_loaded_plus_rejected(broken_lake):
    log = read_log(Layout.of(broken_lake))
    assert len(log) == 24 and (log["status"] == "applied").all()
    assert (log["rows_read"] == log["rows_loaded"] + log["rows_rejected"]).all()
    for row in log.itertuples():
        path = broken_lake / "archive" / row.source / row.file
        reader = {"customer": raw.customers, "product": raw.products, "sales": raw.sales}
        assert row.rows_read == len(reader[row.source](path)), row.file


def test_a_second_run_makes_no_new_table_version(week_lake):
    before = table_versions(week_lake)
    result = minilake.run(week_lake)
    assert result.ok and result.ingest.files == [] and result.split.moved == []
    assert table_versions(week_lake) == before


def test_broken_day_gives_exactly_the_expected_errors(broken_lake, sample_root):
    expected = pd.read_csv(sample_root / "final_results" / "expected_errors.csv")
    reports = sorted(p.name for p in (broken_lake / "error_reports").iterdir())
    archived = sorted(p for p in (broken_lake / "archive").rglob("*") if p.is_file())
    assert len(reports) == len(archived) == 24, "one error report per processed file"
    for row in expected.itertuples():
        stamp = raw.file_date(Path(row.file)).strftime("%Y%m%d")
        report = pd.read_csv(broken_lake / "error_reports" / f"errors_{row.source}_{stamp}.csv",
                             dtype=str, keep_default_na=False)
        assert len(report) == row.bad_rows, row.file
        assert report.columns[-1] == "errors" and (report["errors"] != "").all()
    for name in reports:
        if "20241016" not in name:
            assert (broken_lake / "error_reports" / name).read_text().count("\n") == 1, name


def test_bad_rows_leave_their_keys_unchanged(broken_lake):
    report = pd.read_csv(broken_lake / "error_reports" / "errors_customer_20241016.csv",
                         dtype=str, keep_default_na=False)
    bad = report["customer_id"].astype("int64").tolist()
    before = minilake.read_table("customer", as_of="2024-10-15", root=broken_lake)
    after = minilake.read_table("customer", as_of="2024-10-16", root=broken_lake)
    before, after = (f[f["customer_id"].isin(bad)].reset_index(drop=True) for f in (before, after))
    assert len(before) == 3
    pd.testing.assert_frame_equal(before, after)
    products = pd.read_csv(broken_lake / "error_reports" / "errors_product_20241016.csv",
                           dtype=str, keep_default_na=False)
    current = minilake.read_table("product", as_of="2024-10-16", root=broken_lake)
    kept = current[current["product_id"] == products.loc[0, "product_id"]]
    assert len(kept) == 1 and kept["effective_from"].astype(str).tolist() == ["2024-10-15"]
    sales = minilake.read_table("sales", root=broken_lake)
    bad_sales = pd.read_csv(broken_lake / "error_reports" / "errors_sales_20241016.csv",
                            dtype=str, keep_default_na=False)
    assert not sales["sale_id"].isin(bad_sales["sale_id"]).any()


def test_cli_run_and_status_on_a_copy_of_the_repository(repo_copy):
    (repo_copy / "landing_zone" / "notes.txt").write_text("not a delivery")
    done = minilake_cli("run", "--root", str(repo_copy))
    assert done.returncode == 0, done.stderr
    assert "split: 21 file(s) archived" in done.stdout
    assert "notes.txt matches no source" in done.stdout
    assert (repo_copy / "landing_zone" / "notes.txt").exists()
    assert "Traceback" not in done.stderr
    status = minilake_cli("status", "--brief", "--root", str(repo_copy))
    assert status.returncode == 0
    lines = status.stdout.splitlines()
    assert lines[0].split()[:3] == ["source", "archived", "applied"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["customer", "7", "7"], ["product", "7", "7"], ["sales", "7", "7"]]


def test_an_unreadable_file_is_quarantined_and_the_rest_goes_through(tmp_path, small_root):
    shutil.copytree(small_root / "landing_zone", tmp_path / "landing_zone")
    (tmp_path / "landing_zone" / "products_20241012.json").write_text('{"not": "an array"}')
    done = minilake_cli("run", "--root", str(tmp_path))
    assert done.returncode == 1
    assert "products_20241012.json: quarantined: not a JSON array but an object" in done.stdout
    assert "Traceback" not in done.stderr
    reason = tmp_path / "quarantine" / "product" / "products_20241012.json.reason.txt"
    assert reason.read_text().strip() == "not a JSON array but an object"
    assert (tmp_path / "quarantine" / "product" / "products_20241012.json").exists()
    log = read_log(Layout.of(tmp_path))
    assert (log["status"] == "applied").sum() == 4 + 3 + 4
    assert minilake_cli("run", "--root", str(tmp_path)).returncode == 0   # nothing left to do


def test_status_lists_each_table_version_and_its_file(week_lake):
    done = minilake_cli("status", "--root", str(week_lake))
    assert done.returncode == 0
    assert "sales: table versions" in done.stdout
    for day in range(9, 16):
        assert f"sales_202410{day:02d}.txt" in done.stdout
