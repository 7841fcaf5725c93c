"""Erasure requests (issue 14, SPEC §9): once a request is applied, no file under the root
holds the erased customers' email, phone or address in any form, while every report without
personal data and every day's customer count stay as they were."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import minilake
from minilake.layout import Layout
from minilake.load.tables import read_erasure_log
from minilake.outbound import reports

BAD_ONLY = {"customer_id": "990000000000000077", "first_name": "Only", "last_name": "Badrow",
            "gender": "X", "email": "only.badrow@example.org", "membership_status": "active",
            "address": "77 Nowhere Lane\nGhosttown, ZZ 00077", "phone_number": "+1-555-0177-77",
            "date_of_birth": "1980-02-03", "job": "", "company": "", "city": "", "state": "",
            "country": "", "language": "en-US"}
# the repository's fixtures: the generator's inputs and references, not minilake's files
NOT_MINILAKES = ("samples", "final_results")


def customers_until(root: Path) -> pd.DataFrame:
    return minilake.read_table("customer", root=root)


def append_csv_row(path: Path, row: dict) -> None:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(row.values())
    path.write_bytes(path.read_bytes() + out.getvalue().encode())


def scan(root: Path, values: set[str]) -> list[str]:
    """Every place under the root where one of ``values`` still lies: raw bytes of every file
    (as written, JSON-escaped, CSV-quoted, any letter case), decoded Parquet values and
    Parquet footer statistics (tables, their checkpoints, exports)."""
    forms = set()
    for value in values:
        forms |= {value, json.dumps(value)[1:-1], value.replace('"', '""')}
    needles = [f.lower().encode() for f in forms]
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.parts[0] in NOT_MINILAKES:
            continue
        data = path.read_bytes().lower()
        found += [f"{rel}: bytes {n!r}" for n in needles if n in data]
        if path.suffix == ".parquet":
            parquet = pq.ParquetFile(path)
            table = parquet.read()
            for column in table.column_names:
                if pa.types.is_string(table.schema.field(column).type) or \
                        pa.types.is_large_string(table.schema.field(column).type):
                    texts = {str(v).lower() for v in table.column(column).to_pylist() if v}
                    found += [f"{rel}: value in {column}" for v in values
                              if v.lower() in texts]
            meta = parquet.metadata
            for g in range(meta.num_row_groups):
                for c in range(meta.num_columns):
                    stats = meta.row_group(g).column(c).statistics
                    if stats is not None and stats.has_min_max:
                        for bound in (stats.min, stats.max):
                            if isinstance(bound, bytes):
                                bound = bound.decode("utf-8", "replace")
                            if isinstance(bound, str) and bound.lower() in {
                                    v.lower() for v in values}:
                                found.append(f"{rel}: footer statistics")
    return found


@pytest.fixture(scope="module")
def erased(tmp_path_factory, small_root) -> dict:
    """A small world's four days and its broken day applied, then an erasure request for:
    the top customer of MIDP-307 by id, another by email in upper case, one deleted mid-history,
    one who only ever had a bad row, one named twice, and two who do not exist."""
    root = tmp_path_factory.mktemp("erasure") / "root"
    for name in ("landing_zone", "samples", "final_results"):
        shutil.copytree(small_root / name, root / name)
    broken = minilake.land_sample(root, "broken_day")
    customer_day = next(n for n in broken if n.startswith("customer_"))
    append_csv_row(root / "landing_zone" / customer_day, BAD_ONLY)
    minilake.run(root)
    # a second snapshot of a date, in the JSON form, is quarantined: raw data there too
    from minilake.generate.sample_api import records
    from minilake.sources import SOURCES

    day = root / "archive" / "customer" / "customer_20241012.csv"
    (root / "landing_zone" / "customer_20241012.json").write_text(
        "[\n" + ",\n".join(records(SOURCES["customer"], day)) + "\n]\n")
    assert [f.file for f in minilake.run(root).ingest.quarantined] == [
        "customer_20241012.json"]
    minilake.export("customer", root=root)                   # exports/customer.avro
    minilake.export("customer", format="csv", current=True, root=root)

    table = customers_until(root)
    days = sorted(set(table["effective_from"]))
    before = {
        "counts": {d: len(minilake.read_table("customer", as_of=d, root=root)) for d in days},
        "reports": {n: f.to_csv(index=False) for n, f in reports.write_reports(
            root, "2024-10-12", tmp_path_factory.mktemp("before")).items()},
        "versions": minilake.versions("customer", root)["version"].tolist(),
    }
    top = reports.write_reports(root, "2024-10-12", root / "reports")["sales_report"]
    by_id = int(top["customer_id"].iloc[0])
    monthly = minilake.read_mart("customer_monthly", root).to_pandas()
    before["mart_names"] = set(monthly.loc[monthly["customer_id"] == by_id, "first_name"])
    current = table[table["is_current"] & (table["customer_id"] != by_id)]
    by_email = current.iloc[0]
    gone = table.groupby("customer_id")["is_current"].any()
    deleted = int(gone[~gone].index[0])
    twice = int(current.iloc[1]["customer_id"])
    people = {by_id, int(by_email["customer_id"]), deleted, twice,
              int(BAD_ONLY["customer_id"])}
    mine = table[table["customer_id"].isin(people)]
    values = {v for c in ("email", "phone_number", "address") for v in mine[c].dropna() if v}
    values |= {BAD_ONLY["email"], BAD_ONLY["phone_number"], BAD_ONLY["address"]}
    others = table[~table["customer_id"].isin(people)]
    values -= {v for c in ("email", "phone_number", "address") for v in others[c].dropna()}
    assert scan(root, values), "the scan finds the data before the erasure"

    request = [{"customer_id": str(by_id)}, {"email": by_email["email"].upper()},
               {"customer-id": str(deleted)}, {"customer_id": BAD_ONLY["customer_id"]},
               {"customer_id": str(twice)}, {"customer_id": str(twice), "email": "x@y.z"},
               {"customer_id": "123456789"}, {"email": "nobody@example.invalid"},
               {"email": "not-an-email"}, {}]
    (root / "landing_zone" / "erasure_requests_20241014.json").write_text(
        json.dumps(request, indent=2))
    result = minilake.run(root)
    return {"root": root, "result": result, "before": before, "values": values,
            "people": people, "by_id": by_id, "days": days, "request": request}


def test_no_file_under_the_root_holds_the_erased_data(erased):
    assert erased["result"].ok
    assert scan(erased["root"], erased["values"]) == []
    quarantined = erased["root"] / "quarantine" / "customer" / "customer_20241012.json"
    rows = {r["customer_id"]: r for r in json.loads(quarantined.read_text())}
    assert rows[erased["by_id"]]["first_name"] == "[erased]"     # rewritten, still JSON


def test_the_marts_and_their_old_files_hold_no_erased_name(erased):
    root = erased["root"]
    assert erased["before"]["mart_names"] - {"[erased]"}       # a real name was there
    files = list((root / "tables" / "marts").rglob("*.parquet"))
    assert len(files) >= 3
    for path in files:
        rows = pq.read_table(path).to_pandas()
        if "first_name" in rows:             # the kept customer state holds no names
            mine = rows[rows["customer_id"].isin(erased["people"])]
            assert set(mine["first_name"].dropna()) <= {"[erased]"}, path
    monthly = minilake.read_mart("customer_monthly", root).to_pandas()
    assert set(monthly.loc[monthly["customer_id"] == erased["by_id"], "first_name"]) == {
        "[erased]"}


def test_every_version_carries_the_placeholders(erased):
    table = customers_until(erased["root"])
    mine = table[table["customer_id"].isin(erased["people"])]
    assert set(mine["customer_id"]) == erased["people"] - {int(BAD_ONLY["customer_id"])}
    assert set(mine["first_name"]) == set(mine["last_name"]) == {"[erased]"}
    assert set(mine["email"]) == {"erased@erased.invalid"}
    assert mine["address"].isna().all() and mine["phone_number"].isna().all()
    assert {str(d) for d in mine["date_of_birth"]} == {"1900-01-01"}


def test_counts_per_day_and_reports_without_personal_data_are_unchanged(erased, tmp_path):
    root, before = erased["root"], erased["before"]
    for day, count in before["counts"].items():
        assert len(minilake.read_table("customer", as_of=day, root=root)) == count, day
    after = reports.write_reports(root, "2024-10-12", tmp_path)
    for name in ("customer_growth", "sales_by_membership", "product_sale_breakdown"):
        assert after[name].to_csv(index=False) == before["reports"][name], name
    top = after["sales_report"].set_index("customer_id")
    assert top.loc[erased["by_id"], "first_name"] == "[erased]"
    assert top.loc[erased["by_id"], "email"] == "erased@erased.invalid"
    shown = pd.read_csv(root / "reports" / "sales_report.csv").set_index("customer_id")
    assert shown.loc[erased["by_id"], "last_name"] == "[erased]"    # rewritten in place


def test_the_bad_row_stays_bad_and_the_request_file_holds_no_email(erased):
    root = erased["root"]
    report = pd.read_csv(next((root / "error_reports").glob("errors_customer_20241013*.csv")),
                         dtype=str, keep_default_na=False)
    row = report[report["customer_id"] == BAD_ONLY["customer_id"]]
    assert len(row) == 1 and row["errors"].iloc[0].startswith("gender: not one of M/F/U")
    assert row["first_name"].iloc[0] == "[erased]" and row["address"].iloc[0] == ""
    archived = json.loads((root / "archive" / "erasure_requests" /
                           "erasure_requests_20241014.json").read_text())
    assert len(archived) == len(erased["request"])
    emails = [r.get("email") for r in archived if r.get("email")]
    assert set(emails) <= {"unknown@erased.invalid", "[erased]", "erased@erased.invalid"}


def test_the_erasure_log_and_status(erased):
    root = erased["root"]
    logged = read_erasure_log(Layout.of(root))
    ids = {int(i) for i in logged["customer_id"].dropna()}
    assert erased["people"] | {123456789} == ids
    assert logged.set_index("customer_id").loc[123456789, "versions_rewritten"] == 0
    assert (logged["named_by"] == "email (no match)").sum() == 2      # x@y.z, nobody@
    summary = minilake.erasures(root)
    assert summary["customers"].iloc[0] == len(erased["people"]) + 1     # + 123456789
    assert summary["found"].iloc[0] == len(erased["people"]) - 1         # bad row: no version
    outcome = [f for f in erased["result"].ingest.files if f.source == "erasure_requests"]
    assert [(f.rows_read, f.rows_rejected) for f in outcome] == [(10, 2)]


def test_time_travel_by_version_before_the_erasure_says_why(erased):
    root = erased["root"]
    first = erased["before"]["versions"][0]
    with pytest.raises(ValueError, match=r"customer version \d+ no longer exists: the erasure "
                       r"requested by erasure_requests_20241014\.json"):
        minilake.read_table("customer", root=root, version=first)
    listed = minilake.versions("customer", root)
    kept, gone = listed[listed["kept"]], listed[~listed["kept"]]
    assert kept["version"].min() > max(erased["before"]["versions"])
    # the purged versions keep their lineage: the files each came from, and why it went
    assert set(gone["version"]) == set(erased["before"]["versions"])
    assert gone["note"].str.startswith("purged by the erasure requested by "
                                       "erasure_requests_20241014.json").all()


def test_rebuild_after_an_erasure_gives_the_same_tables(erased, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(erased["root"], root)
    want = {n: minilake.read_table(n, root=root) for n in ("customer", "product", "sales")}
    assert minilake.rebuild(root=root).ok
    for name, frame in want.items():
        pd.testing.assert_frame_equal(minilake.read_table(name, root=root), frame, obj=name)


def test_a_later_snapshot_with_an_erased_customer_is_stored_erased(erased, tmp_path):
    root = tmp_path / "later"
    shutil.copytree(erased["root"], root)
    # the upstream system still sends the customer, with their data, a day later
    last = sorted((root / "archive" / "customer").glob("customer_*.csv"))[-1]
    day = int(last.name[9:17]) + 1
    rows = [r for r in csv.DictReader(io.StringIO(last.read_text()))
            if r["customer_id"] != BAD_ONLY["customer_id"]]
    rows.append({**BAD_ONLY, "gender": "F"})                # now a good row, still erased
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), quoting=csv.QUOTE_ALL,
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (root / "landing_zone" / f"customer_{day}.csv").write_text(out.getvalue())
    assert minilake.run(root).ok
    assert scan(root, {BAD_ONLY["email"], BAD_ONLY["phone_number"]}) == []
    table = customers_until(root)
    again = table[table["customer_id"] == int(BAD_ONLY["customer_id"])]
    assert list(again["email"]) == ["erased@erased.invalid"]
    assert list(again["first_name"]) == ["[erased]"]
