"""JSON text of tables and documents: how minilake writes every JSON it gives out (the job
server's pages, status and job results; ``sql --format json``).

JSON leaves a number's precision to its reader, and JavaScript (like most readers) reads every
number as a double: 476101535486995529 arrives as 476101535486995500. The rules are chosen so
that such a reader gets every value exact, and the type of a column from its name and type:

- **Identifiers.** An integer column named ``id`` or ``…_id``, ``…_key``, ``…_hash`` (any
  letter case: ``customer_id``, ``row_hash``) is written as strings of its exact digits, every
  value of it, small or large. Identifiers are compared, never added, so text costs nothing,
  and a client reads an id column one way on every page.
- **Other exact numbers** (integers, decimals) are JSON numbers written exactly as stored, a
  decimal with its scale (``12.50``; ``1234`` for ``total_quantity``, a ``decimal128(38, 0)``
  sum in the marts), as long as a double holds every value of the column to the digit: an
  integer within ±(2**53 − 1), a decimal of at most 15 significant digits. A column holding one
  value past that is written, in that answer, as strings of every value's exact text: nothing
  is rounded on the way, and a column keeps one JSON type within an answer.
- **Floats** are the shortest text that reads back as the same double (Python's ``repr``:
  ``2016931.39``). A money column (``price``, ``price_per_unit``, ``total_price``, ``revenue``,
  ``total_spent``, ``avg_unit_price``) whose value needs more than 15 significant digits to be
  told apart (``0.30000000000000004``) carries a sum's or a division's float noise, since no
  decimal of 15 digits or fewer reads as that double; it is written rounded to cents
  (``0.3``). A money value of 15 digits or fewer is written as it is (a price of ``12.505``
  stays ``12.505``), so a delivery served page by page (docs/formats.md) is the delivery that came.
- **Nulls**, NaN and ±infinity: ``null``.
- **Dates**: ``"YYYY-MM-DD"``. **Timestamps**: ISO 8601 in UTC, marked ``Z``, with the
  column's precision (``"2024-10-14T08:00:00.123456Z"`` for microseconds, no fraction for
  seconds); a timestamp without a zone is taken as UTC, the zone minilake keeps every time in.
- Strings are JSON strings (UTF-8, not escaped to ``\\u``), booleans ``true``/``false``,
  binary values base64; inside lists and structs each value follows these rules alone (an
  integer past ±(2**53 − 1) as a string). Anything else is written as its text.

A JSON document (``dumps``) is read the same way: a Python int past ±(2**53 − 1) as a string,
and a table anywhere in it as its records.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import operator
import re
import sys
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

SAFE_INTEGER = 2**53 - 1              # JavaScript's Number.MAX_SAFE_INTEGER
DOUBLE_DIGITS = 15                    # decimal digits every double tells apart (DBL_DIG)
IDENTIFIER = re.compile(r"(?i)(.*_)?(id|key|hash)")
MONEY = frozenset({"price", "price_per_unit", "total_price", "revenue", "total_spent",
                   "avg_unit_price"})
_quote: Callable[[str], str] = json.encoder.encode_basestring     # C, keeps UTF-8 as is


def records(data, *, indent: int | None = None) -> str:
    """A pyarrow Table or RecordBatch, or a pandas DataFrame, as a JSON array of one object
    per row, by the rules above; ``indent`` spaces per level (None: one line)."""
    return _records(_arrow(data), indent, 0)


def dumps(value, *, indent: int | None = None) -> str:
    """A JSON document of dicts, lists and scalars by the same rules; a Table, RecordBatch
    or DataFrame in it is written as its records."""
    return _encode(value, indent, 0)


def _encode(value, indent: int | None, level: int) -> str:
    if _is_table(value):
        return _records(_arrow(value), indent, level)
    if isinstance(value, dict):
        colon = ":" if indent is None else ": "
        return _container([_quote(str(k)) + colon + _encode(v, indent, level + 1)
                           for k, v in value.items()], "{}", indent, level)
    if isinstance(value, list | tuple):
        return _container([_encode(v, indent, level + 1) for v in value], "[]", indent, level)
    return _scalar(value)


def _container(items: list[str], brackets: str, indent: int | None, level: int) -> str:
    """Items already written, inside brackets: on one line, or one per line, indented."""
    if indent is None:
        return brackets[0] + ",".join(items) + brackets[1]
    if not items:
        return brackets
    inner = "\n" + " " * (indent * (level + 1))
    return (brackets[0] + inner + ("," + inner).join(items) + "\n" + " " * (indent * level)
            + brackets[1])


def _scalar(value) -> str:
    """One value with no column to go by (a document's, or one inside a list or struct)."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.number | numpy.bool_):
        value = value.item()
    if value is None or value is True or value is False:
        return json.dumps(value)
    if _is_missing(value):
        return "null"
    if isinstance(value, int):
        return str(value) if abs(value) <= SAFE_INTEGER else f'"{value}"'
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "null"
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return "null"
        text = str(value)
        return text if _significant(text) <= DOUBLE_DIGITS else f'"{text}"'
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        fraction = f".{value.microsecond:06d}" if value.microsecond else ""
        return f'"{value:%Y-%m-%dT%H:%M:%S}{fraction}Z"'
    if isinstance(value, dt.date | dt.time):
        return f'"{value.isoformat()}"'
    if isinstance(value, bytes):
        return f'"{base64.b64encode(value).decode()}"'
    if isinstance(value, str):
        return _quote(value)
    return _quote(str(value))


def _is_missing(value) -> bool:
    """pandas' NA and NaT (pandas is looked at only if something loaded it)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and (value is pandas.NA or value is pandas.NaT)


def _significant(text: str) -> int:
    """Significant digits of a number's text (``-0.0120`` → 2, ``1.5e+20`` → 2)."""
    mantissa = text.lower().partition("e")[0]
    return len(mantissa.replace("-", "").replace("+", "").replace(".", "").strip("0"))


# --- tables ----------------------------------------------------------------------------------

def _is_table(value) -> bool:
    if isinstance(value, pa.Table | pa.RecordBatch):
        return True
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _arrow(data) -> pa.Table:
    """A Table of the data (a DataFrame's columns typed by pandas' own conversion)."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    try:
        return pa.Table.from_pandas(data, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:    # Python objects of mixed kinds
        raise ValueError(f"not JSON records: {str(error).splitlines()[0]}") from None


def lines(data) -> str:
    """A pyarrow Table or RecordBatch, or a pandas DataFrame, as NDJSON: one object per row,
    each on a line of its own, by the rules above."""
    return "".join(f"{row}\n" for row in _rows(_arrow(data), None, 0))


def _records(table: pa.Table, indent: int | None, level: int) -> str:
    return _container(_rows(table, indent, level), "[]", indent, level)


def _rows(table: pa.Table, indent: int | None, level: int) -> list[str]:
    colon = ":" if indent is None else ": "
    keys = [_quote(name) + colon for name in table.column_names]
    columns = [_column(table.column(i), name, indent, level + 2)
               for i, name in enumerate(table.column_names)]
    values = zip(*columns, strict=True) if columns else [()] * table.num_rows
    if indent is None:
        return ["{" + ",".join(map(operator.add, keys, row)) + "}" for row in values]
    return [_container(list(map(operator.add, keys, row)), "{}", indent, level + 1)
            for row in values]


def _column(column: pa.ChunkedArray, name: str, indent: int | None, level: int) -> list[str]:
    """Every value of one column, written as JSON by the column's name and type."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_null(kind):
        return ["null"] * len(column)
    if pa.types.is_boolean(kind):
        return [_BOOLEAN[v] for v in column.to_pylist()]
    if pa.types.is_integer(kind) or pa.types.is_decimal(kind):
        return _exact(column, name)
    if pa.types.is_floating(kind):
        return _floats(column, name in MONEY)
    if pa.types.is_date(kind):
        return _quoted(column.cast(pa.string()))
    if pa.types.is_timestamp(kind):
        utc = column.cast(pa.timestamp(kind.unit, "UTC"))
        return _quoted(pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ"))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or \
            pa.types.is_string_view(kind):
        return [_quote(v) if v is not None else "null" for v in column.to_pylist()]
    return [_encode(v, indent, level) for v in column.to_pylist()]


_BOOLEAN = {True: "true", False: "false", None: "null"}


def _quoted(texts: pa.ChunkedArray) -> list[str]:
    """Texts that need no escaping (digits, dates), as JSON strings."""
    return [f'"{t}"' if t is not None else "null" for t in texts.to_pylist()]


def _exact(column: pa.ChunkedArray, name: str) -> list[str]:
    """Integers and decimals: numbers while a double holds every value, else strings; an
    identifier's always strings."""
    texts = column.cast(pa.string())
    identifier = pa.types.is_integer(column.type) and IDENTIFIER.fullmatch(name)
    if identifier or not _double_holds(column, texts):
        return _quoted(texts)
    return [t if t is not None else "null" for t in texts.to_pylist()]


def _double_holds(column: pa.ChunkedArray, texts: pa.ChunkedArray) -> bool:
    if pa.types.is_integer(column.type):
        low, high = pc.min_max(column).values()
        return low.as_py() is None or (-SAFE_INTEGER <= low.as_py()
                                       and high.as_py() <= SAFE_INTEGER)
    return all(_significant(t) <= DOUBLE_DIGITS for t in texts.to_pylist() if t is not None)


def _floats(column: pa.ChunkedArray, money: bool) -> list[str]:
    """Shortest round-trip text; money with float noise rounded to cents."""
    if column.type == pa.float32():          # a float32's shortest text is its own
        import numpy as np  # on first use: start-up stays light

        return [str(np.float32(v)) if v is not None and math.isfinite(v) else "null"
                for v in column.to_pylist()]
    out = []
    column = column.cast(pa.float64())       # a half float's values, as Python floats
    for value in column.to_pylist():
        if value is None or not math.isfinite(value):
            out.append("null")
            continue
        text = repr(value)
        if money and _significant(text) > DOUBLE_DIGITS:
            text = repr(round(value, 2))
        out.append(text)
    return out
