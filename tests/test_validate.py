"""Validation and error messages (SPEC §3, MIDP-313) on small hand-made frames."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from minilake.inbound.readers import Malformed, TextFrame
from minilake.load.validate import _blank_as_null, validate
from minilake.sources import SOURCES

SALE = {"sale_id": "0001", "customer_id": "123456789012345", "product_id": "P1",
        "quantity": "2", "price_per_unit": "2.50", "total_price": "5.00",
        "sale_date": "2024-10-09"}


def sales(*changes: dict) -> TextFrame:
    rows = [{**SALE, "sale_id": f"{i:04d}", **c} for i, c in enumerate(changes, start=1)]
    return TextFrame(pd.DataFrame(rows, dtype=str))


def check(frame: TextFrame):
    s = SOURCES["sales"]
    return validate(s.schema, s.key, frame)


def test_columns_that_are_not_text_are_a_readers_bug():
    frame = sales({}).rows.assign(quantity=2)
    with pytest.raises(TypeError, match="sales: columns not read as text: quantity"):
        check(TextFrame(frame))


def test_good_rows_are_typed_and_keep_leading_zeros():
    out = check(sales({}, {"quantity": "1", "total_price": "2.5"}))
    assert out.bad.empty and out.good.num_rows == 2
    row = out.good.to_pylist()[0]
    assert row["sale_id"] == "0001" and row["customer_id"] == 123456789012345
    assert row["quantity"] == 2 and row["total_price"] == 5.0
    assert str(row["sale_date"]) == "2024-10-09"


def test_the_spec_example_message():
    out = check(sales({"total_price": "ERROR", "quantity": "0"}))
    assert out.bad["errors"].tolist() == ["quantity: must be > 0; total_price: not a number "
                                          "'ERROR'"]
    # the raw row is kept exactly as it arrived
    assert out.bad.loc[0, "total_price"] == "ERROR" and out.bad.loc[0, "quantity"] == "0"


@pytest.mark.parametrize("change,message", [
    ({"quantity": "-9999999999", "total_price": "0"}, "quantity: must be > 0"),
    ({"quantity": "two"}, "quantity: not an integer 'two'"),
    ({"customer_id": ""}, "customer_id: required, empty"),
    ({"sale_date": "2024-13-45"}, "sale_date: not a date (YYYY-MM-DD) '2024-13-45'"),
    ({"sale_date": "09/10/2024"}, "sale_date: not a date (YYYY-MM-DD) '09/10/2024'"),
    ({"price_per_unit": "-1", "total_price": "-2"}, "price_per_unit: must be >= 0"),
    ({"total_price": "5.02"}, "total_price: not quantity x price_per_unit (within 0.01)"),
    ({"sale_id": "12a"}, "sale_id: does not look like digits '12a'"),
    ({"customer_id": "99999999999999999999"}, "customer_id: not an integer"),
])
def test_each_rule_names_field_and_reason(change, message):
    out = check(sales({}, change))
    assert len(out.bad) == 1 and out.good.num_rows == 1
    assert message in out.bad.loc[0, "errors"]


def test_total_within_a_cent_is_good():
    assert check(sales({"total_price": "5.01"})).bad.empty


def test_a_key_twice_makes_all_its_rows_bad():
    frame = sales({}, {}, {})
    frame.rows.loc[2, "sale_id"] = frame.rows.loc[0, "sale_id"]
    out = check(frame)
    assert sorted(out.bad["sale_id"]) == ["0001", "0001"]
    assert set(out.bad["errors"]) == {"sale_id: occurs more than once in the file"}
    assert out.good.num_rows == 1


def test_text_keys_are_compared_as_text_leading_zeros_and_all():
    long = "1" * 30                           # too long for the int64 fast path
    out = check(sales({"sale_id": "7"}, {"sale_id": "07"}, {"sale_id": "007"},
                      {"sale_id": long}, {"sale_id": long}, {"sale_id": "0"}))
    assert sorted(out.bad["sale_id"]) == [long, long]
    assert sorted(out.good.column("sale_id").to_pylist()) == ["0", "007", "07", "7"]


def test_integer_keys_are_compared_by_value():
    """7 and 07 become the same customer_id once typed, so the file holds that key twice."""
    s = SOURCES["customer"]
    row = {"first_name": "A", "last_name": "B", "gender": "F", "email": "a@b.c",
           "membership_status": "active", "address": "", "phone_number": "",
           "date_of_birth": "1990-01-01", "job": "", "company": "", "city": "", "state": "",
           "country": "", "language": "en-US"}
    ids = ["7", "07", "8", "-8", "9"]
    out = validate(s.schema, s.key, TextFrame(pd.DataFrame(
        [{"customer_id": i, **row} for i in ids], dtype=str)))
    assert sorted(out.bad["customer_id"]) == ["07", "7"]
    assert set(out.bad["errors"]) == {"customer_id: occurs more than once in the file"}
    assert sorted(out.good.column("customer_id").to_pylist()) == [-8, 8, 9]


def test_malformed_rows_go_to_the_report():
    frame = sales({}, {})
    frame.malformed.append(Malformed(3, "0003~1~P1", "row has 3 fields, expected 7"))
    out = check(frame)
    assert frame.rows_read == 3 == out.good.num_rows + len(out.bad)
    assert out.bad.loc[0, "sale_id"] == "0003~1~P1"
    assert out.bad.loc[0, "errors"] == "row 3: row has 3 fields, expected 7"


def test_customer_enums_email_and_sql_injection():
    s = SOURCES["customer"]
    good = {"customer_id": "123456789012345", "first_name": "A", "last_name": "B",
            "gender": "M", "email": "a@b.c", "membership_status": "active", "address": "",
            "phone_number": "", "date_of_birth": "1990-01-01", "job": "", "company": "",
            "city": "", "state": "", "country": "", "language": "en-US"}
    rows = [good, {**good, "customer_id": "2", "gender": "; DROP TABLE users; --"},
            {**good, "customer_id": "3", "email": "nobody"},
            {**good, "customer_id": "4", "language": "de-DE", "membership_status": "gold"}]
    out = validate(s.schema, s.key, TextFrame(pd.DataFrame(rows, dtype=str)))
    assert out.bad["errors"].tolist() == [
        "gender: not one of M/F/U '; DROP TABLE users; --'",
        "email: does not look like an email 'nobody'",
        "membership_status: not one of active/inactive 'gold'; language: not one of "
        "en-US/es-ES/fr-FR 'de-DE'",
    ]
    typed = out.good.to_pylist()[0]
    assert typed["address"] is None and typed["email"] == "a@b.c"
    assert out.bad_keys.tolist() == ["2", "3", "4"]


OPTIONAL_TEXT = ["address", "phone_number", "job", "company", "city", "state", "country"]


@given(values=st.lists(st.tuples(*[st.sampled_from(["", "x", "Łódź\r\nul. 3", "  "])
                                   for _ in OPTIONAL_TEXT], st.booleans()),
                       min_size=1, max_size=30),
       cut=st.integers(min_value=0, max_value=30), sliced=st.booleans(),
       kind=st.sampled_from([pa.large_string(), pa.string()]))
def test_blank_optional_text_is_null_and_the_rest_is_the_text_as_read(values, cut, sliced,
                                                                       kind):
    """Good rows keep each optional text as it was read, blank made null: with bad rows
    among them or not, and from columns in pieces, some of them slices of a larger array,
    held as the readers hold text (Arrow ``string`` in a pandas ``ArrowDtype``) or as pandas'
    own string type (``large_string``)."""
    s = SOURCES["customer"]
    good = {"first_name": "A", "last_name": "B", "gender": "M", "email": "a@b.c",
            "membership_status": "active", "date_of_birth": "1990-01-01",
            "language": "en-US"}
    rows = [{**good, "customer_id": str(i), **dict(zip(OPTIONAL_TEXT, texts, strict=True)),
             **({} if ok else {"gender": "?"})} for i, (*texts, ok) in enumerate(values)]
    frame = pd.DataFrame(rows, columns=list(s.schema.columns))

    def column(texts: list[str]) -> pd.api.extensions.ExtensionArray:
        whole = pa.array(["padding", *texts], kind)
        at = min(cut, len(texts))
        pieces = pa.chunked_array([whole.slice(1, at), whole.slice(1 + at)] if sliced else
                                  [pa.array(texts[:at], kind), pa.array(texts[at:], kind)], kind)
        if kind == pa.string():
            return pd.arrays.ArrowExtensionArray(pieces)
        return pd.arrays.ArrowStringArray(pieces)

    text = TextFrame(pd.DataFrame({c: column(frame[c].tolist()) for c in frame.columns}))
    out = validate(s.schema, s.key, text)
    kept = [row for row, (*_, ok) in zip(rows, values, strict=True) if ok]
    assert out.good.num_rows == len(kept) and len(out.bad) == len(rows) - len(kept)
    for name in OPTIONAL_TEXT:
        got = out.good.column(name)
        assert got.to_pylist() == [row[name] or None for row in kept]
        for piece in got.chunks:
            piece.validate(full=True)


@given(texts=st.lists(st.one_of(st.none(), st.just(""), st.text(min_size=1, max_size=4)),
                      min_size=1, max_size=40),
       start=st.integers(min_value=0, max_value=40), kind=st.sampled_from(
           [pa.large_string(), pa.string()]))
@example(texts=["x", "y", "", "Łódź"], start=1, kind=pa.string())
def test_blank_as_null_on_a_slice_keeps_its_place(texts, start, kind):
    """Blank text made null in a slice of a larger array: each value stays in its place."""
    start = min(start, len(texts) - 1)
    piece = pa.array(texts, kind).slice(start)
    got = _blank_as_null(piece)
    got.validate(full=True)
    assert got.to_pylist() == [t or None for t in texts[start:]]
