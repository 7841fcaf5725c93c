"""JSON as minilake writes it (``minilake.formats.jsontext``; the job server's answers are
checked in test_server.py), read as JavaScript reads it: every JSON number becomes a double."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from support.commands import minilake as cli

import minilake
from minilake.formats import jsontext
from minilake.outbound.query import sql_table

SAFE = 2**53 - 1
DAY = re.compile(r"\d{4}-\d\d-\d\d")


def as_javascript(text: str):
    """``JSON.parse``: every number a double, integers included."""
    return json.loads(text, parse_int=float)


@pytest.fixture(scope="module")
def lake(tmp_path_factory, small_root) -> Path:
    """A small world's four days applied, marts included."""
    root = tmp_path_factory.mktemp("json") / "root"
    shutil.copytree(small_root / "landing_zone", root / "landing_zone")
    assert minilake.run(root).ok
    return root


def test_a_table_read_as_doubles_keeps_ids_dates_and_money(lake):
    frame = minilake.read_table("sales", root=lake)
    assert (frame["customer_id"] > SAFE).any()          # ids a double cannot hold
    rows = as_javascript(jsontext.records(frame))
    assert [r["customer_id"] for r in rows] == [str(v) for v in frame["customer_id"]]
    assert [r["row_hash"] for r in rows] == [str(v) for v in frame["row_hash"]]
    assert [r["sale_id"] for r in rows] == list(frame["sale_id"])      # text ids as they are
    assert [r["sale_date"] for r in rows] == [d.isoformat() for d in frame["sale_date"]]
    assert all(DAY.fullmatch(r["expiry_date"]) for r in rows)
    for money in ("total_price", "price_per_unit"):
        assert [r[money] for r in rows] == [round(v, 2) for v in frame[money]]
    assert [r["quantity"] for r in rows] == list(frame["quantity"])    # counts stay numbers


def test_each_type_by_the_rule_of_the_module_docstring():
    noisy = 2016931.39 + 2**-32                       # a sum's float noise around cents
    table = pa.table({
        "customer_id": pa.array([476101535486995529, 7, None], pa.int64()),
        "quantity": pa.array([3, None, -4], pa.int64()),
        "mtime_ns": pa.array([1728460800123456789, 1, 2], pa.int64()),   # past 2**53
        "total_price": [noisy, 12.505, float("nan")],
        "ratio": [0.1 + 0.2, float("inf"), None],
        "total_quantity": pa.array([Decimal(1234), None, Decimal(-5)], pa.decimal128(38, 0)),
        "share": pa.array([Decimal("1.50"), None, Decimal("0.25")], pa.decimal128(9, 2)),
        "huge": pa.array([Decimal(10**20 + 1), Decimal(1), None], pa.decimal128(38, 0)),
        "day": pa.array([dt.date(2024, 10, 9), None, dt.date(2024, 1, 31)]),
        "at": pa.array([dt.datetime(2024, 10, 9, 8, 0, 0, 5, tzinfo=dt.UTC), None,
                        dt.datetime(2024, 10, 9, tzinfo=dt.UTC)], pa.timestamp("us", "UTC")),
        "paris": pa.array([0, None, 1], pa.timestamp("s", "Europe/Paris")),
        "naive": pa.array([0, None, 1500], pa.timestamp("ms")),
        "name": ['Zoë "Z"\n', None, ""],
        "ok": [True, None, False],
        "ids": [[1, 2**60], None, []],
    })
    text = jsontext.records(table)
    rows = as_javascript(text)
    column = {name: [r[name] for r in rows] for name in table.column_names}
    assert column["customer_id"] == ["476101535486995529", "7", None]
    assert column["quantity"] == [3.0, None, -4.0]
    assert column["mtime_ns"] == ["1728460800123456789", "1", "2"]
    assert column["total_price"] == [2016931.39, 12.505, None]
    assert '"total_price":2016931.39,' in text
    assert column["ratio"] == [0.30000000000000004, None, None]
    assert column["total_quantity"] == [1234.0, None, -5.0]
    assert '"share":1.50,' in text and column["share"] == [1.5, None, 0.25]
    assert column["huge"] == ["100000000000000000001", "1", None]
    assert column["day"] == ["2024-10-09", None, "2024-01-31"]
    assert column["at"] == ["2024-10-09T08:00:00.000005Z", None, "2024-10-09T00:00:00.000000Z"]
    assert column["paris"] == ["1970-01-01T00:00:00Z", None, "1970-01-01T00:00:01Z"]
    assert column["naive"] == ["1970-01-01T00:00:00.000Z", None, "1970-01-01T00:00:01.500Z"]
    assert column["name"] == ['Zoë "Z"\n', None, ""] and "Zoë" in text
    assert column["ok"] == [True, None, False]
    assert column["ids"] == [[1.0, "1152921504606846976"], None, []]


def test_a_dataframe_a_batch_and_an_indented_document_say_the_same(lake):
    frame = minilake.read_table("customer", as_of="2024-10-11", root=lake)
    text = jsontext.records(frame)
    assert text == jsontext.records(pa.Table.from_pandas(frame, preserve_index=False)) == \
        jsontext.records(pa.RecordBatch.from_pandas(frame, preserve_index=False))
    document = {"rows": frame, "count": 2**60, "when": dt.datetime(2024, 10, 9, 8, 30)}
    indented = jsontext.dumps(document, indent=2)
    assert "\n    {\n      \"customer_id\": \"" in indented
    assert as_javascript(indented) == as_javascript(jsontext.dumps(document)) == {
        "rows": as_javascript(text), "count": "1152921504606846976",
        "when": "2024-10-09T08:30:00Z"}
    assert all(DAY.fullmatch(r["date_of_birth"]) for r in as_javascript(text))


def sql_records(query: str, root, indent: int | None = None) -> str:
    """What ``minilake sql --format json`` writes: DuckDB's Arrow answer as JSON records."""
    return jsontext.records(sql_table(query, root), indent=indent)


def test_sql_records_keep_duckdb_types(lake):
    """A mart's month is a DATE and its total_quantity a DECIMAL: written as such, not as
    pandas' midnight timestamps and floats; a sum's noise is rounded off money."""
    rows = as_javascript(sql_records(
        "SELECT month, product_id, total_quantity, revenue, avg_unit_price "
        "FROM product_monthly ORDER BY ALL", lake))
    mart = minilake.read_mart("product_monthly", lake).to_pandas().sort_values(
        ["month", "product_id", "total_quantity", "revenue", "avg_unit_price"])
    assert rows and all(DAY.fullmatch(r["month"]) for r in rows)
    assert [r["total_quantity"] for r in rows] == [float(q) for q in mart["total_quantity"]]
    assert [r["revenue"] for r in rows] == [round(v, 2) for v in mart["revenue"]]
    sums = minilake.sql("SELECT customer_id, sum(total_price) AS revenue FROM sales "
                        "GROUP BY customer_id ORDER BY customer_id", lake)
    rows = as_javascript(sql_records(
        "SELECT customer_id, sum(total_price) AS revenue FROM sales "
        "GROUP BY customer_id ORDER BY customer_id", lake, indent=1))
    assert [r["customer_id"] for r in rows] == [str(v) for v in sums["customer_id"]]
    assert [r["revenue"] for r in rows] == [round(v, 2) for v in sums["revenue"]]
    logged = as_javascript(sql_records("SELECT mtime_ns, started_at FROM ingest_log", lake))
    assert all(isinstance(r["mtime_ns"], str) and int(r["mtime_ns"]) > SAFE for r in logged)
    assert all(dt.datetime.fromisoformat(r["started_at"]).tzinfo == dt.UTC for r in logged)
    with pytest.raises(ValueError, match="read-only"):
        sql_records("DELETE FROM sales", lake)


def _cli_wired() -> bool:
    from minilake.apps import cli as module

    return "jsontext" in Path(module.__file__).read_text()


@pytest.mark.skipif(not _cli_wired(), reason="cli.py's sql --format json is not wired to "
                    "minilake.formats.jsontext yet")
def test_sql_format_json_on_the_command_line(lake):
    done = cli("sql", "SELECT customer_id, sale_date, total_price FROM sales_current "
               "ORDER BY sale_id", "--format", "json", "--root", str(lake))
    assert done.returncode == 0, done.stderr
    want = minilake.sql("SELECT customer_id, total_price FROM sales_current ORDER BY sale_id",
                        lake)
    rows = as_javascript(done.stdout)
    assert [r["customer_id"] for r in rows] == [str(v) for v in want["customer_id"]]
    assert all(DAY.fullmatch(r["sale_date"]) for r in rows)
    assert [r["total_price"] for r in rows] == [round(v, 2) for v in want["total_price"]]


def test_a_frame_arrow_cannot_type_is_a_one_line_error():
    with pytest.raises(ValueError, match="^not JSON records: .*") as error:
        jsontext.records(pd.DataFrame({"mixed": [1, "a", dt.date(2024, 1, 1)]}))
    assert "\n" not in str(error.value)
