"""Byte-exact tokenizers for rewriting files in place (docs/formats.md): a delivery's CSV
records as byte spans of their fields, a JSON array's objects as character spans of their
members, and the one way to splice new text over old spans. What an erasure rewrites is then
the erased fields only, every other byte as it was."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator

_QUOTED = re.compile(rb'"((?:[^"]|"")*)"')
_BARE = re.compile(rb'[^,\r\n"]*')


class Unparseable(Exception):
    """Not CSV as docs/formats.md writes it (a stray quote, say): cannot be rewritten field by
field."""


def text_start(data: bytes) -> int:
    """Where a file's text starts: after a UTF-8 byte-order mark (which Arrow's reader skips,
    so a header after one is still the header)."""
    return len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0


def csv_records(data: bytes, pos: int = 0) -> Iterator[list[tuple[int, int, bool]]]:
    """Each record from byte ``pos`` on as its fields' (start, end, quoted) byte spans, the
    quotes excluded."""
    size = len(data)
    while pos < size:
        fields = []
        while True:
            quoted = _QUOTED.match(data, pos)
            if quoted:
                fields.append((quoted.start(1), quoted.end(1), True))
                pos = quoted.end()
            else:
                bare = _BARE.match(data, pos)
                fields.append((bare.start(), bare.end(), False))
                pos = bare.end()
            if data[pos:pos + 1] == b",":
                pos += 1
                continue
            if data[pos:pos + 2] == b"\r\n":
                pos += 2
            elif data[pos:pos + 1] in (b"\n", b"\r"):
                pos += 1
            elif pos < size:
                raise Unparseable(f"unexpected {data[pos:pos + 1]!r} at byte {pos}")
            break
        yield fields


def record_starts(data: bytes, needles: list[bytes], haystack: bytes | None = None,
                  at_most: int | None = None) -> list[int] | None:
    """Byte offsets of the records (after the header) in which any needle occurs, found
    without tokenizing the whole file: a record starts after a line end outside quotes, that
    is with an even number of quotes before it. ``haystack`` is ``data`` as searched (its
    lower-case copy, to match any letter case). None when the needles occur more than
    ``at_most`` times."""
    haystack = data if haystack is None else haystack
    found = []
    for needle in needles:
        skip = 1 if needle[:1] in (b"\n", b"\r") else 0    # a needle from its line's end on
        at = haystack.find(needle)
        while at != -1:
            found.append(at + skip)
            if at_most is not None and len(found) > at_most:
                return None
            at = haystack.find(needle, at + len(needle))
    return record_starts_at(data, found)


def record_starts_at(data: bytes, positions: list[int]) -> list[int]:
    """The starts of the records (after the header) that the bytes at ``positions`` are in:
    after the line end outside quotes, that is with an even number of quotes before it,
    before each. The quotes are counted in one pass over the file whatever the number of
    positions (a count from the file's start for each took 6 ms a position in a 9 MB file)."""
    starts: set[int] = set()
    counted, quotes = 0, 0              # the quotes in data[:counted]
    for at in sorted(positions):
        start = _line_start(data, at)
        while start:
            if start >= counted:
                quotes += data.count(b'"', counted, start)
                counted = start
                before = quotes
            else:                       # a line of a record already begun: back a little
                before = quotes - data.count(b'"', start, counted)
            if before % 2 == 0:
                break
            start = _line_start(data, start - 1)
        starts.add(start)
    return sorted(starts - {0})


def _line_start(data: bytes, end: int) -> int:
    """Where the line that byte ``end`` is on starts: after the last CR or LF before it."""
    return max(data.rfind(b"\n", 0, end), data.rfind(b"\r", 0, end)) + 1


def records_from(data: bytes, starts: list[int]) -> Iterator[list[tuple[int, int, bool]]]:
    """The records beginning at ``starts``, tokenized one by one."""
    for start in starts:
        yield next(csv_records(data, start))


def span_text(data: bytes, span: tuple[int, int, bool]) -> str:
    start, end, quoted = span
    raw = data[start:end]
    return (raw.replace(b'""', b'"') if quoted else raw).decode("utf-8", "replace")


def splice(data, edits: list[tuple[int, int, object]]):
    """``data`` (bytes or text) with each (start, end, new) span replaced: the one splice of
    the tokenizers' spans."""
    out, last = [], 0
    for start, end, text in sorted(edits):
        out += [data[last:start], text]
        last = end
    out.append(data[last:])
    return data[:0].join(out)



_DECODER = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=str)
_SPACE = re.compile(r"\s*")


def skip_space(text: str, i: int) -> int:
    return _SPACE.match(text, i).end()


def json_members(text: str) -> Iterator[list[tuple[str, int, int, int, object]]]:
    """Each object of a JSON array as its members: (key, key start, value start, value end,
    value). Elements that are not objects are skipped."""
    i = skip_space(text, 1 if text.startswith("\ufeff") else 0)
    if text[i:i + 1] != "[":
        raise Unparseable("not a JSON array")
    i = skip_space(text, i + 1)
    while i < len(text) and text[i] != "]":
        if text[i] == "{":
            members, j = [], skip_space(text, i + 1)
            while text[j] != "}":
                key, after = _DECODER.raw_decode(text, j)
                colon = skip_space(text, after)
                start = skip_space(text, colon + 1)
                value, end = _DECODER.raw_decode(text, start)
                members.append((key, j, start, end, value))
                j = skip_space(text, end)
                if text[j] == ",":
                    j = skip_space(text, j + 1)
            yield members
            i = j + 1
        else:
            _, i = _DECODER.raw_decode(text, i)
        i = skip_space(text, i)
        if text[i:i + 1] == ",":
            i = skip_space(text, i + 1)


def scalar_text(value: object) -> str:
    return "" if value is None else str(value) if not isinstance(value, bool) else (
        "true" if value else "false")
