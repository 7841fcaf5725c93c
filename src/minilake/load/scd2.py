"""SCD2 (docs/formats.md): the current versions' keys and hashes + a file's good rows -> changes.
Pure.

The whole computation needs only the key and ``row_hash`` of each current version, never the
rest of the table: a row whose hash is unchanged is left alone, a changed one expires its current
version and inserts a new one, and in a full snapshot a current key absent from the file (and not
the key of a bad row) is expired.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from minilake.load.keys import found, positions

OPEN_END = dt.date(2099, 12, 31)
SCD2_COLUMNS = ["effective_from", "expiry_date", "is_current", "row_hash"]
NULL_MARK = "\\N"
SEPARATOR = "\x1f"


CENTS_EXACT_BELOW = 7e13     # half an ulp there is < 0.01, so cents need all their digits
HASH_CHUNK = 65_536       # rows hashed at a time: 65,536 fit the caches better than 250,000 (a 100x
                          # day 0.3 s quicker, issue 38)
HASH_KEY = "minilake-row-v1:"   # 16 bytes: the SipHash key; changing it changes every hash


# The text after the point of a whole number of cents, by cents % 100: 0 -> "0", 50 -> "5",
# 5 -> "05", 12 -> "12" (repr drops trailing zeros but keeps one digit).
_FRACTIONS = pa.array([str(c // 10) if c % 10 == 0 else f"{c:02d}" for c in range(100)])
_SIGNS = pa.array(["", "-"])


def float_text(values: np.ndarray) -> pa.Array:
    """``repr(float(v))`` for every value, vectorised where that is provably the same text.

    A value that is a whole number of cents below 7e13 prints as its cents with trailing zeros
    dropped (``1811.8``, ``5.0``, ``-0.05``): no shorter decimal lies within half an ulp of it,
    so that is exactly the shortest round-trip text Python's ``repr`` gives. Any other value
    (more decimals, huge, NaN, infinite) goes through ``repr`` itself."""
    x = np.asarray(values, dtype=np.float64)
    size = np.abs(x)
    with np.errstate(invalid="ignore", over="ignore"):
        cents = np.round(size * 100)
        fast = (size < CENTS_EXACT_BELOW) & (cents / 100 == size)
    cents = np.where(fast, cents, 0).astype(np.int64)
    units = pa.array(cents // 100).cast(pa.string())
    fraction = _FRACTIONS.take(pa.array(cents % 100))
    sign = _SIGNS.take(pa.array(np.signbit(x).astype(np.int8)))
    text = pc.binary_join_element_wise(sign, units, ".", fraction, "")
    if not fast.all():
        slow = np.flatnonzero(~fast)
        out = text.to_numpy(zero_copy_only=False).astype(object)
        out[slow] = [repr(float(v)) for v in x[slow]]
        text = pa.array(out, pa.string())
    return text


def canonical_text(column: pa.ChunkedArray | pa.Array, whole: bool = False) -> pa.Array:
    """A value's canonical text: integers in decimal, floats as Python's ``repr`` (the shortest
    text that reads back to the same double), dates ISO, dates and times ISO with a space (at
    midnight, the date alone), text as is; null stays null (it is written ``\\N`` when a row's
    texts are joined). ``whole``: a column of numbers widened from integers, whose whole
    values are written as the integers they were (docs/contracts.md)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        return _timestamp_text(column)
    if whole and pa.types.is_floating(column.type):
        return _whole_text(column)
    if pa.types.is_floating(column.type) or pa.types.is_date(column.type):
        # Few distinct prices and dates: format each once (nulls stay null; distinct bit
        # patterns stay distinct, so -0.0 is not 0.0).
        encoded = column.dictionary_encode()
        distinct = encoded.dictionary
        text = (float_text(distinct.to_numpy(zero_copy_only=False))
                if pa.types.is_floating(column.type) else distinct.cast(pa.string()))
        return text.take(encoded.indices)
    return pc.cast(column, pa.string())


def _timestamp_text(column: pa.Array) -> pa.Array:
    """A date and time as ``YYYY-MM-DD HH:MM:SS``; at midnight, as its date alone: a date
    column widened to timestamps (docs/contracts.md) hashes its old values as it did."""
    days = pc.cast(column, pa.date32())
    midnight = pc.equal(pc.cast(days, column.type), column)
    seconds = pc.cast(column, pa.timestamp("s"), safe=False)
    return pc.if_else(midnight, days.cast(pa.string()),
                      pc.strftime(seconds, "%Y-%m-%d %H:%M:%S"))


def _whole_text(column: pa.Array) -> pa.Array:
    """Numbers widened from integers: a whole value as its integer (``3.0`` as ``3``, as it
    hashed before the widening), any other as a float."""
    is_whole = pc.and_(pc.less_equal(pc.abs(column), 2.0 ** 53),     # not nan, not inf
                       pc.equal(pc.floor(column), column))
    integers = pc.cast(pc.if_else(is_whole, column, 0.0), pa.int64())
    return pc.if_else(is_whole, pc.cast(integers, pa.string()), canonical_text(column))


def row_hashes(table: pa.Table, declared: int | None = None,
               whole: tuple[str, ...] = ()) -> pa.Array:
    """A stable hash of each row's business columns (docs/formats.md), as int64.

    SipHash-2-4 with the key ``HASH_KEY`` over the UTF-8 canonical texts joined by the unit
    separator, then the splitmix64 finaliser (what ``pandas.util.hash_array`` computes for
    strings, vectorised in C). Both are fixed, published algorithms: the same values give the
    same hash in every version of Python, pandas and pyarrow, which a test checks against an
    independent implementation. Done in chunks, so memory stays flat for any file size.

    Columns after the first ``declared`` (added to the table by a source's contract,
    docs/contracts.md) count only where they hold a value, each as ``name=value`` after the
    rest: a row with all of them empty hashes as it did before they existed, so a column
    added empty opens no version. ``whole``: the columns whose whole numbers are written as
    integers (:func:`canonical_text`)."""
    if table.num_rows == 0:
        return pa.array([], pa.int64())
    out = []
    for start in range(0, table.num_rows, HASH_CHUNK):
        chunk = table.slice(start, HASH_CHUNK)
        names = chunk.column_names[:declared]
        joined = pc.binary_join_element_wise(
            *[canonical_text(chunk.column(name), name in whole) for name in names], SEPARATOR,
            null_handling="replace", null_replacement=NULL_MARK)
        for name in chunk.column_names[len(names):]:
            said = pc.binary_join_element_wise(pa.scalar(f"{SEPARATOR}{name}="),
                                               canonical_text(chunk.column(name)), "")
            joined = pc.binary_join_element_wise(joined, said, "", null_handling="replace",
                                                 null_replacement="")
        # As bytes (the UTF-8 text): pandas hashes them as they are, with no encode per row.
        values = joined.cast(pa.binary()).to_numpy(zero_copy_only=False)
        hashed = pd.util.hash_array(values, encoding="utf8", hash_key=HASH_KEY,
                                    categorize=False)
        out.append(pa.array(hashed.view(np.int64)))
    return pa.concat_arrays(out)


@dataclass
class Changes:
    """What applying one file does to a table."""

    inserts: pa.Table          # new versions: business columns + row_hash
    expire_keys: pa.Array      # keys whose current version ends on the file date
    inserted: int              # keys new to the table
    updated: int               # keys whose current version is replaced
    expired: int               # snapshot keys absent from the file (deleted upstream)
    gone: pa.Array | None = None    # those keys (the last of ``expire_keys``)
    # keys whose current version is rewritten in place (docs/contracts.md: only columns the
    # contract updates in place changed), and the effective_from each keeps; their new rows
    # are among ``inserts``, their keys not among ``expire_keys``
    replaced: pa.Array | None = None
    replaced_from: pa.Array | None = None

    @property
    def in_place(self) -> int:
        return 0 if self.replaced is None else len(self.replaced)

    @property
    def empty(self) -> bool:
        return self.inserts.num_rows == 0 and len(self.expire_keys) == 0


def diff(current: pa.Table, incoming: pa.Table, key: str, *, snapshot: bool,
         bad_keys: pd.Series | None = None, vanished: str = "invalidate",
         declared: int | None = None, whole: tuple[str, ...] = ()) -> Changes:
    """Compare a file's good rows with the current versions (a table of ``key``, ``row_hash``).

    ``bad_keys`` are keys (as text) of the file's bad rows: in a snapshot they count as present
    and unchanged, so their current version stays current. ``vanished``: what a snapshot's
    absent keys become (docs/contracts.md); with ``ignore`` they stay current. ``declared``:
    how many of the columns are declared ones, ``whole`` those widened from integers
    (:func:`row_hashes`).
    """
    hashes = row_hashes(incoming, declared, whole).to_numpy()
    keys = incoming.column(key).combine_chunks()
    key_type = keys.type
    current_keys = current.column(key).combine_chunks().cast(key_type)
    at = positions(keys, current_keys)                  # position among current, or -1
    is_new = at < 0
    known_hashes = current.column("row_hash").to_numpy()
    is_changed = np.zeros(len(keys), dtype=bool)
    if len(known_hashes):
        before = known_hashes[np.where(is_new, 0, at)]
        is_changed = ~is_new & (before != hashes)
    gone = current_keys[:0]
    if snapshot and vanished != "ignore":
        present = keys
        if bad_keys is not None and len(bad_keys):
            present = pa.concat_arrays([keys, pa.array(_as_key_type(bad_keys, key_type),
                                                       key_type)])
        gone = current_keys.filter(pa.array(~found(current_keys, present)))
    inserts = incoming.append_column("row_hash", pa.array(hashes, pa.int64()))
    kept = is_new | is_changed
    if not kept.all():          # a day's sales are all new or changed: no copy of them all
        inserts = inserts.filter(pa.array(kept))
    return Changes(inserts=inserts,
                   expire_keys=pa.concat_arrays([keys.filter(pa.array(is_changed)), gone]),
                   inserted=int(is_new.sum()), updated=int(is_changed.sum()),
                   expired=len(gone), gone=gone)


def in_place(changes: Changes, current: pa.Table, key: str, columns: tuple[str, ...],
             declared: int, whole: tuple[str, ...] = ()) -> Changes:
    """``changes`` with the updated keys whose rows differ from their current version
    (``current``: those versions' business columns, ``effective_from`` and ``key``) only in
    ``columns`` rewritten in place (docs/contracts.md): no version expires or opens for them;
    the new row replaces the current one and keeps its ``effective_from``. The others stay
    updates. ``declared``, ``whole``: as :func:`row_hashes` takes them."""
    if changes.updated == 0 or current.num_rows == 0:
        return changes
    keys = changes.inserts.column(key).combine_chunks()
    at = positions(keys, current.column(key).combine_chunks().cast(keys.type))
    was = at >= 0                               # an update, not a new key
    if not was.any():
        return changes
    names = [n for n in changes.inserts.column_names if n != "row_hash"]
    tracked = [n for n in names if n not in columns]
    tracked_declared = sum(1 for n in names[:declared] if n not in columns)
    new = changes.inserts.filter(pa.array(was)).select(tracked)
    old = current.take(pa.array(at[was])).select(tracked).cast(new.schema)
    same = (row_hashes(new, tracked_declared, whole).to_numpy()
            == row_hashes(old, tracked_declared, whole).to_numpy())
    if not same.any():
        return changes
    rows = np.flatnonzero(was)[same]
    replaced = keys.take(pa.array(rows))
    replaced_from = current.column("effective_from").combine_chunks().take(
        pa.array(at[rows]))
    expire = changes.expire_keys
    expire = expire.filter(pa.array(~found(expire, replaced)))
    return dataclasses.replace(changes, expire_keys=expire, updated=changes.updated - len(rows),
                               replaced=replaced, replaced_from=replaced_from)


def _as_key_type(text: pd.Series, key_type: pa.DataType) -> np.ndarray:
    """Bad rows' keys (text) in the key's type; a key that does not parse matches nothing."""
    if pa.types.is_integer(key_type):
        digits = text[text.str.fullmatch(r"-?\d{1,18}")].to_numpy(dtype=object)
        return pa.array(digits, pa.string()).cast(pa.int64()).to_numpy()
    return text.to_numpy(dtype=object)
