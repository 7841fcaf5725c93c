"""Validation (``load/validate.py``) where mutation testing found the suite silent: the order
and wording of an error line, rows that did not split, where bad rows stand, the typed columns
and what text the validator accepts. Every expectation is written out here by hand.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from minilake.contract.sources import SOURCES
from minilake.formats.readers import TEXT, Malformed, TextFrame
from minilake.load import validate as v

SALES = SOURCES["sales"]
PRODUCT = SOURCES["product"]
SALE = {"sale_id": "1", "customer_id": "123456789012345", "product_id": "P1", "quantity": "2",
        "price_per_unit": "2.50", "total_price": "5.00", "sale_date": "2024-10-09"}
ITEM = {"name": "Mug", "product_id": "P1", "price": "3.5", "description": "",
        "creation_date": "2024-01-01"}


def frame(rows: list[dict], dtype=TEXT) -> TextFrame:
    """Rows as the readers give them: every column Arrow text in pandas."""
    return TextFrame(pd.DataFrame(rows, dtype=str).astype(dtype))


def sales(*changes: dict, dtype=TEXT) -> TextFrame:
    return frame([{**SALE, "sale_id": str(i), **c} for i, c in enumerate(changes, 1)], dtype)


def check(text: TextFrame, source=SALES) -> v.Validated:
    return v.validate(source.schema, source.key, text)


def test_a_row_check_comes_after_every_field_and_carries_no_value():
    """The row rule (total = quantity x price) is said last, after fields that come after
    total_price in the file; field rules that are about a value quote it, others do not."""
    out = check(sales({"total_price": "9.00", "sale_date": "someday", "product_id": ""}))
    assert out.bad["errors"].tolist() == [
        "product_id: required, empty; sale_date: not a date (YYYY-MM-DD) 'someday'; "
        "total_price: not quantity x price_per_unit (within 0.01)"]


def test_messages_follow_the_file_order_of_the_columns_for_every_row():
    out = check(sales({"sale_date": "x", "quantity": "y", "customer_id": "z"}, {},
                      {"price_per_unit": "-1", "quantity": "0", "total_price": "0"}))
    assert out.bad["errors"].tolist() == [
        "customer_id: not an integer 'z'; quantity: not an integer 'y'; "
        "sale_date: not a date (YYYY-MM-DD) 'x'",
        "quantity: must be > 0; price_per_unit: must be >= 0",
    ]
    assert out.bad["sale_id"].tolist() == ["1", "3"]
    assert out.bad_at.tolist() == [0, 2] and out.rows_rejected == 2
    assert out.good.column("sale_id").to_pylist() == ["2"]


def test_bad_rows_keep_their_raw_text_and_report_columns():
    out = check(sales({}, {"quantity": " 2 ", "total_price": "5.00"}))
    assert list(out.bad.columns) == [*SALES.columns, "errors"]
    assert out.bad.drop(columns="errors").to_dict("records") == [
        {**SALE, "sale_id": "2", "quantity": " 2 "}]
    assert out.bad_keys.tolist() == ["2"]


def test_rows_that_did_not_split_come_after_the_rows_that_did():
    """Their text in the first column, the others empty, the line when the reader knew it."""
    text = sales({}, {"quantity": "x"})
    text.malformed.extend([Malformed(None, "1~2", "row has 2 fields, expected 7"),
                           Malformed(12, "", "row has 1 fields, expected 7")])
    out = check(text)
    assert out.bad.to_dict("records") == [
        {**SALE, "sale_id": "2", "quantity": "x",
         "errors": "quantity: not an integer 'x'"},
        {**dict.fromkeys(SALES.columns, ""), "sale_id": "1~2",
         "errors": "row: row has 2 fields, expected 7"},
        {**dict.fromkeys(SALES.columns, ""), "errors": "row 12: row has 1 fields, expected 7"},
    ]
    assert all(out.bad[c].dtype == TEXT for c in SALES.columns)
    assert out.bad_at.tolist() == [1]                   # among the rows that split
    assert out.bad_keys.tolist() == ["2", "1~2"]        # a key where the row has one
    assert out.rows_rejected == 3 and out.good.num_rows == 1


def test_only_malformed_rows():
    text = TextFrame(pd.DataFrame({c: pd.Series([], dtype=TEXT) for c in PRODUCT.columns}),
                     [Malformed(3, '{"a": 1}', "unexpected key 'a'")])
    out = check(text, PRODUCT)
    assert out.bad["errors"].tolist() == ["row 3: unexpected key 'a'"]
    assert out.bad["name"].tolist() == ['{"a": 1}'] and out.bad["product_id"].tolist() == [""]
    assert out.bad_keys.tolist() == [] and out.good.num_rows == 0


def test_no_bad_rows():
    out = check(sales({}, {}))
    assert out.bad.empty and out.rows_rejected == 0 and out.bad_at.tolist() == []
    assert out.bad_keys.tolist() == []
    assert out.good.num_rows == 2


def test_the_typed_schema_of_a_source():
    """Kinds to Arrow types; a column is nullable unless required."""
    assert v.arrow_schema(PRODUCT.schema) == pa.schema([
        pa.field("name", pa.string(), nullable=False),
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("description", pa.string(), nullable=True),
        pa.field("creation_date", pa.date32(), nullable=False),
    ])


def test_good_rows_typed_with_bad_rows_among_them():
    """Every typed column keeps the good rows only, in file order; optional blank text is
    null, required text is kept as it is."""
    text = frame([ITEM, {**ITEM, "product_id": "P2", "price": "x"},
                  {**ITEM, "product_id": "P3", "description": "Big", "price": "0",
                   "creation_date": "2023-12-31"}])
    out = check(text, PRODUCT)
    assert out.good.schema == v.arrow_schema(PRODUCT.schema)
    assert out.good.to_pylist() == [
        {"name": "Mug", "product_id": "P1", "price": 3.5, "description": None,
         "creation_date": dt.date(2024, 1, 1)},
        {"name": "Mug", "product_id": "P3", "price": 0.0, "description": "Big",
         "creation_date": dt.date(2023, 12, 31)},
    ]


def test_every_row_good_is_typed_without_a_filter():
    out = check(frame([ITEM, {**ITEM, "product_id": "P2", "description": "d"}]), PRODUCT)
    assert out.good.column("description").to_pylist() == [None, "d"]
    assert out.good.column("price").to_pylist() == [3.5, 3.5]


@pytest.mark.parametrize("dtype", [pd.StringDtype("python"), pd.StringDtype("pyarrow"),
                                   pd.ArrowDtype(pa.large_string()), TEXT])
def test_every_kind_of_pandas_text_is_text(dtype):
    out = check(sales({}, {"quantity": "0", "total_price": "0"}, dtype=dtype))
    assert out.good.num_rows == 1 and out.bad["errors"].tolist() == ["quantity: must be > 0"]


@pytest.mark.parametrize("dtype", [object, pd.ArrowDtype(pa.binary())])
def test_other_columns_are_a_readers_bug(dtype):
    rows = sales({}).rows.astype({"product_id": dtype, "sale_date": dtype})
    with pytest.raises(TypeError) as error:
        check(TextFrame(rows))
    assert str(error.value) == "sales: columns not read as text: product_id, sale_date"


def test_a_check_failed_as_a_whole_is_a_bug_not_a_bad_row():
    failures = pd.DataFrame({"index": [np.nan, 1.0], "schema_context": ["Column", "Column"],
                             "column": ["price", "price"], "check": ["odd", "must be > 0"],
                             "failure_case": ["42", "0"]})
    with pytest.raises(RuntimeError) as error:
        v._messages(failures, ["price"])
    assert str(error.value) == "check 'odd' on 'price' failed as a whole: 42"


def test_the_same_message_twice_is_said_once():
    failures = pd.DataFrame({"index": [0, 0, 0], "schema_context": ["Column"] * 3,
                             "column": ["b", "a", "b"], "check": ["not x", "required, empty",
                                                                  "not x"],
                             "failure_case": ["v", "", "v"]})
    assert v._messages(failures, ["a", "b"]).to_dict() == {
        0: "a: required, empty; b: not x 'v'"}
