"""The ledger (``load/ingest.py``'s ``Ledger``): what the ingest log says about each delivered
(file, sha256), on small logs written out here by hand.

Every expected answer is read off the rows by eye (which row finished last, which applied file
has the highest date), not taken from a run: the ledger decides what a run skips, re-applies or
rebuilds, so a wrong answer here is a file applied twice or never.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from minilake.lake.logs import Ledger

T0 = pd.Timestamp("2024-10-10T08:00:00", tz="UTC")


def row(file: str, sha: str, status: str, minute: int, *, source: str = "customer",
        day: str | None = None, reason: str = "", size: float | None = 100,
        mtime_ns: float | None = 5, version: float | None = None) -> dict:
    """One ingest log row, as tables.read_log gives it (the columns the ledger reads)."""
    digits = file.split("_")[1][:8]
    day = day or f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"
    return {"source": source, "file": file, "file_date": dt.date.fromisoformat(day),
            "sha256": sha, "status": status, "reason": reason, "size": size,
            "mtime_ns": mtime_ns, "table_version": version,
            "finished_at": T0 + pd.Timedelta(minutes=minute)}


def ledger(*rows: dict) -> Ledger:
    return Ledger(pd.DataFrame(list(rows)))


def test_the_row_that_finished_last_wins_whatever_the_order_of_the_rows():
    """A file quarantined at 8:05 and applied (same bytes) at 8:09: applied, whichever row the
    log lists first."""
    quarantined = row("customer_20241009.csv", "aa", "quarantined", 5, reason="empty file")
    applied = row("customer_20241009.csv", "aa", "applied", 9)
    for rows in ([quarantined, applied], [applied, quarantined]):
        got = ledger(*rows)
        assert got.status("customer_20241009.csv", "aa") == "applied"
        assert got.reason("customer_20241009.csv", "aa") == ""
        assert len(got.latest) == 1


def test_rows_out_of_order_are_read_in_the_order_they_finished():
    """A log whose rows are not in finishing order (a row that finished first listed last, or
    in the middle): each (file, sha256) is what its row that finished last says, and every
    file is known, not only the first row's."""
    got = ledger(row("customer_20241009.csv", "aa", "quarantined", 1, reason="empty file"),
                 row("customer_20241009.csv", "aa", "applied", 9),
                 row("customer_20241009.csv", "aa", "quarantined", 5, reason="late"),
                 row("sales_20241009.txt", "bb", "applied", 3, source="sales"))
    assert got.status("customer_20241009.csv", "aa") == "applied"
    assert got.reason("customer_20241009.csv", "aa") == ""
    assert got.status("sales_20241009.txt", "bb") == "applied"
    assert got.last_applied("sales") == (dt.date(2024, 10, 9), "sales_20241009.txt")


def test_status_and_reason_are_per_file_and_sha():
    got = ledger(row("customer_20241009.csv", "aa", "applied", 1),
                 row("customer_20241009.csv", "bb", "quarantined", 2, reason="not UTF-8"),
                 row("customer_20241010.csv", "aa", "superseded", 3))
    assert got.status("customer_20241009.csv", "aa") == "applied"
    assert got.status("customer_20241009.csv", "bb") == "quarantined"
    assert got.status("customer_20241010.csv", "aa") == "superseded"
    assert got.reason("customer_20241009.csv", "bb") == "not UTF-8"
    assert got.status("customer_20241009.csv", "cc") is None          # never logged
    assert got.status("customer_20241011.csv", "aa") is None
    with pytest.raises(KeyError):
        got.reason("customer_20241009.csv", "cc")


def test_equal_finish_times_keep_the_log_order():
    """Rows of one (file, sha256) that finished at the same microsecond: the one logged last
    wins. Enough of them that an unstable sort (quicksort, heapsort) would reorder them."""
    statuses = ["quarantined", "applied", "superseded"] * 20
    rows = [row("sales_20241009.txt", "aa", s, 0, source="sales", reason=f"r{i}")
            for i, s in enumerate(statuses)]
    got = ledger(*rows)
    assert got.status("sales_20241009.txt", "aa") == statuses[-1] == "superseded"
    assert got.reason("sales_20241009.txt", "aa") == f"r{len(statuses) - 1}"
    # the same behind a row that finished earlier and is logged after them (the rows are
    # then sorted by time: the sort must keep equal times in the log's order)
    got = ledger(*rows, row("sales_20241009.txt", "aa", "applied", -1, source="sales"))
    assert got.status("sales_20241009.txt", "aa") == "superseded"
    assert got.reason("sales_20241009.txt", "aa") == f"r{len(statuses) - 1}"


def test_applied_sha_is_the_content_applied_last_under_the_name():
    """A resent file: applied with one content, then with another. Quarantined content never
    counts as applied."""
    got = ledger(row("products_20241009.json", "new", "applied", 7, source="product"),
                 row("products_20241009.json", "old", "applied", 2, source="product"),
                 row("products_20241009.json", "bad", "quarantined", 9, source="product"),
                 row("products_20241010.json", "x", "quarantined", 3, source="product"))
    assert got.applied_sha("products_20241009.json") == "new"
    assert got.applied_sha("products_20241010.json") is None          # never applied
    assert got.applied_sha("products_20241011.json") is None          # never logged


def test_an_applied_content_later_superseded_is_not_the_applied_one():
    got = ledger(row("sales_20241009.txt", "old", "applied", 1, source="sales"),
                 row("sales_20241009.txt", "new", "applied", 2, source="sales"),
                 row("sales_20241009.txt", "new", "superseded", 3, source="sales"))
    assert got.applied_sha("sales_20241009.txt") == "old"


def test_last_applied_is_the_highest_date_then_name_not_the_last_logged():
    """A late file (dated 8th, applied after the 10th) does not move the source's last file;
    two files of one date are ordered by name; quarantined files and other sources do not
    count."""
    got = ledger(
        row("sales_20241009.txt", "a", "applied", 1, source="sales"),
        row("sales_20241010.json", "b", "applied", 2, source="sales"),
        row("sales_20241010.txt", "c", "applied", 3, source="sales"),
        row("sales_20241008.txt", "d", "applied", 4, source="sales"),            # late
        row("sales_20241012.txt", "e", "quarantined", 5, source="sales"),
        row("customer_20241011.csv", "f", "applied", 6),
        row("customer_20241007.csv", "g", "applied", 7),
    )
    assert got.last_applied("sales") == (dt.date(2024, 10, 10), "sales_20241010.txt")
    assert got.last_applied("customer") == (dt.date(2024, 10, 11), "customer_20241011.csv")
    assert got.last_applied("product") is None


def test_last_applied_when_the_first_row_is_the_highest():
    """The highest file logged first, lower ones after: still the highest."""
    got = ledger(row("sales_20241012.txt", "a", "applied", 1, source="sales"),
                 row("sales_20241009.txt", "b", "applied", 2, source="sales"),
                 row("sales_20241010.txt", "c", "applied", 3, source="sales"))
    assert got.last_applied("sales") == (dt.date(2024, 10, 12), "sales_20241012.txt")


def test_trusted_sha_needs_the_same_name_size_and_modification_time():
    got = ledger(row("customer_20241009.csv", "aa", "applied", 1, size=1234, mtime_ns=99),
                 row("customer_20241010.csv", "bb", "quarantined", 2, size=10, mtime_ns=7))
    path = Path("archive/customer/customer_20241009.csv")
    assert got.trusted_sha(path.name, 1234, 99) == "aa"
    assert got.trusted_sha(Path("elsewhere/customer_20241009.csv").name, 1234, 99) == "aa"
    assert got.trusted_sha(path.name, 1235, 99) is None          # grown
    assert got.trusted_sha(path.name, 1234, 100) is None         # touched
    assert got.trusted_sha(Path("archive/customer/customer_20241011.csv").name, 1234, 99) is None
    # a quarantined file is read again: its sha256 is not trusted
    assert got.trusted_sha(Path("customer_20241010.csv").name, 10, 7) is None


def test_rows_without_size_or_time_are_not_trusted():
    """Logs written before size and mtime were kept have them empty: such a file is hashed
    again, not trusted under a made-up size."""
    frame = pd.DataFrame([
        row("customer_20241009.csv", "aa", "applied", 1, size=None, mtime_ns=5),
        row("customer_20241010.csv", "bb", "applied", 2, size=100, mtime_ns=None),
        row("customer_20241011.csv", "cc", "applied", 3, size=100, mtime_ns=5),
    ]).astype({"size": "Int64", "mtime_ns": "Int64"})
    got = Ledger(frame)
    assert got.trusted_sha(Path("customer_20241011.csv").name, 100, 5) == "cc"
    for name in ("customer_20241009.csv", "customer_20241010.csv"):
        for size, mtime in ((100, 5), (0, 5), (100, 0), (0, 0), (-1, 5), (100, -1), (-1, -1)):
            assert got.trusted_sha(Path(name).name, size, mtime) is None
    assert got.applied_sha("customer_20241009.csv") == "aa"     # applied all the same


def test_a_trusted_file_comes_with_its_source_and_date_as_logged():
    """What the archive listing takes for a file applied and unchanged since, without parsing
    its name again: (sha256, source, file date) of its row; None otherwise."""
    now_ns = 1_796_680_629_589_125_903        # a file's time as a file system gives it
    got = ledger(row("customer_20241009.csv", "aa", "applied", 1, size=1234, mtime_ns=now_ns),
                 row("sales_20241010.txt", "bb", "applied", 2, source="sales", size=7,
                     mtime_ns=8),
                 row("customer_20241011.csv", "cc", "quarantined", 3, size=1, mtime_ns=2))
    assert got.trusted("customer_20241009.csv", 1234, now_ns) == ("aa", "customer",
                                                                  dt.date(2024, 10, 9))
    assert got.trusted("sales_20241010.txt", 7, 8) == ("bb", "sales", dt.date(2024, 10, 10))
    assert got.trusted("customer_20241009.csv", 1234, now_ns + 1) is None
    assert got.trusted("customer_20241011.csv", 1, 2) is None


def test_trusted_sha_is_the_latest_applied_content():
    """The same name, size and time logged applied twice (a file put back as it was): the
    content applied last is the one trusted."""
    got = ledger(row("customer_20241009.csv", "new", "applied", 8),
                 row("customer_20241009.csv", "old", "applied", 3))
    assert got.trusted_sha(Path("customer_20241009.csv").name, 100, 5) == "new"


def test_an_empty_log_knows_nothing():
    got = Ledger(pd.DataFrame([row("customer_20241009.csv", "aa", "applied", 1)]).iloc[:0])
    assert got.status("customer_20241009.csv", "aa") is None
    assert got.applied_sha("customer_20241009.csv") is None
    assert got.last_applied("customer") is None
    assert got.trusted_sha(Path("customer_20241009.csv").name, 100, 5) is None


def test_last_version_is_the_highest_a_row_of_the_source_names():
    """The commits after it are those a stopped run left unlogged: the highest version, not
    the last row's (a repair that changed nothing names none), per source."""
    got = ledger(row("customer_20241009.csv", "aa", "applied", 1, version=3),
                 row("customer_20241011.csv", "cc", "applied", 2, version=7),
                 row("customer_20241010.csv", "bb", "applied", 3, version=5),
                 row("customer_20241012.csv", "dd", "applied", 4),
                 row("products_20241009.json", "ee", "applied", 5, source="product",
                     version=1),
                 row("sales_20241009.txt", "ff", "quarantined", 6, source="sales"))
    assert got.last_version("customer") == 7
    assert got.last_version("product") == 1
    assert got.last_version("sales") is None


def test_the_archive_listing_trusts_a_logged_row_only_for_a_name_its_source_owns(tmp_path):
    """The archive listing (ingest.archived_of) takes a file's date from its applied, unchanged
    row without parsing the name again, but only for a name the source owns today: a row
    logged for ``customer_٢٠٢٤١٠١٢.csv`` (Arabic-Indic digits, which an older name pattern
    took) leaves that file out as before, and a row without a sha256 has the file hashed."""
    import hashlib

    from minilake.contract.sources import SOURCES
    from minilake.lake.layout import Layout
    from minilake.load.ingest import archived_of

    folder = tmp_path / "archive" / "customer"
    folder.mkdir(parents=True)
    odd, plain = folder / "customer_٢٠٢٤١٠١٢.csv", folder / "customer_20241013.csv"
    for path in (odd, plain):
        path.write_bytes(b"customer_id\n1\n")
    size, mtime = odd.stat().st_size, odd.stat().st_mtime_ns
    got = archived_of(Layout.of(tmp_path), [SOURCES["customer"]], ledger(
        row("customer_20241012.csv", "aa", "applied", 1, size=size, mtime_ns=mtime) | {
            "file": odd.name},
        row(plain.name, "", "applied", 2, size=size, mtime_ns=plain.stat().st_mtime_ns)))
    assert [(d.name, d.sha256) for d in got["customer"]] == [
        (plain.name, hashlib.sha256(plain.read_bytes()).hexdigest())]
