"""Raw file -> DataFrame of text, one reader per format of docs/formats.md.

Every field is read as text so that a bad value is kept exactly as it arrived; typing is the
validator's job. A row that cannot be split into the right number of fields does not stop the
file: it is returned as a :class:`Malformed` row for the error report. A file that cannot be
read at all raises :class:`UnreadableFile` with a one-line reason, and goes to quarantine.

One module for the three readers: they share the block guard, the text checks (UTF-8, NUL,
row length, JSON depth) and the malformed-row path; each reader alone is short.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from minilake.lake import storage

# Text as Arrow ``string`` in pandas: pyarrow compute reads these columns without a copy. Not
# pandas' own ``StringDtype("pyarrow")``, which holds only ``large_string``: 64-bit offsets,
# eight bytes a field, half of a 1000x customer file's text in memory.
TEXT = pd.ArrowDtype(pa.string())


class UnreadableFile(Exception):
    """The whole file cannot be read as its source's format (docs/formats.md: quarantine)."""


@dataclass(frozen=True)
class Malformed:
    """A row that could not be split into the source's columns."""

    line: int | None
    text: str
    problem: str


@dataclass
class TextFrame:
    """What a reader returns: the rows as text, in file order, plus rows it could not split.
    Read with ``drift`` (docs/contracts.md), a file's columns may differ from the source's:
    ``extra`` holds the columns it has beyond them (text, in file order, aligned with
    ``rows``), ``missing`` the source's columns it lacks (empty text in ``rows``)."""

    rows: pd.DataFrame
    malformed: list[Malformed] = field(default_factory=list)
    extra: dict[str, pa.ChunkedArray | pa.Array] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)    # what the contract made of them
    widened: dict[str, str] = field(default_factory=dict)   # columns it needs wider: kind

    @property
    def rows_read(self) -> int:
        return len(self.rows) + len(self.malformed)


Reader = Callable[[Path, list[str]], TextFrame]


def _check_columns(found: list[str], expected: list[str], what: str, drift: bool = False
                   ) -> tuple[list[str], list[str]]:
    """The expected columns ``found`` lacks and those it has beyond them; unless ``drift``
    (docs/contracts.md), either makes the file unreadable. A repeated column, or a header of
    one unknown column (a wrong separator), always does."""
    if len(found) == 1 and len(expected) > 1 and found[0] not in expected:
        raise UnreadableFile(f"header is one {what} {found[0][:80]!r}, expected "
                             f"{len(expected)} (wrong separator?)")
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    duplicated = sorted({c for c in found if found.count(c) > 1})
    problems = []
    if missing and not drift:
        problems.append(missing_columns(missing, what))
    if unexpected and not drift:
        problems.append(unexpected_columns(unexpected, what))
    if duplicated:
        problems.append(f"repeated {what} {', '.join(map(repr, duplicated))}")
    if problems:
        raise UnreadableFile("; ".join(problems))
    return missing, unexpected


def unexpected_columns(names: list[str], what: str = "column") -> str:
    """The words a file's unexpected columns are named by (as :func:`_check_columns`)."""
    return f"unexpected {what} {', '.join(map(repr, names))}"


def missing_columns(names: list[str], what: str = "column") -> str:
    """The words a file's missing columns are named by (as :func:`_check_columns`)."""
    return f"missing {what} {', '.join(map(repr, names))}"


def _with_empty(table: pa.Table, missing: list[str]) -> pa.Table:
    """``table`` with a column of empty text for each of ``missing``."""
    for name in missing:
        table = table.append_column(name, pc.fill_null(pa.nulls(table.num_rows, pa.string()),
                                                       ""))
    return table


def _to_frame(table: pa.Table, columns: list[str]) -> pd.DataFrame:
    """Arrow text columns -> pandas columns of :data:`TEXT`, without copying them."""
    return pd.DataFrame({c: pd.arrays.ArrowExtensionArray(table.column(c)) for c in columns},
                        copy=False)


# pyarrow's own default: a file is parsed in blocks of this many bytes, on several threads.
BLOCK_SIZE = 1 << 20
# The longest row (or field) a file may hold: a row longer than a block is parsed again in
# blocks of up to this many bytes, and a longer one makes the file unreadable, rather than
# one block of the whole file (a 2 GB file without a line end once took 10.7 GB).
MAX_ROW_BYTES = int(os.environ.get("MINILAKE_MAX_ROW_MB", "64")) << 20
# The deepest nesting of arrays and objects a JSON file may hold (a record is two levels):
# checked before parsing, so that no parser's recursion limit is ever reached.
MAX_JSON_DEPTH = int(os.environ.get("MINILAKE_MAX_JSON_DEPTH", "64"))
# How far behind the block being handed out (and at least two blocks) the parser's threads are
# done with a file's bytes: their values are copied out.
PARSED_BEHIND = 64 << 20
CR, LF = ord("\r"), ord("\n")
NUL = b"\0"


class _WholeLineEnds:
    """A file's bytes handed to pyarrow's CSV parser in blocks that never end between the CR
    and the LF of a CRLF.

    pyarrow (26.0.1; apache/arrow issue 51368) drops the LF of a CRLF inside a quoted field
    when a read block ends between its two bytes: ``"Port\\r\\nWalkertown"`` comes back as
    ``"Port\\rWalkertown"``, silently. Measured on about 320,000 reads of random quoted files
    at every block size from 8 to 260 bytes: every changed value had such a split, and no read
    without one changed anything; 255,000 reads of ``~`` files (CRLF line ends, multi-byte
    characters at block ends) changed nothing. The parser takes each ``read`` as one block,
    so a block that would end between a CR and its LF ends one byte earlier (or one later, if
    it is one byte long). The file is memory-mapped and each block is a slice of the map:
    nothing is copied; the pages well behind the blocks handed out (the parser's threads are
    done with them: the values are copied out) are let go as it reads on."""

    def __init__(self, mapped: storage.Mapped):
        self.mapped, self.data = mapped, mapped.data
        self.bytes = np.frombuffer(self.data, dtype=np.uint8)
        self.position, self.closed = 0, False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> pa.Buffer:
        start, total = self.position, len(self.bytes)
        end = total if size < 0 else min(total, start + size)
        if 0 < end < total and self.bytes[end - 1] == CR and self.bytes[end] == LF:
            end = end - 1 if end - 1 > start else end + 1
        self.position = end
        self.mapped.release_before(start - max(PARSED_BEHIND, 2 * (end - start)))
        return self.data.slice(start, end - start)

    def close(self) -> None:
        self.closed = True



def _first_row(mapped: storage.Mapped, delimiter: str, quoted: bool) -> list[str]:
    """The fields of a file's first row (its header, or a headerless file's first record),
    read from its first 64 KiB by Python's csv module."""
    head = bytes(mapped.data[:1 << 16]).decode("utf-8-sig", errors="replace")
    rows = csv.reader(io.StringIO(head, newline=""), delimiter=delimiter,
                      quotechar='"' if quoted else None,
                      quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
    return next(rows, [])


def _read_delimited(path: Path, columns: list[str], *, header: bool, delimiter: str,
                    quoted: bool, block_size: int, drift: bool = False) -> TextFrame:
    malformed: list[Malformed] = []

    def keep(row: pacsv.InvalidRow) -> str:
        malformed.append(Malformed(
            row.number, row.text,
            f"row has {row.actual_columns} fields, expected {row.expected_columns}"))
        return "skip"

    size = storage.stat(path)[0]
    if size == 0:
        raise UnreadableFile("empty file")
    mapped = storage.Mapped(path)
    _require_utf8(path, mapped, block_size)
    # read as text: the source's columns, and with ``drift`` whatever the first row holds (a
    # headerless file's fields by count: the last ones missing, or named by their place)
    names, missing = columns, []
    if drift:
        first = _first_row(mapped, delimiter, quoted)
        if header:
            names = list(dict.fromkeys([*columns, *first]))
        elif len(first) < len(columns):
            names, missing = columns[:len(first)], columns[len(first):]
        else:
            names = [*columns, *(f"field_{n}" for n in range(len(columns) + 1,
                                                             len(first) + 1))]

    def parse(block_size: int) -> pa.Table:
        malformed.clear()
        mapped.rewind()
        return pacsv.read_csv(
            pa.PythonFile(_WholeLineEnds(mapped), mode="r"),
            read_options=pacsv.ReadOptions(column_names=None if header else names,
                                           block_size=block_size),
            parse_options=pacsv.ParseOptions(delimiter=delimiter,
                                             quote_char='"' if quoted else False,
                                             newlines_in_values=quoted,
                                             invalid_row_handler=keep),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in names},
                strings_can_be_null=False, quoted_strings_can_be_null=False))

    try:
        try:
            table = parse(block_size)
        except pa.ArrowInvalid as error:
            if not _row_too_long(error):
                raise                                 # not a row longer than a block
            longest = max(block_size, MAX_ROW_BYTES)
            too_long = UnreadableFile(f"a row longer than {longest >> 20} MB, the longest "
                                      f"minilake reads (MINILAKE_MAX_ROW_MB)")
            try:
                table = parse(min(size + 1, longest, 2**31 - 1))
            except pa.ArrowInvalid as again:
                if _row_too_long(again):
                    raise too_long from None
                raise
            # the parser lets a row straddle one block boundary: rows of up to twice the
            # block pass it, so the limit is checked on what it read (fields and separators)
            if _longest_row(table) > longest:
                raise too_long from None
    except pa.ArrowInvalid as error:
        raise UnreadableFile(str(error).splitlines()[0][:300]) from None
    extra = [c for c in table.column_names if c not in columns]
    if header:
        missing, extra = _check_columns(table.column_names, columns, "column", drift)
    if malformed and not len(table):
        counts = sorted({m.problem for m in malformed})
        hint = " (wrong separator?)" if "has 1 fields" in counts[0] else ""
        raise UnreadableFile(f"no row can be split into the {len(names)} columns: "
                             f"{counts[0]}{hint}")
    return TextFrame(_to_frame(_with_empty(table, missing), columns), malformed,
                     {c: table.column(c) for c in extra}, missing)


def _row_too_long(error: pa.ArrowInvalid) -> bool:
    return "straddles" in str(error) or "cannot infer" in str(error)


def _require_utf8(path: Path, mapped: storage.Mapped, block_size: int) -> None:
    """Raise UnreadableFile naming the line and byte where the file stops being text: not
    UTF-8, or a NUL byte (no delivery format holds one; a file of zeros, a sparse hole, is
    refused at its first block instead of being parsed as one endless row).

    Checked before parsing: a row pyarrow cannot decode would otherwise fail inside its
    invalid-row callback. Arrow validates the memory-mapped file as strings of sixteen blocks
    (16 MB at the default block size), each cut where no character goes on (up to three bytes
    later: a valid file is cut between characters, an invalid one leaves a bad piece); the
    pages stay, the parser reads them next. Only a file that fails is decoded again, in
    chunks, to find the place."""
    data, size = mapped.data, 16 * block_size
    octets = np.frombuffer(data, dtype=np.uint8)
    start = 0
    while start < len(data):
        end = min(len(data), start + size)
        for _ in range(3):      # a character's other bytes (10xxxxxx) stay with its first
            if end < len(data) and octets[end] & 0xC0 == 0x80:
                end += 1
        if octets[start:end].min() == 0:
            at = start + int(octets[start:end].argmin())
            line = int(np.count_nonzero(octets[:at] == LF)) + 1 if at < 1 << 28 else None
            where = f"line {line} (byte {at})" if line else f"byte {at}"
            raise UnreadableFile(f"not a text file: a NUL byte at {where}")
        piece = pa.LargeStringArray.from_buffers(
            1, pa.array([0, end - start], pa.int64()).buffers()[1], data.slice(start, end - start))
        try:
            piece.validate(full=True)
        except pa.ArrowInvalid:
            _locate_bad_utf8(path)
        start = end


def _longest_row(table: pa.Table) -> int:
    """The byte length of the longest row of ``table`` as its fields and separators."""
    if table.num_rows == 0 or table.num_columns == 0:
        return 0
    lengths = [pc.binary_length(column) for column in table.columns]
    total = lengths[0]
    for more in lengths[1:]:
        total = pc.add(total, more)
    return int(pc.max(total).as_py() or 0) + table.num_columns - 1


def _locate_bad_utf8(path: Path, chunk: int = 1 << 24) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = lines = 0
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            # the decoder counts its error from the bytes of a character it kept back from
            # the block before (never a newline), not from this block's first byte
            kept = decoder.getstate()[0]
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                seen = kept + block
                at = max(error.start, 0)
                line = lines + seen.count(b"\n", 0, at) + 1
                raise UnreadableFile(f"not UTF-8: byte 0x{seen[at]:02x} at line {line} (byte "
                                     f"{offset - len(kept) + at}); re-export the file as "
                                     "UTF-8") from None
            offset += len(block)
            lines += block.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise UnreadableFile(f"not UTF-8: the file ends inside a character (byte "
                             f"{offset})") from None
    raise UnreadableFile("not UTF-8")     # Arrow said so; the decoder found no place


def read_quoted_csv(path: Path, columns: list[str], *, block_size: int = BLOCK_SIZE,
                    drift: bool = False) -> TextFrame:
    """CSV with a header row, ',' separator, double quotes, newlines inside quoted fields."""
    return _read_delimited(path, columns, header=True, delimiter=",", quoted=True,
                           block_size=block_size, drift=drift)


def read_tilde_lines(path: Path, columns: list[str], *, block_size: int = BLOCK_SIZE,
                     drift: bool = False) -> TextFrame:
    """No header, '~' separator, no quoting, CRLF (or LF) line ends; with ``drift``, its
    columns are told by the first row's number of fields."""
    if storage.stat(path)[0] == 0:
        return TextFrame(pd.DataFrame({c: pd.Series([], dtype=TEXT) for c in columns}))
    return _read_delimited(path, columns, header=False, delimiter="~", quoted=False,
                           block_size=block_size, drift=drift)


class _Number(str):
    """A JSON number (or NaN/Infinity), kept as the literal text it was written as: Python's
    own parse would turn ``1.10`` into ``1.1``, ``1e2`` into ``100.0`` and ``-0`` into ``0``."""


class _Repeated(dict):
    """A JSON object that names a key more than once (Python keeps the last value, silently)."""

    def __init__(self, pairs: list[tuple[str, object]]):
        super().__init__(pairs)
        self.pairs = pairs
        names = [k for k, _ in pairs]
        self.repeated = sorted({k for k in names if names.count(k) > 1})


def _object(pairs: list[tuple[str, object]]) -> dict:
    record = dict(pairs)
    return record if len(record) == len(pairs) else _Repeated(pairs)


class TooDeep(json.JSONDecodeError):
    """JSON nested deeper than ``MAX_JSON_DEPTH`` levels."""


_ALL_BUT_BRACKETS_AND_QUOTES = bytes(b for b in range(256) if b not in b'"[]{}')
OPENING = np.zeros(256, dtype=np.int8)
OPENING[[ord("["), ord("{")]] = 1
OPENING[[ord("]"), ord("}")]] = -1


def json_depth(text: str | bytes) -> int:
    """How deeply arrays and objects nest in a JSON document, found without parsing it (no
    recursion, at the speed of a copy): escaped backslashes and quotes dropped, every byte
    but quotes and brackets dropped, brackets inside strings (between an odd and an even
    quote) dropped, then the highest running count of the rest."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = np.frombuffer(data.translate(None, _ALL_BUT_BRACKETS_AND_QUOTES), dtype=np.uint8)
    if not len(kept):
        return 0
    quotes = kept == ord('"')
    outside = (np.cumsum(quotes) % 2 == 0) & ~quotes
    steps = OPENING[kept[outside]]
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def check_json_depth(text: str | bytes) -> None:
    """Raise :class:`TooDeep` if ``text`` nests deeper than ``MAX_JSON_DEPTH`` levels."""
    if (depth := json_depth(text)) > MAX_JSON_DEPTH:
        raise TooDeep(f"nested {depth} levels deep, more than the {MAX_JSON_DEPTH} minilake "
                      f"reads (MINILAKE_MAX_JSON_DEPTH)", "", 0)


def parse_json(text: str, *, exact: bool, depth_checked: bool = False) -> object:
    """Numbers come back as their literal text: as ``str`` (fast: the whole file's) or, with
    ``exact``, as :class:`_Number`, which also says that they were numbers (five times slower:
    only to describe the records that cannot be read). :class:`TooDeep` past
    ``MAX_JSON_DEPTH`` levels of nesting."""
    if not depth_checked:
        check_json_depth(text)
    number = _Number if exact else str
    return json.loads(text, parse_float=number, parse_int=number, parse_constant=number,
                      object_pairs_hook=_object)


def json_text(value: object) -> str:
    """A value of an exact parse written back as JSON, numbers as they were written."""
    if isinstance(value, _Number):
        return str.__str__(value)
    if isinstance(value, dict):
        pairs = value.pairs if isinstance(value, _Repeated) else value.items()
        return "{" + ", ".join(f"{json.dumps(k)}: {json_text(v)}" for k, v in pairs) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(json_text, value)) + "]"
    return json.dumps(value)


def json_kind(value: object) -> str:
    """What a value of an exact parse is, in JSON's words ('a number', 'an object', …)."""
    if isinstance(value, _Number):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    return {str: "a string", bool: "a boolean", list: "an array", type(None): "null"}[
        type(value)]


def _scalar_text(value: object) -> str | None:
    """A JSON scalar as the text it was written as ('' for null); None for a nested value or
    text that is no UTF-8 (a lone surrogate escape such as ``"\\ud800"``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):          # numbers are str too
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _problem(record: object, columns: list[str], aliases: dict[str, str]) -> str:
    """Why a record of an exact parse cannot be a row ('' when it can)."""
    if not isinstance(record, dict):
        return f"not an object but {json_kind(record)}"
    if isinstance(record, _Repeated):
        return "repeated key " + ", ".join(map(repr, record.repeated))
    unknown = [k for k in record if k not in columns and k not in aliases]
    if unknown:
        return "unexpected key " + ", ".join(map(repr, unknown))
    twice = [f"{alias!r} and {key!r}" for alias, key in aliases.items()
             if alias in record and key in record]
    if twice:
        return "the same key twice: " + ", ".join(twice)
    bad = [c for c in columns if _scalar_text(record.get(c)) is None]
    nested = [c for c in bad if isinstance(record.get(c), dict | list)]
    if nested:
        return "nested value in " + ", ".join(nested)
    return "not UTF-8 text (a lone surrogate escape) in " + ", ".join(bad) if bad else ""


def _json_column(records: list, column: str, unreadable: set[int]) -> pa.Array:
    """One column of the records as text ('' where null or missing); positions of values that
    are no text (nested, lone surrogates) are added to ``unreadable``."""
    values = [r.get(column) if type(r) is dict else None for r in records]
    try:                                        # the usual case: text, numbers and nulls
        return pc.fill_null(pa.array(values, pa.string()), "")
    except (pa.ArrowException, UnicodeEncodeError):
        pass
    texts = []
    for i, value in enumerate(values):
        text = _scalar_text(value)
        if text is None:
            unreadable.add(i)
        texts.append(text or "")
    return pa.array(texts, pa.string())


def read_json_array(path: Path, columns: list[str], *, aliases: dict[str, str] | None = None,
                    absent_ok: bool = False, drift: bool = False) -> TextFrame:
    """A JSON array of flat objects; a missing key reads as empty text, a number as the text
    it was written as. Objects that cannot be rows (not an object, a key twice, a nested
    value) are malformed rows for the error report. ``aliases`` are other spellings of a key
    (``customer-id`` for ``customer_id``); with ``absent_ok`` every key is optional and an
    object with a key of no column is a malformed row (one entry of an erasure request, not
    the file: the others are still applied); without it, such a key is an unreadable file,
    unless read with ``drift``: then a key no record has is a missing column, and a key of
    no column an extra one."""
    if storage.stat(path)[0] == 0:
        raise UnreadableFile("empty file")
    with path.open("rb") as handle:          # a file of zeros (a sparse hole) is not read whole
        head = handle.read(1 << 16)
    if (at := head.find(NUL)) >= 0:
        raise UnreadableFile(f"not a text file: a NUL byte at byte {at}")
    try:
        data = path.read_bytes()
        check_json_depth(data)
        text = data.decode("utf-8-sig")
        del data
        records = parse_json(text, exact=False, depth_checked=True)
    except UnicodeDecodeError as error:
        raise UnreadableFile(f"not UTF-8: {error.reason} at byte {error.start}") from None
    except TooDeep as error:
        raise UnreadableFile(f"JSON {error.msg}") from None
    except json.JSONDecodeError as error:
        raise UnreadableFile(f"not JSON: {error.msg} (line {error.lineno})") from None
    if not isinstance(records, list):
        raise UnreadableFile(f"not a JSON array but "
                             f"{json_kind(parse_json(text, exact=True, depth_checked=True))}")
    if not records:
        return TextFrame(pd.DataFrame({c: pd.Series([], dtype=TEXT) for c in columns}))
    for alias, key in (aliases or {}).items():
        for record in records:
            if type(record) is dict and alias in record and key not in record:
                record[key] = record.pop(alias)
    keys = list(dict.fromkeys(k for r in records if isinstance(r, dict) for k in r))
    missing, extra = [], []
    if absent_ok:
        unreadable = {i for i, r in enumerate(records)
                      if type(r) is not dict or any(k not in columns for k in r)}
    else:
        missing, extra = _check_columns(keys, columns, "key", drift)
        unreadable = {i for i, r in enumerate(records) if type(r) is not dict}
    table = pa.table({c: _json_column(records, c, unreadable) for c in [*columns, *extra]})
    if unreadable:
        exact = parse_json(text, exact=True, depth_checked=True)
        malformed = [Malformed(i + 1, json_text(exact[i])[:1000],
                               _problem(exact[i], [*columns, *extra], aliases or {}))
                     for i in sorted(unreadable)]
        if len(unreadable) == len(records):
            raise UnreadableFile(f"no record can be read: record 1: {malformed[0].problem}")
        keep = np.ones(len(records), dtype=bool)
        keep[sorted(unreadable)] = False
        table = table.filter(pa.array(keep))
    else:
        malformed = []
    return TextFrame(_to_frame(table, columns), malformed,
                     {c: table.column(c) for c in extra}, missing)
