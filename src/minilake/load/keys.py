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

DIGITS_CODED = 17           # 10**17 * 18 + 17 < 2**63


def digit_codes(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(which, codes): which texts are 1 to 17 decimal digits, and the codes of those."""
    length = pc.binary_length(text)
    which = pc.and_(pc.ascii_is_decimal(text), pc.less_equal(length, DIGITS_CODED))
    codes = pc.add(pc.multiply(pc.cast(text.filter(which), pa.int64()), 18),
                   pc.cast(length.filter(which), pa.int64()))
    return which.fill_null(False).to_numpy(zero_copy_only=False), codes.to_numpy()


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
