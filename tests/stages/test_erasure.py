"""Erasure requests (issue 14, docs/guarantees.md, Erasure): once a request is applied, no file
under the root
holds the erased customers' email, phone or address in any form, while every report without
personal data and every day's customer count stay as they were."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import fastavro
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from support import rawfiles as raw

import minilake
from minilake.lake.layout import Layout
from minilake.lake.logs import read_erasure_log
from minilake.outbound import reports

BAD_ONLY = {"customer_id": "990000000000000077", "first_name": "Only", "last_name": "Badrow",
            "gender": "X", "email": "only.badrow@example.org", "membership_status": "active",
            "address": "77 Nowhere Lane\nGhosttown, ZZ 00077", "phone_number": "+1-555-0177-77",
            "date_of_birth": "1980-02-03", "job": "", "company": "", "city": "", "state": "",
            "country": "", "language": "en-US"}
# a customer whose only row is bad on a personal field: an email without '@'
BAD_EMAIL = {**BAD_ONLY, "customer_id": "990000000000000078", "first_name": "Nota",
             "last_name": "Mailbox", "gender": "F", "email": "nota.mailbox.example.org",
             "address": "78 Nowhere Lane\nGhosttown, ZZ 00078", "phone_number": "+1-555-0178-78",
             "date_of_birth": "1981-04-05"}
# docs/guarantees.md, Erasure as the README states it: each personal field's placeholder, and what
# stands for a
# value that failed validation (so that a bad row stays bad)
PLACEHOLDER = {"first_name": "[erased]", "last_name": "[erased]",
               "email": "erased@erased.invalid", "address": "", "phone_number": "",
               "date_of_birth": "1900-01-01"}
FAILED = "[erased]"
# the repository's fixtures: the generator's inputs and references, not minilake's files
NOT_MINILAKES = ("samples", "final_results")


def customers_until(root: Path) -> pd.DataFrame:
    return minilake.read_table("customer", root=root)


def append_csv_row(path: Path, row: dict) -> None:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(row.values())
    path.write_bytes(path.read_bytes() + out.getvalue().encode())


def decoded(path: Path) -> Iterator[tuple[str, str]]:
    """Each text value of a file of an export format, decoded, with its column: Avro records
    (deflate blocks, invisible to a byte search), Parquet columns, CSV cells."""
    if path.suffix == ".avro":
        with path.open("rb") as handle:
            for record in fastavro.reader(handle):
                yield from ((k, v) for k, v in record.items() if isinstance(v, str))
    elif path.suffix == ".parquet":
        table = pq.read_table(path)
        for column in table.column_names:
            kind = table.schema.field(column).type
            if pa.types.is_string(kind) or pa.types.is_large_string(kind):
                yield from ((column, v) for v in table.column(column).to_pylist() if v)
    elif path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            rows = csv.reader(handle)
            header = next(rows, [])
            for row in rows:
                yield from ((header[i] if i < len(header) else f"#{i}", v)
                            for i, v in enumerate(row) if v)


def footer_bounds(path: Path) -> Iterator[str]:
    """The min/max statistics of every column chunk of a Parquet file, as text."""
    meta = pq.ParquetFile(path).metadata
    for g in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            stats = meta.row_group(g).column(c).statistics
            if stats is not None and stats.has_min_max:
                for bound in (stats.min, stats.max):
                    if isinstance(bound, bytes):
                        bound = bound.decode("utf-8", "replace")
                    if isinstance(bound, str):
                        yield bound


def scan(root: Path, values: set[str]) -> list[str]:
    """Every place under the root where one of ``values`` still lies: raw bytes of every file
    (as written, JSON-escaped, CSV-quoted, any letter case), the decoded values of every file
    of an export format (Avro, Parquet, CSV: a compressed container hides them from the byte
    search) and Parquet footer statistics (tables, their checkpoints, exports)."""
    forms = set()
    for value in values:
        forms |= {value, json.dumps(value)[1:-1], value.replace('"', '""')}
    needles = [f.lower().encode() for f in forms]
    lowered = {v.lower() for v in values}
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.parts[0] in NOT_MINILAKES:
            continue
        data = path.read_bytes().lower()
        found += [f"{rel}: bytes {n!r}" for n in needles if n in data]
        found += sorted({f"{rel}: value in {column}" for column, text in decoded(path)
                         for v in lowered if v in text.lower()})
        if path.suffix == ".parquet":
            found += [f"{rel}: footer statistics" for bound in footer_bounds(path)
                      if bound.lower() in lowered]
    return found


def is_date(text: str) -> bool:
    """Whether text is a real date as YYYY-MM-DD: found without minilake's own parser."""
    try:
        return dt.date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


def failing_fields(errors: str) -> set[str]:
    """The fields an error report's ``errors`` cell names ('gender: not one of …; …')."""
    return {part.split(": ")[0] for part in errors.split("; ")}


def broken_day_report(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "error_reports" / "errors_customer_20241013.csv", dtype=str,
                       keep_default_na=False).set_index("customer_id")


@pytest.fixture(scope="module")
def erased(tmp_path_factory, small_root) -> dict:
    """A small world's four days and its broken day applied, then an erasure request for:
    the top customer of MIDP-307 by id, another by email in upper case, one deleted mid-history,
    two who only ever had a bad row (one bad on gender, one on the email itself), the broken
    day's customer whose row there has a date of birth that is no date, one named twice, and
    two who do not exist. Exported as Avro, Parquet and CSV before the request."""
    root = tmp_path_factory.mktemp("erasure") / "root"
    for name in ("landing_zone", "samples", "final_results"):
        shutil.copytree(small_root / name, root / name)
    broken = minilake.land_sample(root, "broken_day")
    customer_day = next(n for n in broken if n.startswith("customer_"))
    append_csv_row(root / "landing_zone" / customer_day, BAD_ONLY)
    append_csv_row(root / "landing_zone" / customer_day, BAD_EMAIL)
    no_date = raw.customers(root / "landing_zone" / customer_day)
    no_date = no_date[~no_date["date_of_birth"].map(is_date)]
    assert len(no_date) == 1, "the broken day has one date of birth that is no date"
    bad_birth = int(no_date["customer_id"].iloc[0])
    minilake.run(root)
    # a second snapshot of a date, in the JSON form, is quarantined: raw data there too
    from minilake.contract.sources import SOURCES
    from minilake.generate.sample_api import records

    day = root / "archive" / "customer" / "customer_20241012.csv"
    (root / "landing_zone" / "customer_20241012.json").write_text(
        "[\n" + ",\n".join(records(SOURCES["customer"], day)) + "\n]\n")
    assert [f.file for f in minilake.run(root).ingest.quarantined] == [
        "customer_20241012.json"]
    minilake.export("customer", root=root)                   # exports/customer.avro
    minilake.export("customer", format="parquet", root=root)
    minilake.export("customer", format="csv", current=True, root=root)

    table = customers_until(root)
    days = sorted(set(table["effective_from"]))
    bad_rows = broken_day_report(root).loc[[BAD_ONLY["customer_id"], BAD_EMAIL["customer_id"],
                                            str(bad_birth)]]
    assert [failing_fields(e) for e in bad_rows["errors"]] == [
        {"gender"}, {"email"}, {"date_of_birth"}]
    before = {
        "counts": {d: len(minilake.read_table("customer", as_of=d, root=root)) for d in days},
        "reports": {n: f.to_csv(index=False) for n, f in reports.write_reports(
            root, "2024-10-12", tmp_path_factory.mktemp("before")).items()},
        "versions": minilake.versions("customer", root)["version"].tolist(),
        "bad_rows": bad_rows,
    }
    top = reports.write_reports(root, "2024-10-12", root / "reports")["sales_report"]
    by_id = int(top["customer_id"].iloc[0])
    monthly = minilake.read_mart("customer_monthly", root).to_pandas()
    before["mart_names"] = set(monthly.loc[monthly["customer_id"] == by_id, "first_name"])
    current = table[table["is_current"] & (table["customer_id"] != by_id)
                    & (table["customer_id"] != bad_birth)]
    by_email = current.iloc[0]
    gone = table.groupby("customer_id")["is_current"].any()
    deleted = int(gone[~gone].index[0])
    twice = int(current.iloc[1]["customer_id"])
    people = {by_id, int(by_email["customer_id"]), deleted, twice, bad_birth,
              int(BAD_ONLY["customer_id"]), int(BAD_EMAIL["customer_id"])}
    mine = table[table["customer_id"].isin(people)]
    personal = ("email", "phone_number", "address")
    values = {v for c in personal for v in mine[c].dropna() if v}
    values |= {v for c in personal for v in bad_rows[c] if v}
    others = table[~table["customer_id"].isin(people)]
    values -= {v for c in personal for v in others[c].dropna()}
    found = scan(root, values)
    decoded_in = {f.split(": ")[0] for f in found if ": value in " in f}
    assert {"exports/customer.avro", "exports/customer.parquet",
            "exports/customer_current.csv"} <= decoded_in, "the scan decodes every export"
    assert any(f.startswith("tables/_rejects/") for f in found), "the bad rows as a table"

    request = [{"customer_id": str(by_id)}, {"email": by_email["email"].upper()},
               {"customer-id": str(deleted)}, {"customer_id": BAD_ONLY["customer_id"]},
               {"customer_id": BAD_EMAIL["customer_id"]}, {"customer_id": str(bad_birth)},
               {"customer_id": str(twice)}, {"customer_id": str(twice), "email": "x@y.z"},
               {"customer_id": "123456789"}, {"email": "nobody@example.invalid"},
               {"email": "not-an-email"}, {}]
    (root / "landing_zone" / "erasure_requests_20241014.json").write_text(
        json.dumps(request, indent=2))
    result = minilake.run(root)
    return {"root": root, "result": result, "before": before, "values": values,
            "people": people, "by_id": by_id, "days": days, "request": request,
            "bad_birth": bad_birth, "with_versions": people & set(table["customer_id"])}


def test_no_file_under_the_root_holds_the_erased_data(erased):
    assert erased["result"].ok
    assert scan(erased["root"], erased["values"]) == []
    quarantined = erased["root"] / "quarantine" / "customer" / "customer_20241012.json"
    rows = {r["customer_id"]: r for r in json.loads(quarantined.read_text())}
    assert rows[erased["by_id"]]["first_name"] == "[erased]"     # rewritten, still JSON


def purged_tables_files(folder: Path) -> list[Path]:
    """The Parquet files a folder of purged Delta tables should hold, from each table's log:
    its one checkpoint (no log entry before it: the earlier versions are gone) and the data
    files of the versions from it on, no other."""
    out = []
    for log in sorted(folder.glob("*/_delta_log")):
        checkpoints = sorted(log.glob("*.checkpoint.parquet"))
        assert len(checkpoints) == 1, log
        first = int(checkpoints[0].name.split(".")[0])
        kept = sorted(int(p.stem) for p in log.glob("*.json"))
        assert kept[0] == first, (log, kept)
        out += checkpoints
        out += {Path(f) for v in kept
                for f in DeltaTable(str(log.parent), version=v).file_uris()}
    return out


def test_the_marts_and_their_old_files_hold_no_erased_name(erased):
    root = erased["root"]
    assert erased["before"]["mart_names"] - {"[erased]"}       # a real name was there
    files = sorted((root / "tables" / "marts").rglob("*.parquet"))
    assert files == sorted(purged_tables_files(root / "tables" / "marts"))
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
    assert set(mine["customer_id"]) == erased["with_versions"]
    assert erased["with_versions"] == erased["people"] - {int(BAD_ONLY["customer_id"]),
                                                          int(BAD_EMAIL["customer_id"])}
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


def erased_by_the_rule(row: pd.Series, failing: set[str]) -> dict[str, str]:
    """A raw row's personal fields as docs/guarantees.md, Erasure erases them: empty stays empty, a
    value that
    failed its check becomes the failed-value stand-in, any other the field's placeholder."""
    return {c: "" if row[c] == "" or PLACEHOLDER[c] == "" else
            FAILED if c in failing else PLACEHOLDER[c] for c in PLACEHOLDER}


def test_a_bad_row_stays_bad_for_the_same_fields_with_the_failed_value_stand_in(erased):
    """Bad rows failing on gender, on the email, on the date of birth: after the erasure each
    is still in its error report (never a table version), failing on the same fields, its
    personal fields erased by the rule (a failed value is not made a valid placeholder),
    every other field as it was."""
    root, before = erased["root"], erased["before"]["bad_rows"]
    report = broken_day_report(root)
    table = customers_until(root)
    versions = table[table["customer_id"] == erased["bad_birth"]]
    assert len(versions), "the customer bad on the date of birth has earlier versions"
    problems = []
    if int(BAD_EMAIL["customer_id"]) in set(table["customer_id"]):
        problems.append(f"{BAD_EMAIL['customer_id']}: its bad row became a table version")
    if dt.date(2024, 10, 13) in set(versions["effective_from"]):
        problems.append(f"{erased['bad_birth']}: its bad row became a table version")
    for cid, was in before.iterrows():
        if cid not in report.index:
            problems.append(f"{cid}: its bad row left the error report")
            continue
        now, failing = report.loc[cid], failing_fields(was["errors"])
        if failing_fields(now["errors"]) != failing:
            problems.append(f"{cid}: fails {now['errors']!r}, was {was['errors']!r}")
        got = {c: now[c] for c in PLACEHOLDER}
        if got != erased_by_the_rule(was, failing):
            problems.append(f"{cid}: erased as {got}, want {erased_by_the_rule(was, failing)}")
        problems += [f"{cid}: {c} changed" for c in set(was.index) - set(PLACEHOLDER)
                     - {"errors"} if now[c] != was[c]]
        problems += [f"{cid}: {f} is not failing on {FAILED!r}: {now['errors']!r}"
                     for f in failing & set(PLACEHOLDER)
                     if f"{f}: " not in now["errors"] or f"'{FAILED}'" not in now["errors"]]
    assert not problems, "\n".join(problems)


def test_the_erasure_log_and_status(erased):
    root = erased["root"]
    logged = read_erasure_log(Layout.of(root))
    ids = {int(i) for i in logged["customer_id"].dropna()}
    assert erased["people"] | {123456789} == ids
    assert logged.set_index("customer_id").loc[123456789, "versions_rewritten"] == 0
    assert (logged["named_by"] == "email (no match)").sum() == 2      # x@y.z, nobody@
    summary = minilake.erasures(root)
    assert summary["customers"].iloc[0] == len(erased["people"]) + 1     # + 123456789
    assert summary["found"].iloc[0] == len(erased["with_versions"])
    outcome = [f for f in erased["result"].ingest.files if f.source == "erasure_requests"]
    unreadable = [r for r in erased["request"] if not r or "@" not in r.get("email", "@")]
    assert [(f.rows_read, f.rows_rejected) for f in outcome] == [
        (len(erased["request"]), len(unreadable))]


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


def test_vacuum_after_an_erasure_removes_what_it_lists_and_then_lists_nothing(erased, tmp_path):
    """Issue 35: after an erasure, vacuum said it removed 17 files and a dry run afterwards
    still said 17. What it lists is what no kept version refers to (from each table's log),
    what it removes is what it listed, and a second dry run lists nothing."""
    root = tmp_path / "copy"
    shutil.copytree(erased["root"], root)
    want = {}
    for name in ("customer", "product", "sales"):
        table = root / "tables" / name
        versions = sorted(int(p.stem) for p in (table / "_delta_log").glob("*.json"))
        referenced = {str(Path(f).relative_to(table)) for v in versions
                      for f in DeltaTable(str(table), version=v).file_uris()}
        on_disk = {str(p.relative_to(table)) for p in table.rglob("*.parquet")
                   if "_delta_log" not in p.parts}
        want[name] = sorted(on_disk - referenced)
    listed = minilake.vacuum(root, dry_run=True)
    assert {n: listed[n] for n in want} == want
    removed = minilake.vacuum(root)
    assert {n: removed[n] for n in want} == want
    assert not any(minilake.vacuum(root, dry_run=True).values())


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

