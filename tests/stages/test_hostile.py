"""Hostile input (issue 5): corrupted files of every source never produce a traceback.

Either every row of a file lands in the table or in its error report (rows in = loaded +
rejected), or the whole file goes to quarantine/ with a one-line reason naming the problem, or a
file whose name is no delivery's stays in landing_zone/ and is reported. Set
``HYPOTHESIS_PROFILE=deep`` for a long run.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minilake
from minilake.generate import generate
from minilake.lake.layout import Layout
from minilake.lake.logs import read_log

BOM = b"\xef\xbb\xbf"


def _base() -> dict[str, tuple[str, bytes]]:
    with tempfile.TemporaryDirectory() as root:
        generate(root, start="2024-10-09", days=1, customers=60, seed=3, landing_only=True)
        landing = Path(root) / "landing_zone"
        return {"customer": ("customer_20241009.csv",
                             (landing / "customer_20241009.csv").read_bytes()),
                "product": ("products_20241009.json",
                            (landing / "products_20241009.json").read_bytes()),
                "sales": ("sales_20241009.txt", (landing / "sales_20241009.txt").read_bytes())}


BASE = _base()


def outcome(name: str, data: bytes, source: str) -> tuple[str, str | dict]:
    """('applied', log row) | ('quarantined', reason) | ('unmatched', '') and the invariants,
    from a run of a root that holds only this file (removed afterwards, pass or fail)."""
    with tempfile.TemporaryDirectory(prefix="hostile-") as root:
        (Path(root) / "landing_zone").mkdir()
        (Path(root) / "landing_zone" / name).write_bytes(data)
        return _checked(minilake.run(root), Layout.of(root), name, data, source)


def _checked(result, layout: Layout, name: str, data: bytes,
             source: str) -> tuple[str, str | dict]:
    if result.split.unmatched:
        assert [p.name for p in result.split.unmatched] == [name]
        assert (layout.landing / name).read_bytes() == data
        return "unmatched", ""
    log = read_log(layout)
    assert len(log) == 1
    row = log.iloc[0].to_dict()
    if row["status"] == "quarantined":
        reason = (layout.quarantine(source) / f"{name}.reason.txt").read_text()
        assert (layout.quarantine(source) / name).read_bytes() == data, "kept byte for byte"
        assert reason.count("\n") == 1 and len(reason) > 5
        assert reason.strip() == row["reason"]
        assert not layout.table(source).exists()
        return "quarantined", reason.strip()
    assert row["status"] == "applied"
    assert row["rows_read"] == row["rows_loaded"] + row["rows_rejected"]
    stamp = re.search(r"_(\d{8})\.", name).group(1)
    report = pd.read_csv(layout.error_report(source, stamp), dtype=str, keep_default_na=False)
    assert len(report) == row["rows_rejected"] and list(report.columns)[-1] == "errors"
    if row["rows_loaded"]:
        current = minilake.read_table(source, root=layout.root)
        assert len(current) == row["rows_loaded"]
    return "applied", row


def lines(data: bytes) -> int:
    """Records of a sales file, counted plainly: non-empty lines, whatever the line end."""
    return sum(1 for line in re.split(rb"\r\n|\n|\r", data) if line)


# --- sales: headerless '~' lines ----------------------------------------------------------------

@given(cut=st.integers(min_value=1, max_value=len(BASE["sales"][1]) - 1))
def test_truncated_sales(cut):
    name, data = BASE["sales"]
    kind, row = outcome(name, data[:cut], "sales")
    if kind == "applied":
        assert row["rows_read"] == lines(data[:cut])


@given(eols=st.lists(st.sampled_from([b"\r\n", b"\n", b"\r"]), min_size=1, max_size=200),
       bom=st.booleans())
def test_sales_line_ends_and_bom_do_not_matter(eols, bom):
    name, data = BASE["sales"]
    records = data.split(b"\r\n")[:-1]
    mixed = b"".join(r + eols[i % len(eols)] for i, r in enumerate(records))
    kind, row = outcome(name, (BOM if bom else b"") + mixed, "sales")
    assert kind == "applied" and row["rows_read"] == len(records) and row["rows_rejected"] == 0


@given(separator=st.sampled_from([b",", b";", b"|", b"\t"]))
def test_sales_with_another_separator_are_quarantined(separator):
    name, data = BASE["sales"]
    kind, reason = outcome(name, data.replace(b"~", separator), "sales")
    assert kind == "quarantined" and "wrong separator?" in reason


@given(row=st.integers(min_value=0, max_value=90), change=st.sampled_from(["drop", "extra"]),
       every=st.booleans())
def test_sales_with_missing_or_extra_fields(row, change, every):
    name, data = BASE["sales"]
    records = data.split(b"\r\n")[:-1]
    targets = range(len(records)) if every else [row % len(records)]
    for i in targets:
        fields = records[i].split(b"~")
        records[i] = b"~".join(fields[:-1] if change == "drop" else [*fields, b"x"])
    kind, out = outcome(name, b"".join(r + b"\r\n" for r in records), "sales")
    if every:
        assert kind == "quarantined" and ("6 fields" in out or "8 fields" in out)
    else:
        assert kind == "applied" and out["rows_read"] == len(records)
        assert out["rows_rejected"] == 1


@given(at=st.integers(min_value=0, max_value=len(BASE["sales"][1])),
       junk=st.binary(min_size=1, max_size=8))
def test_sales_with_arbitrary_bytes(at, junk):
    name, data = BASE["sales"]
    kind, out = outcome(name, data[:at] + junk + data[at:], "sales")
    if kind == "quarantined":
        assert out.startswith(("not UTF-8", "no row can be split", "not a text file"))


# --- customers: quoted CSV with a header --------------------------------------------------------

@given(cut=st.integers(min_value=0, max_value=len(BASE["customer"][1]) - 1))
def test_truncated_customers(cut):
    name, data = BASE["customer"]
    kind, out = outcome(name, data[:cut], "customer")
    if cut < data.index(b"\n"):
        assert kind == "quarantined"


@given(at=st.integers(min_value=0, max_value=len(BASE["customer"][1])),
       junk=st.sampled_from([b'"', b'""', b'"\n', b"\xff", b"\xe9", BOM, b",", b"\r\n", b"\r"]))
def test_customers_with_stray_quotes_bytes_and_line_ends(at, junk):
    name, data = BASE["customer"]
    outcome(name, data[:at] + junk + data[at:], "customer")


@given(column=st.sampled_from(["customer_id", "email", "address", "language"]),
       change=st.sampled_from(["drop", "extra", "rename"]))
def test_customers_with_missing_extra_or_renamed_columns(column, change):
    name, data = BASE["customer"]
    frame = pd.read_csv(pd.io.common.BytesIO(data), dtype=str, keep_default_na=False)
    if change == "drop":
        frame = frame.drop(columns=column)
    elif change == "extra":
        frame.insert(3, "loyalty_tier", "gold")
    else:
        frame = frame.rename(columns={column: column.upper()})
    kind, reason = outcome(name, frame.to_csv(index=False, quoting=1).encode(), "customer")
    assert kind == "quarantined"
    assert ("loyalty_tier" if change == "extra" else column) in reason


@given(separator=st.sampled_from([";", "\t", "|"]))
def test_customers_with_another_separator(separator):
    name, data = BASE["customer"]
    kind, reason = outcome(name, data.replace(b'","', f'"{separator}"'.encode()), "customer")
    assert kind == "quarantined" and "wrong separator?" in reason


# --- products: a JSON array -------------------------------------------------------------------

def products() -> list[dict]:
    return json.loads(BASE["product"][1])


@given(value=st.one_of(st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                       st.integers(), st.text(max_size=5), st.none(), st.floats()))
def test_json_that_is_not_an_array(value):
    name, _ = BASE["product"]
    kind, reason = outcome(name, json.dumps(value).encode(), "product")
    assert kind == "quarantined" and reason.startswith("not a JSON array")


@given(record=st.integers(min_value=0, max_value=4),
       key=st.sampled_from(["name", "price", "description", "creation_date", "product_id"]),
       value=st.one_of(st.lists(st.integers(), max_size=2), st.dictionaries(
           st.text(max_size=2), st.integers(), max_size=2)))
def test_json_with_nested_values(record, key, value):
    name, _ = BASE["product"]
    records = products()
    records[record][key] = value
    kind, row = outcome(name, json.dumps(records, indent=2).encode(), "product")
    assert kind == "applied" and row["rows_rejected"] == 1 and row["rows_read"] == 5


@given(record=st.integers(min_value=0, max_value=4),
       key=st.sampled_from(["name", "price", "description", "creation_date", "product_id"]),
       change=st.sampled_from(["missing_in_one", "missing_in_all", "extra"]))
def test_json_with_missing_or_extra_keys(record, key, change):
    name, _ = BASE["product"]
    records = products()
    if change == "missing_in_one":
        del records[record][key]
    elif change == "missing_in_all":
        for r in records:
            del r[key]
    else:
        records[record]["colour"] = "red"
    kind, out = outcome(name, json.dumps(records).encode(), "product")
    if change == "missing_in_one":
        assert kind == "applied" and out["rows_read"] == 5
        assert out["rows_rejected"] == (0 if key == "description" else 1)
    else:
        assert kind == "quarantined" and ("colour" if change == "extra" else key) in out


@given(cut=st.integers(min_value=0, max_value=len(BASE["product"][1]) - 2))
def test_truncated_json(cut):
    name, data = BASE["product"]
    kind, reason = outcome(name, data[:cut], "product")
    assert kind == "quarantined"


# --- every source ------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["customer", "product", "sales"])
def test_empty_files(source):
    name, _ = BASE[source]
    kind, out = outcome(name, b"", source)
    if source == "sales":
        assert kind == "applied" and out["rows_read"] == 0
    else:
        assert kind == "quarantined" and "empty" in out


@pytest.mark.parametrize("source", ["customer", "product", "sales"])
def test_a_10_mb_field(source):
    """A field longer than the CSV reader's block: the block grows, the row is read."""
    name, data = BASE[source]
    big = "x" * 10_000_000
    if source == "sales":
        first, rest = data.split(b"\r\n", 1)
        fields = first.split(b"~")
        fields[2] = b"P" + big.encode()                 # product_id: any text is allowed
        data = b"~".join(fields) + b"\r\n" + rest
    elif source == "customer":
        header, rest = data.split(b"\n", 1)
        data = header + b"\n" + rest.replace(b'","', f'","{big}'.encode(), 1)
    else:
        records = products()
        records[0]["description"] = big
        data = json.dumps(records).encode()
    kind, row = outcome(name, data, source)
    assert kind == "applied" and row["rows_read"] == row["rows_loaded"] + row["rows_rejected"]


@given(stamp=st.sampled_from(["20241341", "20240230", "2024109", "202410099", "abcdefgh",
                              "20241009.bak"]),
       source=st.sampled_from(["customer", "product", "sales"]))
def test_names_that_are_no_delivery_stay_in_landing(stamp, source):
    name, data = BASE[source]
    bad = re.sub(r"\d{8}", stamp, name)
    kind, _ = outcome(bad, data, source)
    assert kind == "unmatched"
