"""Text as it arrives -> values (the contract's parsing): integers, numbers and dates read from
text exactly, with null where the text is not one; and decimal-digit text as int64 codes that
compare as the texts do. What schemas check and keys look up are both made of these, so both
depend on this module and on nothing else of minilake (docs/architecture.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import pandas as pd
import pyarrow as pa_
import pyarrow.compute as pc

INT64_MAX = str(2**63 - 1)
ISO_DATE = "%Y-%m-%d"
EARLIEST_FOUR_DIGIT_YEAR = dt.date(1000, 1, 1)
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def as_arrow(text: pd.Series) -> pa_.Array:
    return pa_.array(text)                       # zero-copy for pandas' Arrow-backed strings


def contiguous(values: pa_.Array | pa_.ChunkedArray) -> pa_.Array:
    """One array (kernels whose result is indexed or cached need a single chunk); text of
    2 GB or more as ``large_string`` (a ``string`` array's offsets are 32-bit)."""
    if not isinstance(values, pa_.ChunkedArray):
        return values
    if pa_.types.is_string(values.type) and values.nbytes >= 2**31 - 1:
        values = values.cast(pa_.large_string())
    return values.combine_chunks()


def is_blank(text: pa_.Array) -> pa_.Array:
    """Empty text (a length test: comparing every string with '' is ten times slower)."""
    return pc.equal(pc.binary_length(text), 0)


def as_mask(text: pd.Series, valid: pa_.Array) -> pd.Series:
    return pd.Series(valid.fill_null(False).to_numpy(zero_copy_only=False), index=text.index)


# Parsed columns of the frame being validated, by (column, kind): a number column is read by
# its own checks, the row check and the cast of good rows, and is parsed once for all of them.
_parsed: ContextVar[dict | None] = ContextVar("parsed", default=None)


@contextmanager
def parsing_once() -> Iterator[None]:
    """Within this block, each column is parsed once (one frame, one thread at a time)."""
    token = _parsed.set({})
    try:
        yield
    finally:
        _parsed.reset(token)


def parsed(text: pd.Series, kind: str, date_format: str = ISO_DATE) -> pa_.Array:
    """A text column parsed as integers ('int'), numbers ('float'), dates ('date') or dates
    with a time ('timestamp'); null where it does not parse. Remembered by column name inside
    :func:`parsing_once`."""
    cache = _parsed.get()
    key = (text.name, kind, date_format)
    if cache is not None and key in cache:
        return cache[key]
    if kind == "int":           # chunk by chunk: combining a million strings costs a copy
        out = parse_integer(as_arrow(text))
    else:
        values = contiguous(as_arrow(text))
        out = (parse_number(values) if kind == "float" else parse_timestamp(values)
               if kind == "timestamp" else parse_date(values, date_format))
    if cache is not None:
        cache[key] = out
    return out


def parse_number(text: pa_.Array) -> pa_.Array:
    """Text -> float64; null where it is not a finite decimal number ('ERROR', '', 'inf').
    Prices repeat a lot (a catalogue's worth per file): a column of few distinct texts is
    parsed once per distinct text."""
    encoded = contiguous(pc.dictionary_encode(text))
    if len(encoded.dictionary) * 2 <= len(text):
        return _parse_number(encoded.dictionary).take(encoded.indices)
    return _parse_number(text)


def _parse_number(text: pa_.Array) -> pa_.Array:
    looks = pc.match_substring_regex(text, NUMBER)
    if not all_true(looks):                      # the rest would fail the cast: make them nan
        text = pc.if_else(looks, text, "nan")
    value = pc.cast(text, pa_.float64())
    return pc.if_else(pc.and_(looks, pc.is_finite(value)), value,
                      pa_.scalar(None, pa_.float64()))


def all_true(mask: pa_.Array) -> bool:
    return bool(pc.all(mask.fill_null(False)).as_py())


def parse_date(text: pa_.Array, date_format: str) -> pa_.Array:
    """Text -> date32; null unless the text is exactly a real date in ``date_format``
    (strptime rolls 2024-02-30 over to March, so the date must print back the same).
    Dates repeat a lot (one sale date per file), so each distinct text is parsed once."""
    if date_format == ISO_DATE:
        # Arrow's own cast reads exactly YYYY-MM-DD and rejects 2024-02-30: a column that is
        # all such dates (the usual one) is parsed in one go. Years before 1000 are left to
        # strptime, which prints them back without leading zeros.
        try:
            dates = pc.cast(text, pa_.date32())
            earliest = pc.min(dates).as_py()            # None: no rows
            if earliest is None or earliest >= EARLIEST_FOUR_DIGIT_YEAR:
                return dates
        except pa_.ArrowInvalid:
            pass
    encoded = contiguous(pc.dictionary_encode(text))
    distinct = pc.cast(encoded.dictionary, pa_.string())
    stamp = pc.strptime(distinct, date_format, "s", error_is_null=True)
    same = pc.equal(pc.strftime(stamp, date_format), distinct)
    dates = pc.if_else(same, pc.cast(stamp, pa_.date32()), pa_.scalar(None, pa_.date32()))
    return dates.take(encoded.indices)


# A timestamp's forms (docs/contracts.md, a widened date): an ISO date, with a time of day to
# the second after a space or a T
TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", ISO_DATE)
TIMESTAMP = pa_.timestamp("us", "UTC")   # Delta's timestamp: UTC (no zone needs a table feature)


def parse_timestamp(text: pa_.Array) -> pa_.Array:
    """Text -> timestamp (microseconds, no zone); null unless the text is exactly one of
    ``TIMESTAMP_FORMATS`` with a real date and time (it must print back the same: strptime
    rolls 2024-02-30 over to March). Each distinct text is parsed once."""
    encoded = contiguous(pc.dictionary_encode(text))
    distinct = pc.cast(encoded.dictionary, pa_.string())
    found = pa_.nulls(len(distinct), TIMESTAMP)
    for form in TIMESTAMP_FORMATS:
        stamp = pc.strptime(distinct, form, "s", error_is_null=True)
        same = pc.equal(pc.strftime(stamp, form), distinct)
        found = pc.coalesce(found, pc.if_else(same, stamp.cast(TIMESTAMP),
                                              pa_.scalar(None, TIMESTAMP)))
    return found.take(encoded.indices)


def parse_integer(text: pa_.Array | pa_.ChunkedArray) -> pa_.Array:
    """Text -> int64; null where it is not a decimal integer that fits int64."""
    fits = _is_integer(text)
    if all_true(fits):
        return contiguous(pc.cast(text, pa_.int64()))
    value = pc.cast(pc.if_else(fits, text, "0"), pa_.int64())
    return contiguous(pc.if_else(fits, value, pa_.scalar(None, pa_.int64())))


def _is_integer(text: pa_.Array) -> pa_.Array:
    """Decimal integer text that fits int64."""
    # Up to 18 digits fits for sure; the usual column is all such (a digit test is several
    # times quicker than the regex below).
    short = pc.and_(pc.ascii_is_decimal(text), pc.less_equal(pc.binary_length(text), 18))
    if all_true(short):
        return short
    short = pc.match_substring_regex(text, r"^-?\d{1,18}$")
    if all_true(short):
        return short
    digits = pc.utf8_ltrim(text, "-")
    length = pc.utf8_length(digits)
    fits = pc.or_(pc.less(length, len(INT64_MAX)),
                  pc.and_(pc.equal(length, len(INT64_MAX)), pc.less_equal(digits, INT64_MAX)))
    return pc.and_(pc.match_substring_regex(text, r"^-?\d+$"), fits)


DIGITS_CODED = 17           # 10**17 * 18 + 17 < 2**63


def digit_codes(text: pa_.Array) -> tuple[np.ndarray, np.ndarray]:
    """(which, codes): which texts are 1 to 17 decimal digits, and the codes of those."""
    length = pc.binary_length(text)
    which = pc.and_(pc.ascii_is_decimal(text), pc.less_equal(length, DIGITS_CODED))
    codes = pc.add(pc.multiply(pc.cast(text.filter(which), pa_.int64()), 18),
                   pc.cast(length.filter(which), pa_.int64()))
    return which.fill_null(False).to_numpy(zero_copy_only=False), codes.to_numpy()
