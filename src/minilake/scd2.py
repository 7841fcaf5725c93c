"""SCD2 (SPEC §4): the current versions' keys and hashes + a file's good rows -> changes. Pure.

The whole computation needs only the key and ``row_hash`` of each current version, never the
rest of the table: a row whose hash is unchanged is left alone, a changed one expires its current
version and inserts a new one, and in a full snapshot a current key absent from the file (and not
the key of a bad row) is expired.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

OPEN_END = dt.date(2099, 12, 31)
SCD2_COLUMNS = ["effective_from", "expiry_date", "is_current", "row_hash"]
NULL_MARK = "\\N"
SEPARATOR = "\x1f"


def canonical_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A value's canonical text: integers in decimal, floats as the shortest text that reads
    back to the same double, dates ISO, text as is, null as ``\\N``."""
    if pa.types.is_floating(column.type):
        text = pa.array([None if v is None else repr(float(v)) for v in column.to_pylist()],
                        pa.string())
    else:
        text = pc.cast(column, pa.string())
    return pc.fill_null(text, NULL_MARK)


def row_hashes(table: pa.Table) -> pa.Array:
    """A stable hash of each row's business columns (SPEC §4).

    sha256 of the canonical texts joined by the unit separator, first 32 hex digits: the same
    values give the same hash in every version of Python, pandas and pyarrow.
    """
    if table.num_rows == 0:
        return pa.array([], pa.string())
    joined = pc.binary_join_element_wise(
        *[canonical_text(table.column(name)) for name in table.column_names], SEPARATOR)
    return pa.array([hashlib.sha256(row.encode()).hexdigest()[:32]
                     for row in joined.to_pylist()], pa.string())


@dataclass
class Changes:
    """What applying one file does to a table."""

    inserts: pa.Table          # new versions: business columns + row_hash
    expire_keys: pa.Array      # keys whose current version ends on the file date
    inserted: int              # keys new to the table
    updated: int               # keys whose current version is replaced
    expired: int               # snapshot keys absent from the file (deleted upstream)

    @property
    def empty(self) -> bool:
        return self.inserts.num_rows == 0 and len(self.expire_keys) == 0


def diff(current: pd.DataFrame, incoming: pa.Table, key: str, *, snapshot: bool,
         bad_keys: pd.Series | None = None) -> Changes:
    """Compare a file's good rows with the current versions (columns ``key``, ``row_hash``).

    ``bad_keys`` are keys (as text) of the file's bad rows: in a snapshot they count as present
    and unchanged, so their current version stays current.
    """
    hashes = row_hashes(incoming).to_numpy(zero_copy_only=False)
    keys = incoming.column(key).to_numpy()
    current_keys = _plain(current[key])
    known = pd.Series(current["row_hash"].to_numpy(dtype=object), index=current_keys)
    before = known.reindex(keys).to_numpy(dtype=object)
    is_new = pd.isna(before)
    is_changed = ~is_new & (before != hashes)
    gone = current_keys[:0]
    if snapshot:
        present = pd.Index(keys)
        if bad_keys is not None and len(bad_keys):
            present = present.append(pd.Index(_as_key_type(bad_keys, current_keys.dtype)))
        gone = current_keys[~pd.Index(current_keys).isin(present)]
    inserts = incoming.append_column("row_hash", pa.array(hashes, pa.string())).filter(
        pa.array(is_new | is_changed))
    key_type = incoming.schema.field(key).type
    return Changes(inserts=inserts,
                   expire_keys=pa.array(np.concatenate([keys[is_changed], gone]), key_type),
                   inserted=int(is_new.sum()), updated=int(is_changed.sum()),
                   expired=len(gone))


def _plain(values: pd.Series) -> np.ndarray:
    """Keys as a plain numpy array: int64 for integer keys, objects for text."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64)
    return values.to_numpy(dtype=object)


def _as_key_type(text: pd.Series, dtype: np.dtype) -> np.ndarray:
    """Bad rows' keys (text) in the key's type; a key that does not parse matches nothing."""
    if np.issubdtype(dtype, np.integer):
        digits = text[text.str.fullmatch(r"-?\d{1,18}")].to_numpy(dtype=object)
        return pa.array(digits, pa.string()).cast(pa.int64()).to_numpy()
    return text.to_numpy(dtype=object)
