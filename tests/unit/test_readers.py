"""The readers return every field exactly as written (issue 12), whatever the parser's block
size and wherever a line break, a quote or a multi-byte character falls.

The oracles are independent of minilake: Python's ``csv`` module for the quoted CSV, and the
values the test itself generated (written by hand into the file) for all three formats.
pyarrow parses in blocks (1 MiB by default); the tests force small blocks so that every
boundary case occurs in a few kilobytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import minilake
from minilake.formats import readers
from minilake.formats.readers import (
    BLOCK_SIZE,
    UnreadableFile,
    read_json_array,
    read_quoted_csv,
    read_tilde_lines,
)
from minilake.lake import storage

MORE = settings(max_examples=5 * settings.default.max_examples)
BOM = b"\xef\xbb\xbf"
PIECES = ["a", "Z", " ", ",", "~", '"', '""', "\r", "\n", "\r\n", "\r\r\n", "é", "€", "😀",
          "\t", "0"]


def write(data: bytes) -> Path:
    """A file of ``data`` in the session's temporary folder (tests/conftest.py), removed with
    it: made at import, a folder of its own would be the system's, and stay there whenever the
    process ends without its finalizers (an xdist worker, a mutant's forked session)."""
    descriptor, name = tempfile.mkstemp(prefix="readers-")
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    return Path(name)


def rows_of(frame) -> list[list[str]]:
    return frame.astype(object).values.tolist()


def crlf_splits(data: bytes, block: int) -> int:
    """How many multiples of ``block`` fall between the CR and the LF of a CRLF."""
    return sum(data[k - 1:k + 1] == b"\r\n" for k in range(block, len(data), block))


@st.composite
def block_sizes(draw, data: bytes) -> int:
    """Half the time a size whose first boundary splits a CRLF (the case pyarrow gets
    wrong), else any size from a few bytes to the whole file."""
    splits = [i for i in range(1, len(data)) if data[i - 1:i + 1] == b"\r\n"]
    if splits and draw(st.booleans()):
        return draw(st.sampled_from(splits))
    return draw(st.integers(min_value=4, max_value=len(data) + 1))


field_text = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)


# --- quoted CSV (customer) ----------------------------------------------------------------------

@MORE
@given(columns=st.integers(min_value=1, max_value=5).flatmap(
           lambda n: st.lists(st.lists(field_text, min_size=n, max_size=n), min_size=1,
                              max_size=40)),
       eol=st.sampled_from(["\n", "\r\n"]), bom=st.booleans(), last_eol=st.booleans(),
       data=st.data())
def test_quoted_csv_reads_every_field_as_written(columns, eol, bom, last_eol, data):
    header = [f"c{i}" for i in range(len(columns[0]))]
    text = io.StringIO()
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator=eol)    # as docs/formats.md
    writer.writerows([header, *columns])
    written = text.getvalue() if last_eol else text.getvalue()[:-len(eol)]
    raw = (BOM if bom else b"") + written.encode("utf-8")
    block = data.draw(block_sizes(raw), label="block size")
    event("a CRLF across a block boundary" if crlf_splits(raw, block) else "no CRLF split")
    oracle = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert oracle == [header, *columns]             # the oracle reads what was written
    read = read_quoted_csv(write(raw), header, block_size=block)
    assert not read.malformed
    assert rows_of(read.rows) == oracle[1:]


def test_pages_let_go_behind_the_parser_are_read_again_unchanged(monkeypatch):
    """A file's mapped pages are let go two blocks behind the one being parsed (nothing held
    back for the parser's threads): every field still reads as written."""
    rng = random.Random(12)
    header = [f"c{i}" for i in range(4)]
    rows = [["".join(rng.choices(PIECES, k=rng.randint(0, 30))) for _ in header]
            for _ in range(3000)]
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows([header, *rows])
    raw = text.getvalue().encode("utf-8")
    released = []
    let_go = storage.Mapped.release_before
    monkeypatch.setattr(readers, "PARSED_BEHIND", 0)
    monkeypatch.setattr(storage.Mapped, "release_before",
                        lambda self, end: (released.append(end), let_go(self, end)))
    read = read_quoted_csv(write(raw), header, block_size=8192)
    assert max(released) > len(raw) // 2            # most of the file was let go on the way
    assert not read.malformed and rows_of(read.rows) == rows


def test_a_crlf_across_the_default_block_boundary_in_a_customer_file(tmp_path):
    """The issue's case, placed exactly: the CR of an address's CRLF is the last byte of the
    parser's first 1 MiB block. The whole pipeline stores the address as written."""
    header = ('"customer_id","first_name","last_name","gender","email","membership_status",'
              '"address","phone_number","date_of_birth","job","company","city","state",'
              '"country","language"\n')

    def row(number: int, address: str, job: str = "Engineer") -> str:
        fields = [str(100000000000000 + number), "Ann", "Lee", "F", f"a{number}@b.c",
                  "active", address, "", "1980-01-02", job, "", "", "", "", "en-US"]
        return ",".join(f'"{f}"' for f in fields) + "\n"

    head = header
    n = 0
    while len(head.encode()) < BLOCK_SIZE - 2000:      # rows with LF in their address
        n += 1
        head += row(n, f"{n} Elm St\nSpringfield, IL 62701")
    target = row(n + 2, "643 Mason Port\r\nWalkertown, NE 57401")
    up_to_cr = len(target[:target.index("\r")].encode())
    pad = BLOCK_SIZE - 1 - len((head + row(n + 1, "", job="")).encode()) - up_to_cr
    text = head + row(n + 1, "", job="x" * pad) + target + row(n + 3, "1 Main St")
    data = text.encode()
    assert data[BLOCK_SIZE - 1:BLOCK_SIZE + 1] == b"\r\n", "the CRLF straddles the boundary"
    landing = tmp_path / "landing_zone"
    landing.mkdir()
    (landing / "customer_20241009.csv").write_bytes(data)
    assert minilake.run(tmp_path).ok
    stored = minilake.read_table("customer", root=tmp_path)
    oracle = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(stored) == len(oracle) == n + 3
    expected = {int(r["customer_id"]): r["address"] for r in oracle}
    assert dict(zip(stored["customer_id"], stored["address"].fillna(""), strict=True)) \
        == expected
    assert expected[100000000000000 + n + 2] == "643 Mason Port\r\nWalkertown, NE 57401"


# --- `~` lines (sales) ---------------------------------------------------------------------------

tilde_field = st.lists(st.sampled_from([p for p in PIECES if not set(p) & set("~\r\n")]),
                       min_size=1, max_size=10).map("".join)


@MORE
@given(lines=st.lists(st.lists(tilde_field, min_size=7, max_size=7), min_size=1, max_size=40),
       eols=st.lists(st.sampled_from(["\r\n", "\n"]), min_size=40, max_size=40),
       bom=st.booleans(), last_eol=st.booleans(), data=st.data())
def test_tilde_lines_read_every_field_as_written(lines, eols, bom, last_eol, data):
    columns = [f"c{i}" for i in range(7)]
    written = "".join("~".join(line) + eol for line, eol in zip(lines, eols, strict=False))
    if not last_eol:
        written = written.rstrip("\r\n")
    raw = (BOM if bom else b"") + written.encode("utf-8")
    block = data.draw(block_sizes(raw), label="block size")
    event("a CRLF across a block boundary" if crlf_splits(raw, block) else "no CRLF split")
    read = read_tilde_lines(write(raw), columns, block_size=block)
    assert not read.malformed
    assert rows_of(read.rows) == lines


@given(lines=st.lists(st.lists(tilde_field, min_size=7, max_size=7), min_size=1, max_size=40),
       bad=st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\x80"]),
       data=st.data())
def test_a_byte_that_is_not_utf8_is_named_by_line_and_offset_at_any_block_size(lines, bad,
                                                                                data):
    """The file is checked in pieces of sixteen blocks, each cut before a character's first
    byte: a bad byte in any piece, or a character cut by a piece's end that is then not
    finished, names the first bad byte's line and offset as Python's own decoder finds them."""
    raw = "".join("~".join(line) + "\r\n" for line in lines).encode("utf-8")
    at = data.draw(st.integers(min_value=0, max_value=len(raw)), label="at")
    while 0 < at < len(raw) and raw[at] & 0xC0 == 0x80:    # not inside a character
        at -= 1
    raw = raw[:at] + bad + raw[at:]
    with pytest.raises(UnicodeDecodeError) as decoded:
        raw.decode("utf-8")
    first = decoded.value.start
    line = raw.count(b"\n", 0, first) + 1
    want = f"not UTF-8: byte 0x{raw[first]:02x} at line {line} (byte {first})"
    block = data.draw(block_sizes(raw), label="block size")
    with pytest.raises(UnreadableFile) as error:
        read_tilde_lines(write(raw), [f"c{i}" for i in range(7)], block_size=block)
    assert str(error.value).startswith(want)


# --- JSON arrays (products, API deliveries) ------------------------------------------------------

# A JSON value as written in the file, and the text the reader must return for it.
json_string = st.lists(st.sampled_from(PIECES + ["\\", "/", "\x00", "\u2028", "\x1f"]),
                       max_size=12).map("".join).flatmap(
    lambda s: st.sampled_from([(json.dumps(s), s), (json.dumps(s, ensure_ascii=False), s)]))
json_number = st.one_of(
    st.sampled_from(["0", "-0", "1.10", "1e2", "1E+2", "-12.500", "0.0", "1e400",
                     "12345678901234567890123", "3.141592653589793238462643"]),
    st.integers().map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str)).map(
        lambda s: (s, s))
json_other = st.sampled_from([("null", ""), ("true", "true"), ("false", "false")])


@MORE
@given(records=st.lists(st.lists(st.one_of(json_string, json_number, json_other), min_size=5,
                                 max_size=5), min_size=1, max_size=20),
       indent=st.sampled_from(["", "\n", "\r\n", "\n  ", "\t"]), bom=st.booleans())
def test_json_arrays_read_every_value_as_written(records, indent, bom):
    columns = ["name", "product_id", "price", "description", "creation_date"]
    objects = ["{" + ("," + indent).join(f"{json.dumps(c)}: {written}" for c, (written, _)
                                         in zip(columns, record, strict=True)) + "}"
               for record in records]
    raw = (BOM if bom else b"") + ("[" + indent + ("," + indent).join(objects) + indent
                                   + "]").encode("utf-8")
    read = read_json_array(write(raw), columns)
    assert not read.malformed
    assert rows_of(read.rows) == [[text for _, text in record] for record in records]


@pytest.mark.parametrize(("record", "problem"), [
    ('{"name": "a", "name": "b"}', "repeated key 'name'"),
    ('{"name": "\\ud800x"}', "not UTF-8 text (a lone surrogate escape) in name"),
    ('{"name": {"first": "a"}}', "nested value in name"),
    ('[1.10, 2]', "not an object but an array"),
    ('1.10', "not an object but a number"),
])
def test_json_records_that_cannot_be_rows_are_malformed_and_named(record, problem):
    columns = ["name", "price"]
    good = '{"name": "kept", "price": 1.10}'
    read = read_json_array(write(f"[{good},\n{record}]".encode()), columns)
    assert rows_of(read.rows) == [["kept", "1.10"]]
    [bad] = read.malformed
    assert (bad.line, bad.problem) == (2, problem)
    assert bad.text == record                  # as written: numbers too


# --- at scale -------------------------------------------------------------------------------------

@pytest.mark.long
def test_a_100x_world_with_crlf_addresses_keeps_every_address(tmp_path):
    """The issue's case at the size it was seen: 500,000 customers on day one (100x the sample),
    half of them with CRLF inside their address, two days, read as users run it (1 MiB
    blocks). Every version of every customer holds the address of the raw file of the day it
    began, and no version exists that the raw files do not call for (a changed address would
    make one), counted here from the raw files with Python's csv module.

    Such a world splits few CRLFs at 1 MiB boundaries (none in 10 of the seeds 1 to 12, with
    ~270 boundaries in three days' files); seed 9 splits one, in its second day's file, which
    today's pyarrow reads wrong (the issue's third day, which splits none, is left out: a
    third of the test's time)."""
    minilake.generate(tmp_path, start="2024-10-09", days=2, customers=500_000, seed=9,
                      crlf_addresses=0.5, landing_only=True)
    landing = tmp_path / "landing_zone"
    for path in [*landing.glob("sales_*"), *landing.glob("products_*")]:
        path.unlink()                                   # customers are what this is about
    days = sorted(landing.glob("customer_*.csv"))
    data = [p.read_bytes() for p in days]
    assert sum(crlf_splits(d, BLOCK_SIZE) for d in data) >= 1, \
        "the world must put CRLFs across the parser's block boundaries"
    expected: dict[tuple[int, str], str] = {}          # (customer, first day) -> address
    previous: dict[int, list[str]] = {}
    for path, raw in zip(days, data, strict=True):
        day = dt.datetime.strptime(path.stem.split("_")[1], "%Y%m%d").date().isoformat()
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))[1:]
        today = {int(r[0]): r for r in rows}
        for key, row in today.items():
            if previous.get(key) != row:
                expected[key, day] = row[6]
        previous = today
    del data
    assert sum("\r\n" in a for a in expected.values()) > 100_000

    assert minilake.run(tmp_path).ok
    stored = minilake.read_table("customer", root=tmp_path)
    got = {(k, d.isoformat()): a for k, d, a in zip(
        stored["customer_id"], stored["effective_from"], stored["address"].fillna(""),
        strict=True)}
    assert len(got) == len(stored), "one version per customer and day"
    extra, missing = sorted(got.keys() - expected.keys()), sorted(expected.keys() - got.keys())
    assert not extra, f"{len(extra)} versions no raw file calls for, e.g. {extra[0]}: " \
        f"{got[extra[0]]!r}"
    assert not missing, f"{len(missing)} versions missing, e.g. {missing[0]}"
    wrong = [k for k in expected if got[k] != expected[k]]
    assert not wrong, f"{len(wrong)} addresses differ, e.g. {wrong[0]}: {got[wrong[0]]!r}"


# --- a file that cannot be read: the one-line reason, written out by hand ------------------------

SEVEN = [f"c{i}" for i in range(7)]


def unreadable(reader, data: bytes, columns: list[str], **options) -> str:
    with pytest.raises(UnreadableFile) as error:
        reader(write(data), columns, **options)
    return str(error.value)


@pytest.mark.parametrize(("header", "reason"), [
    ("a;b;c", "header is one column 'a;b;c', expected 3 (wrong separator?)"),
    ('"a","c"', "missing column 'b'"),
    ('"a","b","c","x","y"', "unexpected column 'x', 'y'"),
    ('"c","a","b","a","c"', "repeated column 'a', 'c'"),
    ('"b","x","b"', "missing column 'a', 'c'; unexpected column 'x'; repeated column 'b'"),
])
def test_a_header_that_is_not_the_sources_is_named(header, reason):
    data = (header + "\n" + ",".join(['"1"'] * (header.count(",") + 1)) + "\n").encode()
    assert unreadable(read_quoted_csv, data, ["a", "b", "c"]) == reason


def test_a_one_column_header_that_is_a_column_is_a_missing_column():
    """One column that is one of the expected ones: columns missing, not a separator."""
    assert unreadable(read_quoted_csv, b'"b"\n"1"\n', ["a", "b", "c"]) == "missing column 'a', 'c'"


def test_a_long_one_column_header_is_cut_at_80_characters():
    header = "x" * 100
    assert unreadable(read_quoted_csv, (header + "\n").encode(), ["a", "b"]) == (
        f"header is one column {'x' * 80!r}, expected 2 (wrong separator?)")


def test_empty_files():
    assert unreadable(read_quoted_csv, b"", ["a", "b"]) == "empty file"
    assert unreadable(read_json_array, b"", ["a", "b"]) == "empty file"
    empty = read_tilde_lines(write(b""), SEVEN)          # a day without sales
    assert list(empty.rows.columns) == SEVEN and len(empty.rows) == 0
    assert empty.malformed == [] and empty.rows_read == 0
    assert all(str(t) == "string[pyarrow]" for t in empty.rows.dtypes)


def test_rows_that_do_not_split_are_malformed_rows():
    """Each with its text and its count of fields (pyarrow's parser, on several threads,
    does not know the line)."""
    data = b"1~2~3~4~5~6~7\r\n1~2~3\r\n1~2~3~4~5~6~7~8\r\n1~2~3~4~5~6~7\r\n"
    read = read_tilde_lines(write(data), SEVEN)
    assert rows_of(read.rows) == [list("1234567"), list("1234567")]
    assert [(m.text, m.problem) for m in read.malformed] == [
        ("1~2~3", "row has 3 fields, expected 7"),
        ("1~2~3~4~5~6~7~8", "row has 8 fields, expected 7")]
    assert read.rows_read == 4


def test_a_file_where_no_row_splits_is_unreadable():
    assert unreadable(read_tilde_lines, b"1,2,3,4,5,6,7\n8,9,1,2,3,4,5\n", SEVEN) == (
        "no row can be split into the 7 columns: row has 1 fields, expected 7 "
        "(wrong separator?)")
    assert unreadable(read_tilde_lines, b"1~2\n3~4\n5~6~7\n", SEVEN) == (
        "no row can be split into the 7 columns: row has 2 fields, expected 7")


def huge_row(size: int) -> str:
    """A ``~`` row of seven fields, ``size`` bytes long or a few more."""
    return "~".join(["z" * (size // 7 + 1)] * 7)


@pytest.mark.parametrize("first", [True, False])
def test_a_row_longer_than_a_block_is_read_and_one_far_past_the_limit_is_not(monkeypatch,
                                                                            first):
    """A row of 300 kB read in 1 kB blocks is read again in larger ones; a row of three
    times MINILAKE_MAX_ROW_MB (here 1 MB) makes the file unreadable, saying so. First in the
    file or not."""
    def file(row: str) -> bytes:
        return (f"{row}\n1~2~3~4~5~6~7\n" if first else f"1~2~3~4~5~6~7\n{row}\n").encode()

    long = huge_row(300_000)
    read = read_tilde_lines(write(file(long)), SEVEN, block_size=1024)
    assert sorted(rows_of(read.rows)) == sorted([list("1234567"), long.split("~")])
    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 1 << 20)
    assert unreadable(read_tilde_lines, file(huge_row(3 << 20)), SEVEN, block_size=1024) == (
        "a row longer than 1 MB, the longest minilake reads (MINILAKE_MAX_ROW_MB)")


def test_a_row_half_again_past_the_limit_is_unreadable(monkeypatch):
    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 1 << 20)
    data = f"1~2~3~4~5~6~7\n{huge_row(3 << 19)}\n".encode()
    assert unreadable(read_tilde_lines, data, SEVEN, block_size=1024).startswith(
        "a row longer than 1 MB")
    fits = huge_row((1 << 20) - 64)
    read = read_tilde_lines(write(f"1~2~3~4~5~6~7\n{fits}\n".encode()), SEVEN, block_size=1024)
    assert sorted(rows_of(read.rows)) == sorted([list("1234567"), fits.split("~")])


def test_a_nul_byte_is_named_by_line_and_byte():
    data = b"1~2~3~4~5~6~7\r\n1~2~3\x00~4~5~6~7\r\n"
    assert unreadable(read_tilde_lines, data, SEVEN) == (
        "not a text file: a NUL byte at line 2 (byte 20)")
    assert unreadable(read_tilde_lines, b"\x00" * 64, SEVEN, block_size=4) == (
        "not a text file: a NUL byte at line 1 (byte 0)")
    far = b"a~b~c~d~e~f~g\n" * 20 + b"\x00"           # in the fourth piece of 16 x 4 bytes
    assert unreadable(read_tilde_lines, far, SEVEN, block_size=4) == (
        f"not a text file: a NUL byte at line 21 (byte {len(far) - 1})")
    assert unreadable(read_json_array, b'[{"a": "\x00\x00"}]', ["a"]) == (
        "not a text file: a NUL byte at byte 8")              # the first of them
    assert unreadable(read_json_array, b'\x00[]', ["a"]) == (
        "not a text file: a NUL byte at byte 0")


def test_a_character_cut_by_the_files_end_is_not_utf8():
    assert unreadable(read_tilde_lines, "1~2~3~4~5~6~€".encode()[:-1], SEVEN) == (
        "not UTF-8: the file ends inside a character (byte 14)")


@pytest.mark.parametrize(("text", "chunk"), [
    ("\nline 2\nline 3\n", 1), ("\nline 2\nline 3\n", 2), ("\nline 2\nline 3\n", 3),
    ("\nline 2\nline 3\n", 5), ("\nline 2\nline 3\n", 7), ("\né~line 2\nline 3 €\n", 1 << 24),
])
def test_the_bad_byte_is_found_across_the_decoders_chunks(text, chunk):
    """The place is counted over every chunk read before the one holding the bad byte (the
    file starts with a line end: the first line is counted too)."""
    data = text.encode() + b"x\xff\n"
    at = data.index(b"\xff")
    with pytest.raises(UnreadableFile) as error:
        readers._locate_bad_utf8(write(data), chunk=chunk)
    assert str(error.value) == (f"not UTF-8: byte 0xff at line 4 (byte {at}); re-export the "
                                "file as UTF-8")


@pytest.mark.parametrize(("data", "chunk"), [
    (b"ab\n\xe2\x82xy\n", 1), (b"ab\n\xe2\x82xy\n", 2), (b"ab\n\xe2\x82xy\n", 4),
    (b"ab\n\xe2\x82xy\n", 5),                     # a cut euro sign, then x
    ("\né~line 2\nline 3 €\n".encode() + b"x\xff\n", 5),   # a whole € across two chunks
])
def test_a_bad_byte_after_a_character_across_two_chunks_is_named_where_it_is(data, chunk):
    with pytest.raises(UnicodeDecodeError) as decoded:
        data.decode("utf-8")
    start = decoded.value.start
    line = data.count(b"\n", 0, start) + 1
    with pytest.raises(UnreadableFile) as error:
        readers._locate_bad_utf8(write(data), chunk=chunk)
    assert str(error.value).startswith(f"not UTF-8: byte 0x{data[start]:02x} at line {line} "
                                       f"(byte {start})")


def test_a_file_the_decoder_finds_whole_is_said_not_utf8_all_the_same():
    with pytest.raises(UnreadableFile, match="^not UTF-8$"):
        readers._locate_bad_utf8(write("ok €\n".encode()))


def test_the_line_end_guard_says_it_is_a_readable_file_and_closes():
    guard = readers._WholeLineEnds(storage.Mapped(write(b"a\r\nb")))
    assert guard.readable() is True and guard.closed is False
    assert guard.read(2).to_pybytes() == b"a"          # not between the CR and its LF
    assert guard.read(-1).to_pybytes() == b"\r\nb"
    guard.close()
    assert guard.closed is True


# --- JSON: how a record that cannot be a row, or a file, is described -------------------------

@pytest.mark.parametrize(("text", "kind"), [
    ("1.10", "a number"), ('"x"', "a string"), ("true", "a boolean"), ("false", "a boolean"),
    ("null", "null"), ("[]", "an array"), ("{}", "an object"), ('{"a": 1, "a": 2}', "an object"),
])
def test_json_kind_in_jsons_words(text, kind):
    assert readers.json_kind(readers.parse_json(text, exact=True)) == kind


@pytest.mark.parametrize("text", ["1.10", '"é\\n"', "true", "null", "[1e2, -0, [], {}]",
                                  '{"a": 1.50, "b": [true, null], "a": "x"}', '{"k": {"n": 0}}'])
def test_json_text_writes_an_exact_parse_back_as_written(text):
    """Numbers as they were written, a repeated key kept twice; compared as JSON by Python's
    own parser (numbers as their literal text there too)."""
    written = readers.json_text(readers.parse_json(text, exact=True))

    def literal(value: str) -> str:
        return "#" + value

    def pairs(items: list) -> list:
        return items

    def read(value: str):
        return json.loads(value, parse_float=literal, parse_int=literal,
                          parse_constant=literal, object_pairs_hook=pairs)
    assert read(written) == read(text)


def test_parse_json_keeps_numbers_as_written_and_says_which_were_numbers():
    fast = readers.parse_json('[1.10, "1.10", -0, 1e2, NaN]', exact=False)
    assert fast == ["1.10", "1.10", "-0", "1e2", "NaN"]
    assert {type(v) for v in fast} == {str}              # plain text: no number marks
    exact = readers.parse_json('[1.10, "1.10", NaN]', exact=True)
    assert [isinstance(v, readers._Number) for v in exact] == [True, False, True]


@pytest.mark.parametrize(("text", "depth"), [
    ("1", 0), ("[]", 1), ("[[]]", 2), ('{"a": [{"b": []}]}', 4), ('["[[[", "]"]', 1),
    ('["\\"[[", 1]', 1), ('["\\\\", [2]]', 2), ('[{"a\\\\": "\\\\"}, [[3]]]', 3),
    ("[[], [[]], []]", 3), ('"[{"', 0),
])
def test_json_depth_counts_brackets_outside_strings(text, depth):
    """Against a depth counted by walking Python's own parse of the same text."""
    def walked(value) -> int:
        if isinstance(value, list):
            return 1 + max(map(walked, value), default=0)
        if isinstance(value, dict):
            return 1 + max(map(walked, value.values()), default=0)
        return 0
    assert readers.json_depth(text) == walked(json.loads(text)) == depth
    assert readers.json_depth(text.encode()) == depth


def test_json_depth_of_text_with_a_lone_surrogate():
    """Text that is no UTF-8 (a lone surrogate, as a str may hold) is measured all the same."""
    assert readers.json_depth('["\ud800", [1]]') == 2


def test_json_deeper_than_the_limit_is_unreadable(monkeypatch):
    monkeypatch.setattr(readers, "MAX_JSON_DEPTH", 3)
    readers.check_json_depth("[[[1]]]")                           # 3 levels: read
    with pytest.raises(readers.TooDeep) as error:
        readers.check_json_depth("[[[[1]]]]")
    assert error.value.msg == ("nested 4 levels deep, more than the 3 minilake reads "
                               "(MINILAKE_MAX_JSON_DEPTH)")
    with pytest.raises(readers.TooDeep):
        readers.parse_json("[[[[1]]]]", exact=False)
    readers.parse_json("[[[[1]]]]", exact=False, depth_checked=True)    # checked elsewhere
    assert unreadable(read_json_array, b'[{"a": [[[1]]]}]', ["a"]) == (
        "JSON nested 5 levels deep, more than the 3 minilake reads (MINILAKE_MAX_JSON_DEPTH)")


@pytest.mark.parametrize(("data", "reason"), [
    (b'{"a": 1}', "not a JSON array but an object"),
    (b"1.50", "not a JSON array but a number"),
    (b'"x"', "not a JSON array but a string"),
    (b'[{"a": 1},\n{"a": }]', "not JSON: Expecting value (line 2)"),
    (b'[{"a": "\xff"}]', "not UTF-8: invalid start byte at byte 8"),
    (b'[1, {"a": [2]}]', "no record can be read: record 1: not an object but a number"),
    (b'[{"a": 1, "b": 2}]', "unexpected key 'b'"),
    (b'[{"b": 1}]', "missing key 'a'; unexpected key 'b'"),
])
def test_json_files_that_cannot_be_read_say_why(data, reason):
    assert unreadable(read_json_array, data, ["a"]) == reason


def test_json_with_a_bom_and_an_empty_array():
    read = read_json_array(write(BOM + b'[{"a": 1, "b": null}, {"b": true}]'), ["a", "b"])
    assert rows_of(read.rows) == [["1", ""], ["", "true"]] and not read.malformed
    empty = read_json_array(write(b" [ ] "), ["a", "b"])
    assert list(empty.rows.columns) == ["a", "b"] and len(empty.rows) == 0
    assert all(str(t) == "string[pyarrow]" for t in empty.rows.dtypes)


def test_a_key_no_record_has_reads_as_empty_text():
    """With absent_ok (an erasure request naming everyone by id): the email column is
    empty text, not a column of nulls."""
    read = read_json_array(write(b'[{"customer_id": "7"}, {"customer_id": 8}]'),
                           ["customer_id", "email"], absent_ok=True)
    assert rows_of(read.rows) == [["7", ""], ["8", ""]]
    assert all(str(t) == "string[pyarrow]" for t in read.rows.dtypes)


def test_aliases_and_optional_keys_of_an_erasure_request():
    """``customer-id`` is read as ``customer_id`` unless the record has both; with absent_ok a
    record with an unknown key is a malformed row, the others are read."""
    data = (b'[{"customer-id": "7"}, {"email": "A@b.c"}, {"emial": "x"}, '
            b'{"customer_id": 10, "email": null}, {"email": [1]}]')
    read = read_json_array(write(data), ["customer_id", "email"],
                           aliases={"customer-id": "customer_id"}, absent_ok=True)
    assert rows_of(read.rows) == [["7", ""], ["", "A@b.c"], ["10", ""]]
    assert [(m.line, m.text, m.problem) for m in read.malformed] == [
        (3, '{"emial": "x"}', "unexpected key 'emial'"),
        (5, '{"email": [1]}', "nested value in email")]


def test_an_entry_with_a_key_and_its_alias_says_why_it_is_not_read():
    data = b'[{"customer-id": "8", "customer_id": "9"}, {"customer_id": "7"}]'
    read = read_json_array(write(data), ["customer_id", "email"],
                           aliases={"customer-id": "customer_id"}, absent_ok=True)
    [bad] = read.malformed
    assert bad.problem == "the same key twice: 'customer-id' and 'customer_id'"


def test_without_absent_ok_an_unknown_key_makes_the_file_unreadable():
    data = b'[{"customer_id": "7"}, {"customer_id": "8", "emial": "x"}]'
    assert unreadable(read_json_array, data, ["customer_id"]) == "unexpected key 'emial'"


@pytest.mark.parametrize(("record", "problem"), [
    ('{"name": [1], "price": {"a": 1}}', "nested value in name, price"),
    ('{"price": "\\udfff", "name": "\\ud800"}',
     "not UTF-8 text (a lone surrogate escape) in name, price"),
    ('{"name": [1], "price": "\\ud800"}', "nested value in name"),
    ('{"name": "a", "name": "a", "price": 1, "price": 2}', "repeated key 'name', 'price'"),
    ('{"price": 1, "name": "a", "name": "b"}', "repeated key 'name'"),
    ('"text"', "not an object but a string"),
    ("null", "not an object but null"),
    ("true", "not an object but a boolean"),
])
def test_more_records_that_cannot_be_rows(record, problem):
    read = read_json_array(write(f'[{{"name": "kept", "price": 2}}, {record}]'.encode()),
                           ["name", "price"])
    assert rows_of(read.rows) == [["kept", "2"]]
    assert [(m.line, m.problem) for m in read.malformed] == [(2, problem)]


def test_a_long_malformed_record_is_cut_at_1000_characters():
    record = '{"name": "' + "x" * 2000 + '", "price": [1]}'
    read = read_json_array(write(f'[{{"name": "kept", "price": 2}}, {record}]'.encode()),
                           ["name", "price"])
    [bad] = read.malformed
    assert bad.text == record[:1000]


def test_booleans_and_nulls_beside_nested_values_are_read_as_text():
    """A column with a nested value somewhere: the other values of it are read one by one."""
    data = b'[{"a": true, "b": 1}, {"a": false, "b": [2]}, {"a": null, "b": "x"}]'
    read = read_json_array(write(data), ["a", "b"])
    assert rows_of(read.rows) == [["true", "1"], ["", "x"]]
    assert [(m.line, m.problem) for m in read.malformed] == [(2, "nested value in b")]
