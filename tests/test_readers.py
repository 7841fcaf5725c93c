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
from minilake import storage
from minilake.inbound import readers
from minilake.inbound.readers import (
    BLOCK_SIZE,
    UnreadableFile,
    read_json_array,
    read_quoted_csv,
    read_tilde_lines,
)

MORE = settings(max_examples=5 * settings.default.max_examples)
BOM = b"\xef\xbb\xbf"
PIECES = ["a", "Z", " ", ",", "~", '"', '""', "\r", "\n", "\r\n", "\r\r\n", "é", "€", "😀",
          "\t", "0"]


# One folder for the generated files of every example, removed when the session ends.
SCRATCH = tempfile.TemporaryDirectory(prefix="readers-")


def write(data: bytes) -> Path:
    descriptor, name = tempfile.mkstemp(dir=SCRATCH.name)
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
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator=eol)    # as SPEC §1
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

def test_a_100x_world_with_crlf_addresses_keeps_every_address(tmp_path):
    """The issue's case at the size it was seen: 500,000 customers on day one (100x the sample),
    half of them with CRLF inside their address, three days, read as users run it (1 MiB
    blocks). Every version of every customer holds the address of the raw file of the day it
    began, and no version exists that the raw files do not call for (a changed address would
    make one), counted here from the raw files with Python's csv module.

    Such a world splits few CRLFs at 1 MiB boundaries (none in 10 of the seeds 1 to 12, with
    ~270 boundaries in three files); seed 9 splits one, which today's pyarrow reads wrong."""
    minilake.generate(tmp_path, start="2024-10-09", days=3, customers=500_000, seed=9,
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
