"""Text rows -> (typed good rows, bad rows with reasons). Pure: no I/O (docs/formats.md, MIDP-313).

The pandera schema of the source is run lazily over the text frame, so every failing field of
every row is collected in one pass; its failure cases become one ``errors`` line per bad row.
Good rows are then cast to their typed columns, which cannot fail: the schema has checked that
each value parses the way its column's kind needs.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_
import pyarrow.compute as pc
from pandera.errors import SchemaErrors

from minilake.contract.text import is_blank, parsed, parsing_once
from minilake.formats.readers import TEXT, TextFrame

ARROW_TYPES = {"int": pa_.int64(), "float": pa_.float64(), "date": pa_.date32(),
               "timestamp": pa_.timestamp("us", "UTC"), "text": pa_.string()}


@dataclass
class Validated:
    good: pa_.Table            # typed business columns, file order
    bad: pd.DataFrame          # the raw text of every bad row plus an `errors` column
    bad_keys: pd.Series        # the keys of bad rows as text, where the row has one
    # where each bad row that split into fields stands among the rows (``bad`` lists those
    # first, in this order, then the rows that did not split)
    bad_at: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # the good rows' columns beyond the declaration a contract keeps (docs/contracts.md), as
    # text, empty as null
    extra: dict[str, pa_.Array] = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        return len(self.bad)


def arrow_schema(schema: pa.DataFrameSchema) -> pa_.Schema:
    """The typed columns of a source, from its pandera columns' kinds."""
    return pa_.schema([pa_.field(name, ARROW_TYPES[column.metadata["kind"]],
                                 nullable=not column.metadata["required"])
                       for name, column in schema.columns.items()])


def to_typed(schema: pa.DataFrameSchema, frame: pd.DataFrame, keep: np.ndarray) -> pa_.Table:
    """Cast the rows that passed the schema (``keep``) to typed Arrow columns; empty optional
    text is null. Numbers and dates were parsed by the checks already (:func:`parsed`)."""
    rows = None if keep.all() else pa_.array(keep)
    arrays = []
    for name, column in schema.columns.items():
        kind = column.metadata["kind"]
        if kind in ("int", "float", "date", "timestamp"):
            array = parsed(frame[name], kind, column.metadata["date_format"])
            array = array if rows is None else array.filter(rows)
        else:   # the readers' text is ``string`` already (a filter copies the characters)
            array = pa_.array(frame[name])
            array = (array if rows is None else array.filter(rows)).cast(ARROW_TYPES[kind])
            if kind == "text":
                array = pa_.chunked_array([_blank_as_null(c) for c in _chunks(array)],
                                          ARROW_TYPES[kind])
        arrays.append(array)
    return pa_.Table.from_arrays(arrays, schema=arrow_schema(schema))


def _chunks(array: pa_.Array | pa_.ChunkedArray) -> list[pa_.Array]:
    return array.chunks if isinstance(array, pa_.ChunkedArray) else [array]


def _blank_as_null(text: pa_.Array) -> pa_.Array:
    """Empty text made null by a validity bitmap over the same characters (an ``if_else``
    would copy every string of the column: a gigabyte of a large file)."""
    blank = is_blank(text)
    if not pc.any(blank).as_py():
        return text
    valid = pc.invert(blank).fill_null(False)       # a fresh array: its bits start at 0
    width = 8 if pa_.types.is_large_string(text.type) else 4
    _, offsets, characters = text.buffers()
    offsets = offsets.slice(text.offset * width, (len(text) + 1) * width)
    return pa_.Array.from_buffers(text.type, len(text), [valid.buffers()[1], offsets,
                                                         characters])


def _is_text(dtype) -> bool:
    """pandas text: the readers' Arrow ``string`` (:data:`TEXT`) or pandas' own."""
    if isinstance(dtype, pd.StringDtype):
        return True
    return isinstance(dtype, pd.ArrowDtype) and (pa_.types.is_string(dtype.pyarrow_dtype)
                                                 or pa_.types.is_large_string(dtype.pyarrow_dtype))


def _messages(failures: pd.DataFrame, order: list[str]) -> pd.Series:
    """pandera failure cases -> one '; '-joined message per row index."""
    unplaced = failures[failures["index"].isna()]
    if len(unplaced):
        first = unplaced.iloc[0]
        raise RuntimeError(f"check {first['check']!r} on {first['column']!r} failed as a "
                           f"whole: {first['failure_case']}")
    f = failures.copy()
    row_check = f["schema_context"] == "DataFrameSchema"
    column = f["column"].fillna("").where(~row_check, "")
    check = f["check"].astype(str)
    value = f["failure_case"].map(lambda v: repr(str(v)))
    with_value = check.str.startswith(("not ", "does not "))
    text = (column + ": " + check).where(column != "", check)
    text = text.where(~with_value, text + " " + value)
    f["text"] = text
    f["position"] = column.map({c: i for i, c in enumerate(order)}).fillna(len(order))
    f["row"] = f["index"].astype("int64")
    f = f.sort_values(["row", "position"], kind="stable").drop_duplicates(["row", "text"])
    return f.groupby("row", sort=True)["text"].agg("; ".join)


def reasons(errors: str, columns: list[str]) -> list[str]:
    """An ``errors`` line (:func:`_messages`) back into its reasons, each without the value
    it quotes (``gender: not one of M/F/U '; DROP TABLE users; --'`` is ``gender: not one
    of M/F/U``; a row that could not be split, ``row 7: …``, is ``row: …``). A reason is a
    column's name (or a row number), a colon and its message, then the value as Python's
    ``repr`` writes it, read as such, so a value holding "; " or a column's name stays
    whole."""
    names = "|".join(re.escape(c) for c in sorted(columns, key=len, reverse=True))
    who = rf"(?:{names}|row(?: \d+)?)"
    quoted = r"'(?:[^'\\]|\\.)*'" + "|" + r'"(?:[^"\\]|\\.)*"'     # repr's two forms
    found = re.finditer(rf"({who}): (.*?)(?: (?:{quoted}))?(?=; {who}: |$)", errors,
                        flags=re.DOTALL)
    return [re.sub(r"^row \d+$", "row", m.group(1)) + ": " + m.group(2) for m in found]


def reason_counts(lines, columns: list[str]) -> Counter:
    """Rows per reason (:func:`reasons`) of ``errors`` lines: a row counts once a reason."""
    return Counter(r for line in lines for r in dict.fromkeys(reasons(line, columns)))


def _malformed_rows(text: TextFrame, columns: list[str]) -> pd.DataFrame:
    rows = [{columns[0]: m.text, **{c: "" for c in columns[1:]},
             "errors": f"row{'' if m.line is None else ' ' + str(m.line)}: {m.problem}"}
            for m in text.malformed]
    return pd.DataFrame(rows, columns=[*columns, "errors"]).astype({c: TEXT for c in columns})


def validate(schema: pa.DataFrameSchema, key: str, text: TextFrame) -> Validated:
    """Split a file's rows into typed good rows and bad rows with the reasons they are bad."""
    frame = text.rows.reset_index(drop=True)
    columns = list(schema.columns)
    not_text = [c for c, dtype in frame.dtypes.items() if not _is_text(dtype)]
    if not_text:        # a reader's bug, not the file's: the schemas' checks read text
        raise TypeError(f"{schema.name}: columns not read as text: {', '.join(not_text)}")
    with parsing_once():
        try:
            schema.validate(frame, lazy=True, inplace=True)   # no copy of the frame
            errors = pd.Series(dtype=str)
        except SchemaErrors as failure:
            errors = _messages(failure.failure_cases, columns)
        is_bad = frame.index.isin(errors.index)
        good = to_typed(schema, frame, ~is_bad)
    bad = frame[is_bad].assign(errors=errors.reindex(frame.index[is_bad]).to_numpy())
    if text.malformed:
        bad = pd.concat([bad, _malformed_rows(text, columns)], ignore_index=True)
    bad_keys = bad.loc[bad[key] != "", key] if len(bad) else pd.Series(dtype=str)
    keep = pa_.array(~is_bad) if text.extra else None
    extra = {name: pa_.chunked_array([_blank_as_null(c) for c in _chunks(
                 pa_.chunked_array(_chunks(values), pa_.string()).filter(keep))], pa_.string())
             for name, values in text.extra.items()}
    return Validated(good=good, bad=bad.reset_index(drop=True), bad_keys=bad_keys,
                     bad_at=np.flatnonzero(is_bad), extra=extra)
