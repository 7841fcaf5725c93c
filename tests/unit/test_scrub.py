"""Erasing customers from a raw CSV file (minilake.erasure.scrub): the rows of the ids asked
for lose their personal fields, every other byte stays, whatever the number of ids asked for
and however the file writes an id. The expectation is read back with the csv module."""

from __future__ import annotations

import csv
import io
import random

import pytest

from minilake.erasure.scrub import (
    ARROW_FROM,
    DIGITS_UP_TO,
    PLACEHOLDERS,
    _holding_digits,
    _present,
    scrub_csv,
)
from minilake.formats.spans import csv_records, record_starts_at

COLUMNS = ["customer_id", "first_name", "last_name", "gender", "email", "membership_status",
           "address", "phone_number", "date_of_birth"]


def customers(ids: list[str]) -> list[dict]:
    return [{"customer_id": i, "first_name": f"First{n}", "last_name": f"Last{n}", "gender": "F",
             "email": f"p{n}@example.com", "membership_status": "Gold",
             "address": f"{n} Main St\nTown, ST 0{n:04d}", "phone_number": f"555-01{n:02d}",
             "date_of_birth": "1980-02-03"} for n, i in enumerate(ids)]


def written(rows: list[dict], quoting: int = csv.QUOTE_ALL) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, quoting=quoting, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def check_erased(before: bytes, after: bytes, erased: set[int]) -> None:
    """Rows of ``erased`` ids carry the placeholders; every other row is as it was."""
    old = list(csv.DictReader(io.StringIO(before.decode())))
    new = list(csv.DictReader(io.StringIO(after.decode())))
    assert len(old) == len(new)
    hit = 0
    for a, b in zip(old, new, strict=True):
        if int(a["customer_id"].strip()) in erased:
            hit += 1
            assert {c: b[c] for c in PLACEHOLDERS if c in b} == {
                c: PLACEHOLDERS[c] for c in PLACEHOLDERS if c in b}
            assert {c: b[c] for c in ("customer_id", "gender", "membership_status")} == {
                c: a[c] for c in ("customer_id", "gender", "membership_status")}
        else:
            assert a == b
    assert hit == sum(1 for a in old if int(a["customer_id"].strip()) in erased)


def test_many_ids_asked_for_few_present():
    rng = random.Random(7)
    ids = [str(rng.randrange(10**15, 10**16)) for _ in range(300)]
    data = written(customers(ids))
    present = {int(ids[3]), int(ids[250])}
    absent = {rng.randrange(10**15, 10**16) for _ in range(200)} - {int(i) for i in ids}
    asked = present | absent
    spans = next(csv_records(data))
    assert _present(data, spans, 0, asked) == present        # one pass finds just these
    after = scrub_csv(data, asked)
    check_erased(data, after, present)
    assert scrub_csv(data, absent) == data                    # none there: not a byte changed
    check_erased(data, scrub_csv(data, {int(ids[3])}), {int(ids[3])})    # a pass for one id


@pytest.mark.parametrize("form", [" {}", "{} ", "+{}", "00{}"])
def test_an_id_written_another_way_is_still_erased(form):
    """An id not written as plain digits: looked for in the bytes, as before, so erased;
    with few ids asked for, its digits are found in the bytes and its record read."""
    ids = ["1000000000000001", "1000000000000002", "1000000000000003"]
    rows = customers(ids)
    rows[1]["customer_id"] = form.format(ids[1])
    data = written(rows, quoting=csv.QUOTE_MINIMAL)
    asked = {int(ids[1])} | {2 * 10**15 + k for k in range(ARROW_FROM)}   # enough for Arrow's pass
    assert _present(data, next(csv_records(data)), 0, asked) is None
    check_erased(data, scrub_csv(data, asked), {int(ids[1])})
    assert _holding_digits(data, {int(ids[1])}) == [data.index(form.format(ids[1]).encode())]
    check_erased(data, scrub_csv(data, {int(ids[1])}), {int(ids[1])})


def test_an_ids_digits_in_another_customers_fields_erase_nothing_of_theirs():
    """The digits of an erased id in another customer's address (its second line, inside
    quotes) and phone number: that record is read, and left as it was."""
    ids = ["4000000000000001", "4000000000000002", "4000000000000003"]
    rows = customers(ids)
    rows[0]["address"] = f"1 Main St\nRoom {ids[2]}"
    rows[1]["phone_number"] = f"+{ids[2]}"
    data = written(rows)
    assert len(_holding_digits(data, {int(ids[2])})) == 3
    check_erased(data, scrub_csv(data, {int(ids[2])}), {int(ids[2])})


def test_a_short_id_found_in_most_records_goes_to_arrows_pass():
    """An id whose digits are in more than DIGITS_UP_TO records (``7``): Arrow's pass finds
    its record, and only it is erased."""
    ids = [str(7 if n == 40 else 10**15 + 7 * n) for n in range(DIGITS_UP_TO + 10)]
    data = written(customers(ids))
    assert _holding_digits(data, {7}) is None
    check_erased(data, scrub_csv(data, {7}), {7})


def test_a_row_arrow_cannot_read_falls_back_to_the_bytes():
    """A record with a field too many: the Arrow pass gives up, the erasure does not."""
    ids = ["1000000000000011", "1000000000000012"]
    data = written(customers(ids)).replace(b'"1980-02-03"\n"1000000000000012"',
                                           b'"1980-02-03","extra"\n"1000000000000012"', 1)
    asked = {int(ids[1])} | {2 * 10**15 + k for k in range(ARROW_FROM)}
    assert _present(data, next(csv_records(data)), 0, asked) is None
    after = scrub_csv(data, asked)
    assert b"p1@example.com" not in after and b"p0@example.com" in after


@pytest.mark.parametrize("layout", ["bare first", "bare last", "bare middle", "mixed",
                                    "byte-order mark", "CR line ends", "no last line end"])
def test_every_row_of_an_erased_id_is_erased_however_the_file_is_written(layout):
    """Ids bare (not quoted) in any column, quoted and bare in one file, a UTF-8 byte-order
    mark before a quoted header, lines ended by CR alone, a last line with no end: every row
    of the ids asked for is erased (with one id, and with enough for Arrow's pass), every
    other row is as it was."""
    ids = [f"10000000000000{n:02d}" for n in range(6)]
    columns = {"bare first": COLUMNS, "bare middle": [*COLUMNS[1:4], "customer_id", *COLUMNS[4:]],
               "bare last": [*COLUMNS[1:], "customer_id"]}.get(layout, COLUMNS)
    out = io.StringIO()
    quoting = csv.QUOTE_ALL if layout in ("mixed", "byte-order mark") else csv.QUOTE_MINIMAL
    writer = csv.DictWriter(out, fieldnames=columns, quoting=quoting,
                            lineterminator="\r" if layout == "CR line ends" else "\n")
    writer.writeheader()
    writer.writerows(customers(ids))
    data = out.getvalue().encode()
    if layout == "mixed":                           # the 4th and 5th ids bare
        data = data.replace(f'"{ids[3]}"'.encode(), ids[3].encode()).replace(
            f'"{ids[4]}"'.encode(), ids[4].encode())
    if layout == "byte-order mark":
        data = b"\xef\xbb\xbf" + data
    if layout == "no last line end":
        data = data.rstrip(b"\n")
    text = data.removeprefix(b"\xef\xbb\xbf").replace(b"\r", b"\n")
    for erased in ({int(ids[4])}, {int(ids[1]), int(ids[4]), int(ids[5])}):
        for asked in (erased, erased | {2 * 10**15 + k for k in range(ARROW_FROM)}):
            after = scrub_csv(data, asked)
            assert after.startswith(data[:3])                   # the mark, if any, kept
            check_erased(text, after.removeprefix(b"\xef\xbb\xbf").replace(b"\r", b"\n"),
                         erased)


def test_an_id_in_other_digits_is_no_id_whichever_pass_reads_the_file():
    """A field of fullwidth digits is no customer id (the contract reads ASCII digits, and
    rejects it): neither the search by digits nor Arrow's pass erases its row, even with the
    id's own digits elsewhere in the file."""
    ids = ["1000000000000001", "1000000000000002"]
    rows = customers(ids)
    rows[0]["phone_number"] = ids[1]
    rows[1]["customer_id"] = "".join(chr(0xFF10 + int(c)) for c in ids[1])
    data = written(rows)
    for asked in ({int(ids[1])}, {int(ids[1])} | {2 * 10**15 + k for k in range(ARROW_FROM)}):
        assert scrub_csv(data, asked) == data


def test_record_starts_at_any_byte_of_any_record():
    """The record each byte is in (but line ends: a needle is text), with quoted fields over
    several lines (LF, CRLF, CR), against the records csv_records reads one after the other."""
    rng = random.Random(3)
    ids = [str(rng.randrange(10**15, 10**16)) for _ in range(40)]
    rows = customers(ids)
    for n, row in enumerate(rows):
        row["address"] = "\r\n".join(f'{n} "Main" St' for _ in range(n % 4))
    for ending in ("\n", "\r\n", "\r"):
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator=ending)
        writer.writeheader()
        writer.writerows(rows)
        data = out.getvalue().encode()
        starts, pos = [], 0
        for spans in csv_records(data):
            starts.append(pos)
            pos = _end_of(data, spans)
        positions = rng.sample([p for p in range(len(data)) if data[p] not in b"\r\n"], 300)
        expected = sorted({max(s for s in starts if s <= p) for p in positions} - {0})
        assert record_starts_at(data, positions) == expected


def _end_of(data: bytes, spans: list[tuple[int, int, bool]]) -> int:
    """Where the record after the one of ``spans`` starts."""
    end = spans[-1][1] + (1 if spans[-1][2] else 0)
    return end + (2 if data[end:end + 2] == b"\r\n" else 1)
