"""Keys as int64 codes that compare exactly as the keys do, for hash lookups that are several
times quicker than on text (a file's keys against a file's, or against the current versions).

Integer keys are their own codes. Text keys of 1 to 17 decimal digits (sale ids) are coded as
value × 18 + length, which keeps leading zeros apart (``007`` is not ``7``); any other text has
no code and is compared as text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from minilake.contract.text import digit_codes, parse_integer


def codes(keys: pa.Array) -> np.ndarray | None:
    """Every key's code, or None if some key has none."""
    if pa.types.is_integer(keys.type) and not keys.null_count:
        return keys.to_numpy()
    if not (pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type)):
        return None
    which, coded = digit_codes(keys)
    return coded if which.all() else None


def positions(keys: pa.Array, among: pa.Array) -> np.ndarray:
    """For each key, its position in ``among`` (keys that occur there once), or -1."""
    wanted, held = codes(keys), codes(among)
    if wanted is not None and held is not None:
        index = pd.Index(held)
        if index.is_unique:
            return index.get_indexer(wanted)
    return pc.index_in(keys, value_set=among).fill_null(-1).to_numpy()


def found(keys: pa.Array, among: pa.Array) -> np.ndarray:
    """For each key, whether it is in ``among``."""
    wanted, held = codes(keys), codes(among)
    if wanted is not None and held is not None:
        return pd.Index(wanted).isin(held)
    return pc.is_in(keys, value_set=among).fill_null(False).to_numpy(zero_copy_only=False)


# --- key ranges (README.md, the Dask engine): where a key lies on one line of int64 codes ---------

LOWEST = np.iinfo(np.int64).min


def prefix_codes(text: pa.Array) -> np.ndarray:
    """Text -> int64 codes in the texts' own (byte) order: the first 8 bytes of the UTF-8 text,
    zero-padded, read big-endian (texts sharing those bytes share a code). Null: as empty."""
    text = pc.cast(text, pa.string()).fill_null("")
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    head = pc.binary_slice(pc.utf8_rpad(text, 8, padding="\0").cast(pa.binary()), 0, 8)
    offsets = np.frombuffer(head.buffers()[1], np.int32)[head.offset:head.offset + len(head) + 1]
    data = np.frombuffer(head.buffers()[2], np.uint8)[offsets[0]:offsets[-1]]
    return (data.view(">u8").astype(np.uint64) ^ np.uint64(1 << 63)).view(np.int64)


def range_codes(keys: pa.Array, by_value: bool) -> np.ndarray:
    """Each key's place on the line that key ranges cut: an integer key (``by_value``) its value,
    a text key :func:`prefix_codes`. Keys as the file has them (text) or as the table holds
    them (typed); an integer key's text that is no integer is placed lowest (it is a bad row,
    and every copy of it lands in the same range)."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if not by_value:
        return prefix_codes(keys)
    if not pa.types.is_integer(keys.type):
        keys = parse_integer(keys)
    return keys.cast(pa.int64()).fill_null(LOWEST).to_numpy()


def range_of(codes: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The range (0 .. len(bounds)) of each code: range i holds bounds[i-1] <= code < bounds[i]."""
    return np.searchsorted(bounds, codes, side="right")
