"""SPEC §4 row by row, on hand-built tiny files run through the whole pipeline.

Products stand for a full snapshot, sales for a transactional source; each expected table is
written out here by hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import minilake
from minilake.layout import Layout
from minilake.scd2 import row_hashes
from minilake.tables import read_log

END = "2099-12-31"


def products_file(root: Path, day: str, rows: list[tuple]) -> None:
    records = [{"name": n, "product_id": p, "price": price, "description": "",
                "creation_date": "2024-01-01"} for p, n, price in rows]
    (root / "landing_zone").mkdir(exist_ok=True)
    path = root / "landing_zone" / f"products_{day.replace('-', '')}.json"
    path.write_text(json.dumps(records, indent=2))


def sales_file(root: Path, day: str, rows: list[tuple]) -> None:
    lines = [f"{s}~111111111111111~P1~{q}~2.50~{t}~{d}" for s, q, t, d in rows]
    (root / "landing_zone").mkdir(exist_ok=True)
    path = root / "landing_zone" / f"sales_{day.replace('-', '')}.txt"
    path.write_bytes("".join(line + "\r\n" for line in lines).encode())


def table(root: Path, name: str, columns: list[str]) -> list[tuple]:
    frame = minilake.read_table(name, root=root)
    frame = frame.assign(effective_from=frame["effective_from"].astype(str),
                         expiry_date=frame["expiry_date"].astype(str))
    return sorted(tuple(r) for r in frame[columns].itertuples(index=False))


def versions(root: Path, name: str) -> int:
    from deltalake import DeltaTable
    return DeltaTable(str(root / "tables" / name)).version()


def test_full_snapshot_cases(tmp_path):
    cols = ["product_id", "price", "effective_from", "expiry_date", "is_current"]
    products_file(tmp_path, "2024-01-01", [("P1", "A", 10.0), ("P2", "B", 20.0),
                                           ("P3", "C", 30.0)])
    assert minilake.run(tmp_path).ok
    # day 2: P1 same, P2 other hash, P4 new, P3 absent (deleted upstream)
    products_file(tmp_path, "2024-01-02", [("P1", "A", 10.0), ("P2", "B", 25.0),
                                           ("P4", "D", 40.0)])
    assert minilake.run(tmp_path).ok
    # day 3: P3 comes back, P1's row is bad (stays unchanged), P4 absent (deleted)
    products_file(tmp_path, "2024-01-03", [("P1", "A", "not a price"), ("P2", "B", 25.0),
                                           ("P3", "C", 30.0)])
    assert minilake.run(tmp_path).ok
    assert table(tmp_path, "product", cols) == sorted([
        ("P1", 10.0, "2024-01-01", END, True),
        ("P2", 20.0, "2024-01-01", "2024-01-02", False),
        ("P2", 25.0, "2024-01-02", END, True),
        ("P3", 30.0, "2024-01-01", "2024-01-02", False),
        ("P3", 30.0, "2024-01-03", END, True),
        ("P4", 40.0, "2024-01-02", "2024-01-03", False),
    ])
    on_day_2 = minilake.read_table("product", as_of="2024-01-02", root=tmp_path)
    assert sorted(on_day_2["product_id"]) == ["P1", "P2", "P4"]
    assert on_day_2.set_index("product_id").loc["P2", "price"] == 25.0
    on_day_1 = minilake.read_table("product", as_of=dt.date(2024, 1, 1), root=tmp_path)
    assert sorted(on_day_1["product_id"]) == ["P1", "P2", "P3"]


def test_transactional_cases(tmp_path):
    cols = ["sale_id", "quantity", "total_price", "effective_from", "expiry_date", "is_current"]
    sales_file(tmp_path, "2024-01-01", [("001", 1, "2.50", "2024-01-01"),
                                        ("002", 2, "5.00", "2024-01-01")])
    assert minilake.run(tmp_path).ok
    # day 2: 001 resent unchanged, 002 corrected, 003 new, 004 bad; absent keys stay
    sales_file(tmp_path, "2024-01-02", [("001", 1, "2.50", "2024-01-01"),
                                        ("002", 3, "7.50", "2024-01-01"),
                                        ("003", 4, "10.00", "2024-01-02"),
                                        ("004", 1, "ERROR", "2024-01-02")])
    assert minilake.run(tmp_path).ok
    sales_file(tmp_path, "2024-01-03", [("005", 1, "2.50", "2024-01-03")])
    assert minilake.run(tmp_path).ok
    assert table(tmp_path, "sales", cols) == sorted([
        ("001", 1, 2.5, "2024-01-01", END, True),
        ("002", 2, 5.0, "2024-01-01", "2024-01-02", False),
        ("002", 3, 7.5, "2024-01-02", END, True),
        ("003", 4, 10.0, "2024-01-02", END, True),
        ("005", 1, 2.5, "2024-01-03", END, True),
    ])


def test_reapplying_a_file_changes_nothing(tmp_path):
    products_file(tmp_path, "2024-01-01", [("P1", "A", 10.0)])
    minilake.run(tmp_path)
    before = versions(tmp_path, "product")
    # the same file delivered again under its name: held in landing, table untouched
    products_file(tmp_path, "2024-01-01", [("P1", "A", 10.0)])
    result = minilake.run(tmp_path)
    assert [why for _, why in result.split.held] == ["already archived (identical)"]
    assert versions(tmp_path, "product") == before
    # and an ingest of the archive alone does nothing either
    assert minilake.ingest(tmp_path).files == []
    assert versions(tmp_path, "product") == before


def test_a_file_without_changes_makes_no_table_version(tmp_path):
    products_file(tmp_path, "2024-01-01", [("P1", "A", 10.0)])
    minilake.run(tmp_path)
    products_file(tmp_path, "2024-01-02", [("P1", "A", 10.0)])
    minilake.run(tmp_path)
    assert versions(tmp_path, "product") == 0
    log = read_log(Layout.of(tmp_path)).sort_values("file")
    assert log["file"].tolist() == ["products_20240101.json", "products_20240102.json"]
    assert log["table_version"].isna().tolist() == [False, True]


def test_row_hash_is_pinned():
    """The hash of a fixed row is sha256 of its canonical text; it must never change."""
    row = pa.table({"i": pa.array([123456789012345678], pa.int64()),
                    "s": pa.array(["Zoë, \"quoted\"\nline"]),
                    "n": pa.array([None], pa.string()),
                    "f": pa.array([1811.8]),
                    "d": pa.array([dt.date(2024, 10, 9)])})
    canonical = "\x1f".join(["123456789012345678", "Zoë, \"quoted\"\nline", "\\N", "1811.8",
                             "2024-10-09"])
    expected = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    assert row_hashes(row).to_pylist() == [expected]
    # the pin: this literal was taken once; if it ever changes, every table's history breaks
    assert expected == "6241dd0f9d9673cf927eadde9d29dde6"


@pytest.mark.parametrize("value,text", [(0.1 + 0.2, "0.30000000000000004"), (2.5, "2.5"),
                                        (1e20, "1e+20"), (100.0, "100.0")])
def test_row_hash_floats_use_shortest_round_trip_text(value, text):
    expected = hashlib.sha256(text.encode()).hexdigest()[:32]
    assert row_hashes(pa.table({"f": [value]})).to_pylist() == [expected]


def test_read_table_names_known_tables_when_asked_for_another(tmp_path):
    products_file(tmp_path, "2024-01-01", [("P1", "A", 10.0)])
    minilake.run(tmp_path)
    with pytest.raises(FileNotFoundError, match="product"):
        minilake.read_table("customers", root=tmp_path)
    assert isinstance(minilake.read_table("product", root=tmp_path), pd.DataFrame)
