"""pandera schemas, one per source (SPEC §1 and §3).

Every field arrives as text (a bad value is kept exactly as it came), so each schema describes a
frame of strings: a column is a :func:`field` whose checks parse the text the way the column's
kind needs (integer, number, date, text) and then apply the rules of SPEC §1. Each check is
named after the message it produces, so a pandera failure case becomes an error-report line such
as ``total_price: not a number 'ERROR'`` with no translation table in between.

The column's kind and whether it is required travel in the pandera column's ``metadata``; the
cast of good rows to typed columns (``validate.to_typed``) reads them from there.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

INT64_DIGITS = len(str(2**63 - 1))


def as_number(text: pd.Series) -> pd.Series:
    """Text -> float, NaN where it is not a finite number (e.g. 'ERROR', '', 'inf')."""
    number = pd.to_numeric(text, errors="coerce").astype("float64")
    return number.where(number.abs() < float("inf"))


def _is_integer(text: pd.Series) -> pd.Series:
    digits = text.str.lstrip("-")
    fits = (digits.str.len() < INT64_DIGITS) | (
        (digits.str.len() == INT64_DIGITS) & (digits <= str(2**63 - 1)))
    return text.str.fullmatch(r"-?\d+") & fits


def _is_date(text: pd.Series, date_format: str) -> pd.Series:
    parsed = pd.to_datetime(text, format=date_format, errors="coerce")
    return text.str.fullmatch(r"\d{4}-\d{2}-\d{2}") & parsed.notna()


def _readable(date_format: str) -> str:
    return date_format.replace("%Y", "YYYY").replace("%m", "MM").replace("%d", "DD")


def _blank_or(check):
    """A check that lets empty text pass: emptiness is the `required` check's business."""
    return lambda s: (s == "") | check(s)


def field(kind: str = "text", *, required: bool = False, one_of: list[str] | None = None,
          pattern: str | None = None, looks_like: str | None = None, gt: float | None = None,
          ge: float | None = None, date_format: str = "%Y-%m-%d") -> pa.Column:
    """A text column of the given kind ('text', 'int', 'float', 'date') and its rules."""
    checks = []
    if required:
        checks.append(pa.Check(lambda s: s != "", name="required, empty"))
    if kind == "int":
        checks.append(pa.Check(_blank_or(_is_integer), name="not an integer"))
    elif kind == "float":
        checks.append(pa.Check(_blank_or(lambda s: as_number(s).notna()), name="not a number"))
    elif kind == "date":
        checks.append(pa.Check(_blank_or(lambda s: _is_date(s, date_format)),
                               name=f"not a date ({_readable(date_format)})"))
    if one_of is not None:
        checks.append(pa.Check(_blank_or(lambda s: s.isin(one_of)),
                               name=f"not one of {'/'.join(one_of)}"))
    if pattern is not None:
        checks.append(pa.Check(_blank_or(lambda s: s.str.fullmatch(pattern)),
                               name=f"does not look like {looks_like or pattern}"))
    if gt is not None:
        checks.append(pa.Check(lambda s: ~(as_number(s) <= gt), name=f"must be > {gt:g}"))
    if ge is not None:
        checks.append(pa.Check(lambda s: ~(as_number(s) < ge), name=f"must be >= {ge:g}"))
    return pa.Column(str, checks=checks, nullable=False,
                     metadata={"kind": kind, "required": required, "date_format": date_format})


def schema(name: str, key: str, columns: dict[str, pa.Column],
           checks: list[pa.Check] | None = None) -> pa.DataFrameSchema:
    """A source's schema: its columns in file order, row checks, and a key unique in the file."""
    return pa.DataFrameSchema(columns, checks=checks or [], name=name, unique=[key],
                              report_duplicates="all", strict=True, ordered=False)


def _total_is_quantity_times_price(frame: pd.DataFrame) -> pd.Series:
    quantity = as_number(frame["quantity"])
    price = as_number(frame["price_per_unit"])
    total = as_number(frame["total_price"])
    # Rows where a number is missing are already bad for that reason; only compare the rest.
    return ~((total - quantity * price).abs() > 0.01 + 1e-9)


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
