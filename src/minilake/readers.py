"""Raw file -> DataFrame of text, one reader per format of SPEC §1.

Every field is read as text so that a bad value is kept exactly as it arrived; typing is the
validator's job. A row that cannot be split into the right number of fields does not stop the
file: it is returned as a :class:`Malformed` row for the error report. A file that cannot be
read at all raises :class:`UnreadableFile` with a one-line reason, and goes to quarantine.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

# pandas' Arrow-backed text: pyarrow compute reads these columns without a copy.
TEXT = pd.StringDtype("pyarrow")


class UnreadableFile(Exception):
    """The whole file cannot be read as its source's format (SPEC §3: quarantine)."""


@dataclass(frozen=True)
class Malformed:
    """A row that could not be split into the source's columns."""

    line: int | None
    text: str
    problem: str


@dataclass
class TextFrame:
    """What a reader returns: the rows as text, in file order, plus rows it could not split."""

    rows: pd.DataFrame
    malformed: list[Malformed] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return len(self.rows) + len(self.malformed)


Reader = Callable[[Path, list[str]], TextFrame]


def _check_columns(found: list[str], expected: list[str], what: str) -> None:
    if len(found) == 1 and len(expected) > 1 and found[0] not in expected:
        raise UnreadableFile(f"header is one {what} {found[0][:80]!r}, expected "
                             f"{len(expected)} (wrong separator?)")
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    duplicated = sorted({c for c in found if found.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing {what} {', '.join(map(repr, missing))}")
    if unexpected:
        problems.append(f"unexpected {what} {', '.join(map(repr, unexpected))}")
    if duplicated:
        problems.append(f"repeated {what} {', '.join(map(repr, duplicated))}")
    if problems:
        raise UnreadableFile("; ".join(problems))


def _to_frame(table: pa.Table, columns: list[str]) -> pd.DataFrame:
    """Arrow text columns -> pandas' Arrow-backed ``string`` columns, without copying them."""
    return pd.DataFrame({c: pd.arrays.ArrowStringArray(table.column(c)) for c in columns},
                        copy=False)


def _read_delimited(path: Path, columns: list[str], *, header: bool, delimiter: str,
                    quoted: bool) -> TextFrame:
    malformed: list[Malformed] = []

    def keep(row: pacsv.InvalidRow) -> str:
        malformed.append(Malformed(
            row.number, row.text,
            f"row has {row.actual_columns} fields, expected {row.expected_columns}"))
        return "skip"

    if path.stat().st_size == 0:
        raise UnreadableFile("empty file")
    _require_utf8(path)
    def parse(block_size: int | None) -> pa.Table:
        malformed.clear()
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=None if header else columns,
                                           block_size=block_size),
            parse_options=pacsv.ParseOptions(delimiter=delimiter,
                                             quote_char='"' if quoted else False,
                                             newlines_in_values=quoted,
                                             invalid_row_handler=keep),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.large_string() for c in columns},
                strings_can_be_null=False, quoted_strings_can_be_null=False))

    try:
        try:
            table = parse(None)
        except pa.ArrowInvalid as error:
            if "straddles" not in str(error) and "cannot infer" not in str(error):
                raise                                 # not a row longer than a block

            table = parse(min(path.stat().st_size + 1, 2**31 - 1))
    except pa.ArrowInvalid as error:
        raise UnreadableFile(str(error).splitlines()[0][:300]) from None
    if header:
        _check_columns(table.column_names, columns, "column")
    if malformed and not len(table):
        counts = sorted({m.problem for m in malformed})
        hint = " (wrong separator?)" if "has 1 fields" in counts[0] else ""
        raise UnreadableFile(f"no row can be split into the {len(columns)} columns: "
                             f"{counts[0]}{hint}")
    return TextFrame(_to_frame(table, columns), malformed)


def _require_utf8(path: Path) -> None:
    """Raise UnreadableFile naming the line and byte where the file stops being UTF-8.

    Checked before parsing: a row pyarrow cannot decode would otherwise fail inside its
    invalid-row callback. Arrow validates the memory-mapped file as one string; only a file that
    fails is decoded again, in chunks, to find the place."""
    size = path.stat().st_size
    with pa.memory_map(str(path)) as mapped:
        whole = pa.LargeStringArray.from_buffers(
            1, pa.array([0, size], pa.int64()).buffers()[1], mapped.read_buffer())
        try:
            whole.validate(full=True)
            return
        except pa.ArrowInvalid:
            pass
    _locate_bad_utf8(path)


def _locate_bad_utf8(path: Path, chunk: int = 1 << 24) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = lines = 0
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                at = max(error.start, 0)
                bad = block[at] if at < len(block) else 0
                line = lines + block.count(b"\n", 0, at) + 1
                raise UnreadableFile(f"not UTF-8: byte 0x{bad:02x} at line {line} (byte "
                                     f"{offset + at}); re-export the file as UTF-8") from None
            offset += len(block)
            lines += block.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise UnreadableFile(f"not UTF-8: the file ends inside a character (byte "
                             f"{offset})") from None
    raise UnreadableFile("not UTF-8")     # Arrow said so; the decoder found no place


def read_quoted_csv(path: Path, columns: list[str]) -> TextFrame:
    """CSV with a header row, ',' separator, double quotes, newlines inside quoted fields."""
    return _read_delimited(path, columns, header=True, delimiter=",", quoted=True)


def read_tilde_lines(path: Path, columns: list[str]) -> TextFrame:
    """No header, '~' separator, no quoting, CRLF (or LF) line ends."""
    if path.stat().st_size == 0:
        return TextFrame(pd.DataFrame({c: pd.Series([], dtype=TEXT) for c in columns}))
    return _read_delimited(path, columns, header=False, delimiter="~", quoted=False)


def _scalar_text(value: object) -> str | None:
    """A JSON scalar as the text it was written as; None for a nested value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return value if isinstance(value, str) else json.dumps(value)
    return None


def read_json_array(path: Path, columns: list[str]) -> TextFrame:
    """A JSON array of flat objects; a missing key reads as empty text."""
    if path.stat().st_size == 0:
        raise UnreadableFile("empty file")
    try:
        records = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise UnreadableFile(f"not UTF-8: {error.reason} at byte {error.start}") from None
    except json.JSONDecodeError as error:
        raise UnreadableFile(f"not JSON: {error.msg} (line {error.lineno})") from None
    if not isinstance(records, list):
        raise UnreadableFile(f"not a JSON array but a {type(records).__name__}")
    if not records:
        return TextFrame(pd.DataFrame({c: pd.Series([], dtype=TEXT) for c in columns}))
    keys = list(dict.fromkeys(k for r in records if isinstance(r, dict) for k in r))
    _check_columns(keys, columns, "key")
    rows, malformed = [], []
    for number, record in enumerate(records, start=1):
        text = {c: _scalar_text(record.get(c)) for c in columns} if isinstance(record, dict) \
            else None
        if text is None or None in text.values():
            problem = ("not an object" if text is None else "nested value in " + ", ".join(
                c for c, v in text.items() if v is None))
            malformed.append(Malformed(number, json.dumps(record)[:1000], problem))
            continue
        rows.append(text)
    if malformed and not rows:
        raise UnreadableFile(f"no record is a flat object: record 1 {malformed[0].problem}")
    frame = pd.DataFrame(rows, columns=columns, dtype=TEXT)
    return TextFrame(frame, malformed)
