"""The contract matrix (issue 40, docs/contracts.md): a column added, missing, renamed, widened
and then narrowed, in each of the three forms (the customer CSV with its header, the product
JSON, the headerless ``~`` sales), under each rule that applies, on files written here by
hand, against tables worked out here by hand.

Every world is two keys, A and B, on 2024-10-09, and a second file on 2024-10-10 that drifts
(a third on 2024-10-11 for the narrowed column). A's row carries the drift's value, B's an
empty one (or the same instant, the same number), so a cell says which keys open a version.
Besides the hand-computed versions, every declared value of every version is checked against
the raw text of the file that opened it: nothing differs from the raw files except where the
contract says so.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from support.rawfiles import CUSTOMER_COLUMNS, SALES_COLUMNS

import minilake
from minilake.lake.layout import Layout

DAYS = ["2024-10-09", "2024-10-10", "2024-10-11"]
OPEN = dt.date(2099, 12, 31)
KEYS = {"csv": ("1001", "1002"), "json": ("P1", "P2"), "tilde": ("1", "2")}
SOURCE = {"csv": "customer", "json": "product", "tilde": "sales"}


def customer(key: str, **values: str) -> dict:
    row = {c: "" for c in CUSTOMER_COLUMNS}
    row.update(customer_id=key, first_name="Ann", last_name="Lee", gender="F",
               email=f"c{key}@example.com", membership_status="active",
               date_of_birth="1990-05-17", language="en-US", job="Chef" if key == "1001" else "")
    return {**row, **values}


def product(key: str, **values: str) -> dict:
    return {"name": f"Item {key}", "product_id": key, "price": "2.50",
            "description": "A thing" if key == "P1" else "", "creation_date": "2024-01-01",
            **values}


def sale(key: str, **values: str) -> dict:
    return {"sale_id": key, "customer_id": "1001", "product_id": "P1", "quantity": "2",
            "price_per_unit": "2.50", "total_price": "5.00", "sale_date": "2024-10-09",
            **values}


ROW = {"csv": customer, "json": product, "tilde": sale}


def write(root: Path, form: str, day: str, rows: list[dict]) -> None:
    """One file of ``rows`` (dicts: their keys are the file's columns, in order)."""
    landing = root / "landing_zone"
    landing.mkdir(parents=True, exist_ok=True)
    stamp = day.replace("-", "")
    if form == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, list(rows[0]), quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        (landing / f"customer_{stamp}.csv").write_text(out.getvalue(), encoding="utf-8")
    elif form == "json":
        (landing / f"products_{stamp}.json").write_text(json.dumps(rows, indent=2))
    else:
        (landing / f"sales_{stamp}.txt").write_bytes(
            "".join("~".join(r.values()) + "\r\n" for r in rows).encode())


# --- the drifts: what the second day's rows are, given A's and B's first-day rows -------------

ADDED = {"csv": "tier", "json": "supplier", "tilde": "field_8"}     # the table's name for it
MISSING = {"csv": "job", "json": "description", "tilde": "sale_date"}
RENAMED = {"csv": ("e_mail", "email"), "json": ("title", "name")}
WIDENED = {"csv": "date_of_birth", "json": "creation_date", "tilde": "quantity"}
WIDE = {"csv": "datetime64[us, UTC]", "json": "datetime64[us, UTC]", "tilde": "float64"}


def drifted(form: str, drift: str, row: dict, first: bool) -> dict:
    """A key's second-day row: A (``first``) with the drift's value, B with an empty one."""
    if drift == "added":
        return {**row, ADDED[form]: "x" if first else ""}
    if drift == "missing":
        return {k: v for k, v in row.items() if k != MISSING[form]}
    if drift == "renamed":
        old, declared = RENAMED[form]
        return {(old if k == declared else k): v for k, v in row.items()}
    column = WIDENED[form]              # widened: A a time, B its midnight; A 2.5, B 2.0
    if form == "tilde":
        return {**row, column: "2.5", "total_price": "6.25"} if first else \
            {**row, column: "2.0"}
    return {**row, column: row[column] + (" 10:20:30" if first else "T00:00:00")}


def world(root: Path, form: str, drift: str, contract: str) -> Path:
    a, b = (ROW[form](k) for k in KEYS[form])
    write(root, form, DAYS[0], [a, b])
    write(root, form, DAYS[1], [drifted(form, drift, a, True), drifted(form, drift, b, False)])
    if drift == "narrowed":     # the widened day, then a day of dates again
        write(root, form, DAYS[2], [a, b])
    if contract:
        (root / "minilake.toml").write_text(f"[contract.{SOURCE[form]}]\n{contract}\n")
    return root


# --- the cells: (form, drift, contract) -> what the second day does --------------------------
# "versions": per key, the first dates of its versions (the last one open); "column": the
# table's column the drift concerns and A's values in it, version by version; "quarantined":
# the second day's reason; "bad": rows of the second day in the error report.

CELLS = []
SPLIT = "no row can be split into the 7 columns: row has {} fields, expected 7"   # ~, frozen
for form in ("csv", "json", "tilde"):
    name = ADDED[form]
    # frozen, a headerless file is read by its declared count of fields, as before contracts
    more = SPLIT.format(8) if form == "tilde" else \
        f"unexpected {'key' if form == 'json' else 'column'} '{name}'"
    CELLS += [
        (form, "added", 'new_column = "evolve"',
         {"versions": ([0, 1], [0]), "column": (name, [None, "x"])}),
        (form, "added", 'new_column = "keep_extra"',
         {"versions": ([0, 1], [0]), "column": ("_extra", [None, f'{{"{name}": "x"}}'])}),
        (form, "added", 'new_column = "discard"', {"versions": ([0], [0])}),
        (form, "added", 'new_column = "freeze"', {"quarantined": more}),
        (form, "added", "", {"quarantined": more}),
    ]
    widened = [
        (form, "widened", f'widen = ["{WIDENED[form]}"]',
         {"versions": ([0, 1], [0]), "column": (WIDENED[form], "widened")}),
        (form, "widened", "", {"versions": ([0], [0]), "bad": 2}),
        (form, "narrowed", f'widen = ["{WIDENED[form]}"]',
         {"versions": ([0, 1, 2], [0]), "column": (WIDENED[form], "widened")}),
    ]
    if form == "tilde":                          # the last field is the required sale date
        CELLS += [(form, "missing", 'missing_column = "evolve"',
                   {"quarantined": "missing column 'sale_date' (required: 'sale_date' cannot "
                                   "be kept empty)"}),
                  (form, "missing", "", {"quarantined": SPLIT.format(6)}), *widened]
        continue
    what = "key" if form == "json" else "column"
    old, declared = RENAMED[form]
    CELLS += [
        (form, "missing", 'missing_column = "evolve"',
         {"versions": ([0, 1], [0]), "column": (MISSING[form], ["Chef" if form == "csv" else
                                                                 "A thing", None])}),
        (form, "missing", 'missing_column = "freeze"',
         {"quarantined": f"missing {what} '{MISSING[form]}'"}),
        (form, "renamed", f'renamed = {{ {old} = "{declared}" }}', {"versions": ([0], [0])}),
        (form, "renamed", "", {"quarantined": f"missing {what} '{declared}'; unexpected {what} "
                                              f"'{old}'"}),
        (form, "renamed", 'new_column = "evolve"\nmissing_column = "evolve"',
         {"quarantined": f"missing {what} '{declared}' (required: '{declared}' cannot be kept "
                         f"empty)"}),
        *widened,
    ]


def first_dates(table: pd.DataFrame, key: str, column: str) -> list[int]:
    rows = table[table[column].astype(str) == key].sort_values("effective_from")
    return [DAYS.index(d.isoformat()) for d in rows["effective_from"]]


def raw_rows(root: Path, form: str) -> dict[tuple[str, dt.date], dict]:
    """Every archived raw row by (key, its file's date): the file's text, as written."""
    out = {}
    for path in sorted((root / "archive" / SOURCE[form]).iterdir()):
        day = dt.datetime.strptime(path.stem.split("_")[1], "%Y%m%d").date()
        if form == "csv":
            rows = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
        elif form == "json":
            rows = json.loads(path.read_text())
        else:
            rows = [dict(zip(SALES_COLUMNS, line.split("~")[:7], strict=True))
                    for line in path.read_bytes().decode().split("\r\n") if line]
        for row in rows:
            key = row.get("customer_id" if form == "csv" else "product_id" if form == "json"
                          else "sale_id")
            out[key, day] = row
    return out


def as_text(value) -> str:
    """A table's value as its raw text would read (docs/formats.md types); a number as
    Python writes it (compared as a number, :func:`is_raw`)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        value = value.tz_convert("UTC").tz_localize(None).to_pydatetime()
        return value.date().isoformat() if value.time() == dt.time() else \
            value.isoformat(sep=" ")
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def is_raw(value, text: str) -> bool:
    """Whether a table's value is the raw text's: a number the number the text writes
    (``2.50`` is 2.5, a widened ``2`` is 2.0), anything else the same text."""
    if isinstance(value, float) and not pd.isna(value):
        return text != "" and float(text) == value
    return as_text(value) == text


@pytest.mark.parametrize("form, drift, contract, want", CELLS,
                         ids=[f"{f}-{d}-{c.split(chr(10))[0] or 'default'}"
                              for f, d, c, _ in CELLS])
def test_each_drift_in_each_form_under_each_rule(tmp_path, form, drift, contract, want):
    root = world(tmp_path, form, drift, contract)
    result = minilake.run(root)
    source = SOURCE[form]
    quarantined = {f.file: f.reason for f in result.ingest.quarantined}
    if "quarantined" in want:
        assert list(quarantined.values()) == [want["quarantined"]], quarantined
        assert len(minilake.read_table(source, root=root)) == 2      # the first day's
        return
    assert not quarantined
    table = minilake.read_table(source, root=root)
    key = {"csv": "customer_id", "json": "product_id", "tilde": "sale_id"}[form]
    a, b = KEYS[form]
    assert (first_dates(table, a, key), first_dates(table, b, key)) == want["versions"]
    for k in (a, b):                         # one chain: each version ends where the next begins
        rows = table[table[key].astype(str) == k].sort_values("effective_from")
        assert list(rows["expiry_date"]) == [*rows["effective_from"].iloc[1:], OPEN]
    if "column" in want:
        column, values = want["column"]
        mine = table[table[key].astype(str) == a].sort_values("effective_from")[column]
        if values == "widened":
            assert str(table[column].dtype) == WIDE[form]
        else:
            assert [None if pd.isna(v) else v for v in mine] == values
    else:
        assert ADDED.get(form) not in table.columns and "_extra" not in table.columns
    report = Layout.of(root).error_report(source, DAYS[1].replace("-", ""))
    bad = pd.read_csv(report, dtype=str, keep_default_na=False) if report.exists() else []
    assert len(bad) == want.get("bad", 0)
    # the invariant: every declared value of every version is its opening file's raw text
    raw = raw_rows(root, form)
    declared = {"csv": CUSTOMER_COLUMNS, "json": ["name", "product_id", "price",
                                                  "description", "creation_date"],
                "tilde": SALES_COLUMNS}[form]
    renamed = {RENAMED[form][1]: RENAMED[form][0]} if drift == "renamed" else {}
    for row in table.to_dict("records"):
        text = raw[str(row[key]), row["effective_from"]]
        for column in declared:
            if drift in ("missing",) and column == MISSING[form] and column not in text:
                assert as_text(row[column]) == "", (row[key], column)
                continue
            delivered = text.get(column, text.get(renamed.get(column, column), ""))
            assert is_raw(row[column], str(delivered if delivered is not None else "")), \
                (row[key], row["effective_from"], column)


@pytest.mark.parametrize("form", ["csv", "json", "tilde"])
def test_a_table_made_by_a_file_with_wider_values_holds_them(tmp_path, form):
    """``widen``: the first file of a table already has times (A's; B's at midnight), or a
    quantity with a fraction (A's; B's a whole number written ``2.0``). The table is made
    wide by that file's commit, every value its raw text (not the date alone, not the
    integer), and the file says it widened the column."""
    a, b = (ROW[form](k) for k in KEYS[form])
    write(tmp_path, form, DAYS[0], [drifted(form, "widened", a, True),
                                    drifted(form, "widened", b, False)])
    (tmp_path / "minilake.toml").write_text(
        f'[contract.{SOURCE[form]}]\nwiden = ["{WIDENED[form]}"]\n')
    result = minilake.run(tmp_path)
    assert result.ok and "widened from" in result.ingest.files[0].note
    table = minilake.read_table(SOURCE[form], root=tmp_path)
    assert str(table[WIDENED[form]].dtype) == WIDE[form]
    key = {"csv": "customer_id", "json": "product_id", "tilde": "sale_id"}[form]
    got = {str(k): as_text(v) for k, v in zip(table[key], table[WIDENED[form]], strict=True)}
    day = a[WIDENED[form]]
    assert got == ({KEYS[form][0]: "2.5", KEYS[form][1]: "2.0"} if form == "tilde" else
                   {KEYS[form][0]: f"{day} 10:20:30", KEYS[form][1]: day})


def test_a_table_holding_an_integer_no_number_holds_exactly_is_not_widened(tmp_path):
    """``widen = ["quantity"]``, and the table already holds 2^53 + 1 (a float64 reads it as
    2^53): the file that needs the column wider is quarantined with the reason, the table
    keeps its integers, every one exact; a value is never cast silently."""
    big = str(2 ** 53 + 1)
    write(tmp_path, "tilde", DAYS[0], [sale("1", quantity=big, price_per_unit="0.00",
                                            total_price="0.00"), sale("2")])
    write(tmp_path, "tilde", DAYS[1], [sale("3", quantity="2.5", total_price="6.25")])
    (tmp_path / "minilake.toml").write_text('[contract.sales]\nwiden = ["quantity"]\n')
    result = minilake.run(tmp_path)
    reasons = [f.reason for f in result.ingest.quarantined]
    assert reasons == [f"cannot widen 'quantity' of sales: the table holds a value the wider "
                       f"type cannot hold exactly (Integer value {big} not in range: "
                       f"-9007199254740992 to 9007199254740992)"], reasons
    table = minilake.read_table("sales", root=tmp_path)
    assert str(table["quantity"].dtype) == "int64"
    assert sorted(table["quantity"].tolist()) == [2, 2 ** 53 + 1]
