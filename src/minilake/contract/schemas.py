"""pandera schemas, one per source (docs/formats.md).

Every field arrives as text (a bad value is kept exactly as it came), so each schema describes a
frame of strings: a column is a :func:`field` whose checks parse the text the way the column's
kind needs (integer, number, date, text) and then apply the rules of docs/formats.md. Each check is
named after the message it produces, so a pandera failure case becomes an error-report line such
as ``total_price: not a number 'ERROR'`` with no translation table in between.

The column's kind and whether it is required travel in the pandera column's ``metadata``; the
cast of good rows to typed columns (``validate.to_typed``) reads them from there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_
import pyarrow.compute as pc

from minilake.contract.text import (
    ISO_DATE,
    as_arrow,
    as_mask,
    contiguous,
    digit_codes,
    is_blank,
    parsed,
)


def _unknown_or(numbers: pa_.Array, rule) -> pa_.Array:
    """A rule on numbers that lets non-numbers pass (the number check reports those)."""
    return pc.or_kleene(pc.is_null(numbers), rule(numbers))


def _readable(date_format: str) -> str:
    return date_format.replace("%Y", "YYYY").replace("%m", "MM").replace("%d", "DD")


def _check(rule, name: str, blank_passes: bool = True, *, on_series: bool = False) -> pa.Check:
    """A pandera check from a rule on Arrow text (or, with ``on_series``, on the pandas column,
    for rules that use :func:`parsed`); empty text passes unless ``blank_passes`` is off
    (emptiness is the `required` check's business)."""
    def run(text: pd.Series) -> pd.Series:
        values = as_arrow(text)
        valid = rule(text if on_series else values)
        if blank_passes:
            valid = pc.or_(is_blank(values), valid)
        return as_mask(text, valid)
    return pa.Check(run, name=name)


# Patterns with an Arrow kernel of their own, several times quicker than the regex engine.
_PATTERNS = {r"\d+": pc.ascii_is_decimal}        # one or more ASCII digits, as RE2's \d


def field(kind: str = "text", *, required: bool = False, one_of: list[str] | None = None,
          pattern: str | None = None, looks_like: str | None = None, gt: float | None = None,
          ge: float | None = None, date_format: str = ISO_DATE) -> pa.Column:
    """A text column of the given kind ('text', 'int', 'float', 'date') and its rules."""
    checks = []
    if required:
        checks.append(_check(lambda a: pc.invert(is_blank(a)), "required, empty",
                             blank_passes=False))
    if kind == "int":
        checks.append(_check(lambda t: pc.is_valid(parsed(t, "int")), "not an integer",
                             on_series=True))
    elif kind == "float":
        checks.append(_check(lambda t: pc.is_valid(parsed(t, "float")), "not a number",
                             on_series=True))
    elif kind == "date":
        checks.append(_check(lambda t: pc.is_valid(parsed(t, "date", date_format)),
                             f"not a date ({_readable(date_format)})", on_series=True))
    elif kind == "timestamp":           # a date column widened (docs/contracts.md)
        checks.append(_check(lambda t: pc.is_valid(parsed(t, "timestamp")),
                             "not a date and time (YYYY-MM-DD[ HH:MM:SS])", on_series=True))
    if one_of is not None:
        allowed = pa_.array(one_of, pa_.string())
        checks.append(_check(lambda a: pc.is_in(a, value_set=allowed),
                             f"not one of {'/'.join(one_of)}"))
    if pattern is not None:
        rule = _PATTERNS.get(pattern, lambda a: pc.match_substring_regex(a, f"^(?:{pattern})$"))
        checks.append(_check(rule, f"does not look like {looks_like or pattern}"))
    for bound, name, compare in ((gt, "must be > {:g}", pc.greater),
                                 (ge, "must be >= {:g}", pc.greater_equal)):
        if bound is not None:
            checks.append(_check(lambda t, bound=bound, compare=compare: _unknown_or(
                parsed(t, "float"), lambda n: compare(n, bound)), name.format(bound),
                on_series=True))
    # No pandera dtype: every column is text by construction (``validate`` asserts it once per
    # frame). pandera's string dtype check is element-wise and formats its empty failure
    # cases, ~1.5 ms per column per file: half of all validation on the sample week.
    args = {"required": required, "one_of": one_of, "pattern": pattern,
            "looks_like": looks_like, "gt": gt, "ge": ge, "date_format": date_format}
    return pa.Column(None, checks=checks, nullable=False,
                     metadata={"kind": kind, "required": required, "date_format": date_format,
                               "args": args})


# docs/contracts.md: the safe widenings of a column's kind
WIDER = {"date": "timestamp", "int": "float"}
EXACT = 2.0 ** 53       # a float64 holds every integer below this, and not every one beyond


def widened(schema: pa.DataFrameSchema, kinds: dict[str, str]) -> pa.DataFrameSchema:
    """``schema`` with the columns of ``kinds`` made again as those kinds, with their rules
    (a contract's widened columns, docs/contracts.md); the others as they are. Each keeps
    its declared kind in its metadata (``declared``): a number widened from an integer
    hashes its whole values as integers (load/scd2.py), and holds none from 2^53 on, where
    a float64 rounds them (2^53 + 1 reads as 2^53)."""
    if not kinds:
        return schema
    columns = {}
    for name, column in schema.columns.items():
        if name in kinds:
            declared = column.metadata.get("declared", column.metadata["kind"])
            column = field(kinds[name], **column.metadata["args"])
            checks = column.checks
            if declared == "int":
                checks = [*checks, _check(lambda t: _unknown_or(
                    parsed(t, "float"), lambda n: pc.less(pc.abs(n), EXACT)),
                    "2^53 or more, which a number widened from an integer cannot hold "
                    "exactly", on_series=True)]
            column = pa.Column(None, checks=checks, nullable=False,
                               metadata={**column.metadata, "declared": declared})
        columns[name] = column
    return pa.DataFrameSchema(columns, checks=schema.checks, name=schema.name, strict=True,
                              ordered=False)


def whole(schema: pa.DataFrameSchema) -> tuple[str, ...]:
    """The columns declared integers and widened to numbers: their whole values hash as the
    integers they were (docs/contracts.md)."""
    return tuple(name for name, column in schema.columns.items()
                 if column.metadata.get("declared") == "int"
                 and column.metadata["kind"] == "float")


def _occurs_once(by_value: bool):
    """A rule: true where the key occurs once in the file (every copy of a repeat fails).

    Keys are compared as the table will hold them: integer keys by value (``7`` and ``07`` are
    one key), text keys as text. Integers, and text keys of up to 17 digits (coded by
    :func:`minilake.load.keys.digit_codes`), are compared as int64, far quicker than hashing
    strings; any other text is dictionary-encoded by Arrow."""
    def rule(text: pd.Series) -> pa_.Array:
        if by_value:
            number = parsed(text, "int")
            numeric = number.is_valid().to_numpy(zero_copy_only=False)
            as_int = number.drop_null().to_numpy()
            values = None
        else:               # a text key of digits: coded with its length, leading zeros too
            values = contiguous(as_arrow(text))
            numeric, as_int = digit_codes(values)
        repeated = np.zeros(len(text), dtype=bool)
        ordered = np.sort(as_int)           # the usual file has no repeat: a sort tells
        if (ordered[1:] == ordered[:-1]).any():
            repeated[numeric] = pd.Series(as_int).duplicated(keep=False).to_numpy()
        if not numeric.all():
            values = contiguous(as_arrow(text)) if values is None else values
            codes = pc.dictionary_encode(values.filter(pa_.array(~numeric))).indices.to_numpy()
            repeated[~numeric] = np.bincount(codes)[codes] > 1
        return pa_.array(~repeated)
    return rule


def schema(name: str, key: str, columns: dict[str, pa.Column],
           checks: list[pa.Check] | None = None, unique_key: bool = True
           ) -> pa.DataFrameSchema:
    """A source's schema: its columns in file order, row checks, and a key unique in the file
    (checked on Arrow: pandera's own uniqueness check factorises the column in pandas, the
    slowest step of a large file)."""
    if not unique_key:
        return pa.DataFrameSchema(columns, checks=checks or [], name=name, strict=True,
                                  ordered=False)
    keyed = columns[key]
    columns = {**columns, key: pa.Column(
        None, checks=[*keyed.checks, _check(_occurs_once(keyed.metadata["kind"] == "int"),
                                            "occurs more than once in the file",
                                            blank_passes=False, on_series=True)],
        nullable=False, metadata=keyed.metadata)}
    return pa.DataFrameSchema(columns, checks=checks or [], name=name, strict=True,
                              ordered=False)


def _total_is_quantity_times_price(frame: pd.DataFrame) -> pd.Series:
    quantity, price, total = (parsed(frame[c], "float")
                              for c in ("quantity", "price_per_unit", "total_price"))
    off = pc.greater(pc.abs(pc.subtract(total, pc.multiply(quantity, price))), 0.01 + 1e-9)
    # Rows where a number is missing are already bad for that reason; only compare the rest.
    return as_mask(frame["quantity"], pc.invert(off.fill_null(False)))


EMAIL = r"[^@\s]+@[^@\s]+\.?[^@\s]*"

CUSTOMER = schema("customer", "customer_id", {
    "customer_id": field("int", required=True),
    "first_name": field(required=True),
    "last_name": field(required=True),
    "gender": field(required=True, one_of=["M", "F", "U"]),
    "email": field(required=True, pattern=EMAIL, looks_like="an email"),
    "membership_status": field(required=True, one_of=["active", "inactive"]),
    "address": field(),
    "phone_number": field(),
    "date_of_birth": field("date", required=True),
    "job": field(),
    "company": field(),
    "city": field(),
    "state": field(),
    "country": field(),
    "language": field(required=True, one_of=["en-US", "es-ES", "fr-FR"]),
})

PRODUCT = schema("product", "product_id", {
    "name": field(required=True),
    "product_id": field(required=True, pattern=r"P\d+", looks_like="P + digits"),
    "price": field("float", required=True, ge=0),
    "description": field(),
    "creation_date": field("date", required=True),
})

SALES = schema("sales", "sale_id", {
    "sale_id": field(required=True, pattern=r"\d+", looks_like="digits"),
    "customer_id": field("int", required=True),
    "product_id": field(required=True),
    "quantity": field("int", required=True, gt=0),
    "price_per_unit": field("float", required=True, ge=0),
    "total_price": field("float", required=True, ge=0),
    "sale_date": field("date", required=True),
}, checks=[pa.Check(_total_is_quantity_times_price,
                    name="total_price: not quantity x price_per_unit (within 0.01)")])


def _names_someone(frame: pd.DataFrame) -> pd.Series:
    return (frame["customer_id"].str.len() > 0) | (frame["email"].str.len() > 0)


# docs/guarantees.md: a request names a customer by id, by email, or both; naming one twice is no
# fault.
ERASURE_REQUESTS = schema("erasure_requests", "customer_id", {
    "customer_id": field("int"),
    "email": field(pattern=EMAIL, looks_like="an email"),
}, checks=[pa.Check(_names_someone, name="names no one: neither customer_id nor email")],
    unique_key=False)
