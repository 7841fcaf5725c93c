"""Validation and error messages (docs/formats.md, MIDP-313) on small hand-made frames."""

from __future__ import annotations

import re
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from minilake.contract.sources import ALL_SOURCES, SOURCES
from minilake.formats.readers import Malformed, TextFrame
from minilake.load.validate import _blank_as_null, validate

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


# --- every rule of every source, broken one at a time ----------------------------------------

# A good row of each source; each rule is broken on a copy of it.
GOOD_ROWS = {
    "customer": {"customer_id": "123456789012345", "first_name": "A", "last_name": "B",
                 "gender": "F", "email": "a@b.c", "membership_status": "active",
                 "address": "1 Main St", "phone_number": "+1-555-0100", "date_of_birth":
                 "1990-01-01", "job": "", "company": "", "city": "", "state": "",
                 "country": "", "language": "en-US"},
    "product": {"name": "Desk Lamp LED", "product_id": "P17", "price": "12.50",
                "description": "", "creation_date": "2024-10-01"},
    "sales": SALE,
    "erasure_requests": {"customer_id": "123456789012345", "email": "a@b.c"},
}
ROW = ""            # the column of a rule on the whole row
# The rules of docs/formats.md, §3 and §9 as this test states them, independently of the schemas:
# (source, column, the check's name, which is its message). A rule missing from a schema
# fails below, by name and by a row that breaks it being found good.
SPEC_RULES = {
    ("customer", "customer_id", "required, empty"), ("customer", "customer_id", "not an integer"),
    ("customer", "customer_id", "occurs more than once in the file"),
    ("customer", "first_name", "required, empty"), ("customer", "last_name", "required, empty"),
    ("customer", "gender", "required, empty"), ("customer", "gender", "not one of M/F/U"),
    ("customer", "email", "required, empty"),
    ("customer", "email", "does not look like an email"),
    ("customer", "membership_status", "required, empty"),
    ("customer", "membership_status", "not one of active/inactive"),
    ("customer", "date_of_birth", "required, empty"),
    ("customer", "date_of_birth", "not a date (YYYY-MM-DD)"),
    ("customer", "language", "required, empty"),
    ("customer", "language", "not one of en-US/es-ES/fr-FR"),
    ("product", "name", "required, empty"), ("product", "product_id", "required, empty"),
    ("product", "product_id", "does not look like P + digits"),
    ("product", "product_id", "occurs more than once in the file"),
    ("product", "price", "required, empty"), ("product", "price", "not a number"),
    ("product", "price", "must be >= 0"), ("product", "creation_date", "required, empty"),
    ("product", "creation_date", "not a date (YYYY-MM-DD)"),
    ("sales", "sale_id", "required, empty"), ("sales", "sale_id", "does not look like digits"),
    ("sales", "sale_id", "occurs more than once in the file"),
    ("sales", "customer_id", "required, empty"), ("sales", "customer_id", "not an integer"),
    ("sales", "product_id", "required, empty"), ("sales", "quantity", "required, empty"),
    ("sales", "quantity", "not an integer"), ("sales", "quantity", "must be > 0"),
    ("sales", "price_per_unit", "required, empty"), ("sales", "price_per_unit", "not a number"),
    ("sales", "price_per_unit", "must be >= 0"), ("sales", "total_price", "required, empty"),
    ("sales", "total_price", "not a number"), ("sales", "total_price", "must be >= 0"),
    ("sales", ROW, "total_price: not quantity x price_per_unit (within 0.01)"),
    ("sales", "sale_date", "required, empty"), ("sales", "sale_date", "not a date (YYYY-MM-DD)"),
    ("erasure_requests", "customer_id", "not an integer"),
    ("erasure_requests", "email", "does not look like an email"),
    ("erasure_requests", ROW, "names no one: neither customer_id nor email"),
}


def declared_rules() -> set[tuple[str, str, str]]:
    """Every check the sources declare: each column's, each on the whole row."""
    out = set()
    for name, source in ALL_SOURCES.items():
        for column, declared in source.schema.columns.items():
            out |= {(name, column, check.name) for check in declared.checks}
        out |= {(name, ROW, check.name) for check in source.schema.checks}
    return out


def _date_that_is_none(match: re.Match) -> str:
    """29 February of a year that is no leap year, written in the check's format."""
    return match["format"].replace("YYYY", "2023").replace("MM", "02").replace("DD", "29")


# A column check's name -> a value that breaks it (from what the name says).
VALUE_BREAKERS = {
    r"required, empty": lambda m: "",
    r"not an integer": lambda m: "1.5",
    r"not a number": lambda m: "twelve",
    r"not a date \((?P<format>.+)\)": _date_that_is_none,
    r"not one of (?P<options>.+)": lambda m: m["options"],      # "M/F/U" is none of them
    r"does not look like .+": lambda m: "?",
    r"must be > (?P<bound>.+)": lambda m: m["bound"],
    r"must be >= (?P<bound>.+)": lambda m: str(Decimal(m["bound"]) - 1),
}
DUPLICATE = "occurs more than once in the file"
# A row check's name -> the column it names and a change of the good row that breaks it.
ROW_BREAKERS = {
    "total_price: not quantity x price_per_unit (within 0.01)": ("total_price", lambda r: {
        **r, "total_price": str(Decimal(r["quantity"]) * Decimal(r["price_per_unit"])
                                + Decimal("0.02"))}),
    "names no one: neither customer_id nor email": (
        "customer_id", lambda r: {**r, "customer_id": "", "email": ""}),
}


def broken_rows(rule: tuple[str, str, str]
                ) -> tuple[list[dict], list[int], str, str] | None:
    """Rows of the rule's source that break it: a good row under another key, then the row
    that breaks it (both rows of a repeated key); which of them must be bad; the column the
    reason must name, and how the reason starts. None: no way known to break the rule."""
    source, column, name = rule
    good = GOOD_ROWS[source]
    key = ALL_SOURCES[source].key
    other = {**good, key: good[key] + "9"}
    if column == ROW:
        if name not in ROW_BREAKERS:
            return None
        named, change = ROW_BREAKERS[name]
        return [other, change(good)], [1], named, name
    if name == DUPLICATE:
        return [good, dict(good)], [0, 1], column, f"{column}: {name}"
    for pattern, value in VALUE_BREAKERS.items():
        match = re.fullmatch(pattern, name)
        if match:
            return [other, {**good, column: value(match)}], [1], column, f"{column}: {name}"
    return None


def test_every_rule_of_the_spec_is_declared_and_every_declared_rule_can_be_broken():
    declared = declared_rules()
    missing = sorted(SPEC_RULES - declared)
    unknown = sorted(r for r in declared if r[0] not in GOOD_ROWS or broken_rows(r) is None)
    assert not missing, f"rules of the spec no schema declares: {missing}"
    assert not unknown, f"checks this test does not know how to break: {unknown}"


@pytest.mark.parametrize("source", sorted(ALL_SOURCES))
def test_the_good_rows_are_good(source):
    s = ALL_SOURCES[source]
    out = validate(s.schema, s.key, TextFrame(pd.DataFrame([GOOD_ROWS[source]], dtype=str)))
    assert out.bad.empty and out.good.num_rows == 1, out.bad.to_dict("records")


@pytest.mark.parametrize("rule", sorted(declared_rules() | SPEC_RULES),
                         ids=lambda r: f"{r[0]}.{r[1] or '(row)'}: {r[2]}")
def test_a_row_breaking_a_rule_is_bad_with_a_reason_naming_its_column(rule):
    """Each rule a source declares or the spec states, broken on a good row: that row (only)
    is bad, and one of its reasons is the rule's, naming the column."""
    broken = broken_rows(rule) if rule[0] in GOOD_ROWS else None
    if broken is None:
        pytest.fail(f"no way known to break {rule}: add one to VALUE_BREAKERS or "
                    f"ROW_BREAKERS (and a good row of its source to GOOD_ROWS)")
    rows, bad_at, column, reason = broken
    assert column in reason, f"{rule}: its reason {reason!r} does not name {column}"
    s = ALL_SOURCES[rule[0]]
    out = validate(s.schema, s.key, TextFrame(pd.DataFrame(rows, dtype=str)))
    assert out.bad_at.tolist() == bad_at, (
        f"{rule}: rows {bad_at} of {rows} should be bad, found bad: "
        f"{out.bad.to_dict('records')}")
    assert out.good.num_rows == len(rows) - len(bad_at)
    for errors in out.bad["errors"]:
        assert any(p.startswith(reason) for p in errors.split("; ")), (reason, errors)


@pytest.mark.parametrize("text,want", [
    ("2024-04-04", "2024-04-04 00:00:00"),
    ("2024-04-04 03:03:53", "2024-04-04 03:03:53"),
    ("2024-04-04T03:03:53", "2024-04-04 03:03:53"),
    ("2024-02-29 23:59:59", "2024-02-29 23:59:59"),          # a leap day
    ("2024-02-30 10:00:00", None),                           # no such day: not rolled over
    ("2024-04-04 24:00:00", None),
    ("2024-04-04 03:03", None),                              # to the second, always
    ("2024-04-04 03:03:53.5", None),
    ("2024-04-04 03:03:53Z", None),
    ("04/04/2024", None),
    ("", None),
])
def test_a_date_and_time_is_read_in_its_three_forms_only(text, want):
    """docs/contracts.md, a type that widens: a date, or a date and a time to the second after
    a space or a T; anything else is not one (a bad row)."""
    from minilake.contract.text import parse_timestamp

    got = parse_timestamp(pa.array([text], pa.string())).to_pylist()[0]
    assert (None if got is None else got.strftime("%Y-%m-%d %H:%M:%S")) == want


@pytest.mark.parametrize("change,message", [
    ({"quantity": "2.5", "total_price": "6.25"}, None),
    ({"quantity": "3.0", "total_price": "7.50"}, None),
    ({"quantity": "1e1", "total_price": "25.00"}, None),
    ({"quantity": "9007199254740991", "price_per_unit": "0", "total_price": "0"}, None),
    *(({"quantity": q, "price_per_unit": "0", "total_price": "0"},   # 2^53 + 1 reads as 2^53
       "quantity: 2^53 or more, which a number widened from an integer cannot hold exactly")
      for q in ("9007199254740992", "9007199254740993")),
    ({"quantity": "-9007199254740993", "price_per_unit": "0", "total_price": "0"},
     "quantity: must be > 0; quantity: 2^53 or more, which a number widened from an integer "
     "cannot hold exactly"),
    ({"quantity": "two"}, "quantity: not a number 'two'"),
    ({"quantity": "-0.5", "price_per_unit": "0", "total_price": "0"},
     "quantity: must be > 0"),
])
def test_an_integer_column_widened_to_numbers_keeps_its_rules(change, message):
    """docs/contracts.md, a type that widens: ``quantity`` widened reads numbers, keeps its
    rules (> 0, the total's check), and holds no integer a float64 would round."""
    from minilake.contract.schemas import widened

    s = SOURCES["sales"]
    out = validate(widened(s.schema, {"quantity": "float"}), s.key, sales(change))
    if message is None:
        assert out.bad.empty, out.bad["errors"].tolist()
        assert out.good.schema.field("quantity").type == pa.float64()
        assert out.good.column("quantity")[0].as_py() == float(change["quantity"])
    else:
        assert out.bad["errors"].tolist() == [message]


@pytest.mark.parametrize("errors,want", [
    ("total_price: not a number 'ERROR'; quantity: must be > 0",
     ["total_price: not a number", "quantity: must be > 0"]),
    ("gender: not one of M/F/U '; DROP TABLE users; --'; email: required, empty",
     ["gender: not one of M/F/U", "email: required, empty"]),           # "; " in a value
    ("email: does not look like an email \"it's; quantity: 2\"",
     ["email: does not look like an email"]),                             # repr's "..."
    ("total_price: not quantity x price_per_unit (within 0.01)",
     ["total_price: not quantity x price_per_unit (within 0.01)"]),
    ("row 7: row has 8 fields, expected 7", ["row: row has 8 fields, expected 7"]),
])
def test_an_errors_line_read_back_into_its_reasons(errors, want):
    """The run report and the error budget count reasons (docs/quality.md): an ``errors``
    line split back into them, each without the value it quotes."""
    from minilake.load.validate import reasons

    assert reasons(errors, SOURCES["sales"].columns + ["gender", "email"]) == want
