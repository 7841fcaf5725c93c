"""One file's work, cut by key range (docs/formats.md; README.md, the Dask engine): the computation
both engines run.

A file is read once and its rows are cut into key ranges; each range is validated with the
source's pandera schema, hashed and compared with the current versions of that range, and its
new data files are written. Every row of a key lands in the same range (integer keys by value,
text keys by their text), so a key repeated in the file is found within its range and every
copy of it is bad, as in a file validated whole. The local engine runs one range, in this
process; the Dask engine runs several on its workers (``minilake.load.distributed``). Either
way the driver merges what the ranges return (counts, bad rows, Delta actions), writes the error
report and makes the file's one commit (``ingest``).

Ranges are cut only where no current data file straddles the cut: the driver reads the current
files' key statistics (``components``); the reader places its cuts at quantiles of the file's
own keys, moved to the nearest gap between those files. A range then rewrites only its own
files, and the files it writes (in key order) do not overlap another range's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from minilake.contract import schemas
from minilake.contract.drift import Contract
from minilake.contract.sources import ALL_SOURCES, Source
from minilake.formats.readers import TextFrame, UnreadableFile
from minilake.lake import storage
from minilake.load import datafiles, scd2
from minilake.load.keys import range_codes, range_of
from minilake.load.scd2 import Changes, diff
from minilake.load.validate import Validated, validate

EMPTY_SNAPSHOT = "empty, but a full snapshot was expected"


@dataclass
class Part:
    """The rows of one key range of a file, in file order (part 0 also holds the rows that
    could not be split into fields)."""

    index: int
    text: TextFrame
    at: np.ndarray | None = None        # each row's position in the file (None: all, in order)


@dataclass
class Split:
    """A file read and cut: the cuts (sorted codes; range i holds bounds[i-1] <= code <
    bounds[i]) and one part per range."""

    bounds: np.ndarray
    parts: list[Part]
    rows_read: int
    changes: list[str] = field(default_factory=list)     # the file's columns, settled
    extra: list[str] = field(default_factory=list)       # the columns beyond them it keeps
    widened: dict[str, str] = field(default_factory=dict)   # the columns it needs wider


def by_value(source: Source) -> bool:
    """Whether the source's key is compared by value (an integer key) or as text."""
    return source.schema.columns[source.key].metadata["kind"] == "int"


def read(source: Source, path: Path) -> TextFrame:
    """The file's rows as text; UnreadableFile if it cannot be read or a snapshot is empty."""
    text = source.read(path)
    if source.snapshot and text.rows_read == 0:
        raise UnreadableFile(EMPTY_SNAPSHOT)
    return text


def read_split(source_name: str, path: str, components: np.ndarray | None,
               ranges: int, contract: Contract | None = None) -> Split:
    """Read a file and cut its rows into at most ``ranges`` key ranges, never inside one of
    ``components`` (rows of [low, high] code intervals; None: do not cut); ``contract``: the
    source's as the root declares it (docs/contracts.md)."""
    source = ALL_SOURCES[source_name]
    if contract is not None:
        source = dataclasses.replace(source, contract=contract)
    text = read(source, storage.as_path(path))
    if ranges <= 1 or components is None or len(text.rows) < ranges:
        return Split(np.zeros(0, np.int64), [Part(0, text)], text.rows_read, text.changes,
                     list(text.extra), text.widened)
    codes = range_codes(pa.array(text.rows[source.key]), by_value(source))
    bounds = cuts(codes, components, ranges)
    which = range_of(codes, bounds)
    parts = []
    for i in range(len(bounds) + 1):
        at = np.flatnonzero(which == i)
        rows = text.rows.iloc[at].reset_index(drop=True)
        extra = {name: values.take(pa.array(at)) for name, values in text.extra.items()}
        parts.append(Part(i, TextFrame(rows, text.malformed if i == 0 else [], extra), at))
    return Split(bounds, parts, text.rows_read, text.changes, list(text.extra),
                 text.widened)


def cuts(codes: np.ndarray, components: np.ndarray, ranges: int) -> np.ndarray:
    """Up to ``ranges - 1`` cuts at quantiles of ``codes``, each moved out of the component
    (a [low, high] row of ``components``, sorted and disjoint) it falls in, to that
    component's nearer edge (its low, or high + 1)."""
    ordered = np.sort(codes)
    wanted = ordered[[len(ordered) * i // ranges for i in range(1, ranges)]]
    if len(components):
        low, high = components[:, 0], components[:, 1]
        j = np.searchsorted(low, wanted, side="left") - 1
        inside = (j >= 0) & (wanted <= high[np.maximum(j, 0)])
        j = np.maximum(j, 0)
        after = np.minimum(high[j], np.iinfo(np.int64).max - 1) + 1
        nearer = np.where(wanted - low[j] <= after - wanted, low[j], after)
        wanted = np.where(inside, nearer, wanted)
    return np.unique(wanted)


def components(files: list[dict], source: Source) -> np.ndarray | None:
    """The current files' key intervals as codes, overlapping ones merged: rows of [low, high],
    sorted. None if some file has no key statistics (then the table is not cut)."""
    if not files:
        return np.zeros((0, 2), np.int64)
    if any(f.get(f"{end}.{source.key}") is None for f in files for end in ("min", "max")):
        return None
    low, high = _codes(files, source, "min"), _codes(files, source, "max")
    order = np.argsort(low, kind="stable")
    merged: list[list[int]] = []
    for lo, hi in zip(low[order], high[order], strict=True):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return np.array(merged, np.int64)


def files_of(files: list[dict], source: Source, bounds: np.ndarray) -> list[list[dict]]:
    """The current files of each range (a file lies in one range: cuts avoid files)."""
    out: list[list[dict]] = [[] for _ in range(len(bounds) + 1)]
    if not files:
        return out
    low = _codes(files, source, "min") if len(bounds) else np.zeros(len(files), np.int64)
    for file, i in zip(files, range_of(low, bounds), strict=True):
        out[i].append(file)
    return out


def _codes(files: list[dict], source: Source, end: str) -> np.ndarray:
    """The range codes of the files' least (``min``) or greatest (``max``) key."""
    return range_codes(pa.array([f[f"{end}.{source.key}"] for f in files]), by_value(source))


def check(source: Source, part: Part) -> Validated:
    """Validate a part's rows with the source's pandera schema."""
    return validate(source.schema, source.key, part.text)


@dataclass
class Worked:
    """A part validated and compared with the current versions of its range."""

    index: int
    changes: Changes | None         # None in the summary a worker sends the driver
    bad: pd.DataFrame               # bad rows: those that split first, then those that did not
    bad_at: np.ndarray              # file positions of the bad rows that split
    rows_loaded: int
    current_keys: int
    inserted: int = 0
    updated: int = 0
    expired: int = 0
    empty: bool = True
    seconds: dict = field(default_factory=dict)     # where a worker's time went
    in_place: int = 0               # keys updated in place (docs/contracts.md)

    def summary(self) -> Worked:
        """All but the changes (which stay where they were computed, to be written there)."""
        return dataclasses.replace(self, changes=None)


def work(source: Source, table: Path, part: Part, validated: Validated,
         files: list[dict], added: list[str] = ()) -> Worked:
    """Hash a part's good rows and compare them with the current versions in ``files``.
    ``added``: the table's columns beyond the declaration (docs/contracts.md); the rows get
    those and the new ones a contract keeps (empty where the file has none), in that order."""
    good = validated.good
    declared = good.num_columns
    for name in [*added, *sorted(n for n in validated.extra if n not in added)]:
        good = good.append_column(pa.field(name, pa.string()), validated.extra[name]
                                  if name in validated.extra
                                  else pa.nulls(good.num_rows, pa.string()))
    current = datafiles.current_versions(table, source, files,
                                      None if source.snapshot else good.column(source.key))
    whole = schemas.whole(source.schema)
    changes = diff(current, good, source.key, snapshot=source.snapshot,
                   bad_keys=validated.bad_keys, vanished=source.contract.vanished,
                   declared=declared, whole=whole)
    if source.contract.in_place and changes.updated:
        changed = changes.expire_keys[:changes.updated]     # the updated keys come first
        changes = scd2.in_place(changes, datafiles.current_rows(
            table, source, files, changed, datafiles.added_of(source, good.column_names)),
            source.key, source.contract.in_place, declared, whole)
    at = validated.bad_at if part.at is None else part.at[validated.bad_at]
    return Worked(part.index, changes, validated.bad, at, good.num_rows, current.num_rows,
                  changes.inserted, changes.updated, changes.expired, changes.empty,
                  in_place=changes.in_place)


@dataclass
class FileWork:
    """What a file's parts came to, for the driver: counts, the bad rows in file order, and
    how to write the data files (returning their Delta actions; nothing committed)."""

    rows_read: int
    rows_loaded: int
    bad: pd.DataFrame
    inserted: int
    updated: int
    expired: int
    current_keys: int
    empty: bool
    write: Callable[[], list] = field(repr=False, default=list)
    in_place: int = 0
    kinds: dict[str, str] = field(default_factory=dict)     # the table's widened columns
    changes: list[str] = field(default_factory=list)     # the file's columns, settled
    extra: list[str] = field(default_factory=list)       # the columns beyond them it keeps


def merged(rows_read: int, worked: list[Worked], write: Callable[[], list],
           changes: list[str] = (), extra: list[str] = ()) -> FileWork:
    """The parts' outcomes as the file's: bad rows back in file order (those that split),
    then those that did not (part 0's)."""
    if len(worked) == 1:
        bad = worked[0].bad
    else:
        split = [w.bad.iloc[:len(w.bad_at)].set_axis(w.bad_at) for w in worked]
        rest = [w.bad.iloc[len(w.bad_at):] for w in worked]
        bad = pd.concat([pd.concat(split).sort_index(kind="stable"), *rest],
                        ignore_index=True)
    return FileWork(
        rows_read=rows_read, rows_loaded=sum(w.rows_loaded for w in worked), bad=bad,
        inserted=sum(w.inserted for w in worked), updated=sum(w.updated for w in worked),
        expired=sum(w.expired for w in worked),
        current_keys=sum(w.current_keys for w in worked),
        empty=all(w.empty for w in worked), write=write, changes=list(changes),
        extra=list(extra), in_place=sum(w.in_place for w in worked))
