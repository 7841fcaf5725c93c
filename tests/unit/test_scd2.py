"""docs/formats.md row by row, on hand-built tiny files run through the whole pipeline.

Products stand for a full snapshot, sales for a transactional source; each expected table is
written out here by hand.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.landing import products_file, sales_file

import minilake
from minilake.lake.layout import Layout
from minilake.lake.logs import read_log
from minilake.load import scd2
from minilake.load.scd2 import HASH_KEY, diff, float_text, row_hashes

END = "2099-12-31"


def table(root: Path, name: str, columns: list[str]) -> list[tuple]:
    frame = minilake.read_table(name, root=root)
    frame = frame.assign(effective_from=frame["effective_from"].astype(str),
                         expiry_date=frame["expiry_date"].astype(str))
    return sorted(tuple(r) for r in frame[columns].itertuples(index=False))


def versions(root: Path, name: str) -> int:
    from deltalake import DeltaTable
    return DeltaTable(str(root / "tables" / name)).version()


def test_full_snapshot_cases(tmp_path):
    cols = ["product_id", "price", "effective_from", "expiry_date", "is_current"]
    products_file(tmp_path, "2024-01-01", [("P1", "A", 10.0), ("P2", "B", 20.0),
                                           ("P3", "C", 30.0)])
    assert minilake.run(tmp_path).ok
    # day 2: P1 same, P2 other hash, P4 new, P3 absent (deleted upstream)
    products_file(tmp_path, "2024-01-02", [("P1", "A", 10.0), ("P2", "B", 25.0),
                                           ("P4", "D", 40.0)])
    assert minilake.run(tmp_path).ok
    # day 3: P3 comes back, P1's row is bad (stays unchanged), P4 absent (deleted)
    products_file(tmp_path, "2024-01-03", [("P1", "A", "not a price"), ("P2", "B", 25.0),
                                           ("P3", "C", 30.0)])
    assert minilake.run(tmp_path).ok
    assert table(tmp_path, "product", cols) == sorted([
        ("P1", 10.0, "2024-01-01", END, True),
        ("P2", 20.0, "2024-01-01", "2024-01-02", False),
        ("P2", 25.0, "2024-01-02", END, True),
        ("P3", 30.0, "2024-01-01", "2024-01-02", False),
        ("P3", 30.0, "2024-01-03", END, True),
        ("P4", 40.0, "2024-01-02", "2024-01-03", False),
    ])
    on_day_2 = minilake.read_table("product", as_of="2024-01-02", root=tmp_path)
    assert sorted(on_day_2["product_id"]) == ["P1", "P2", "P4"]
    assert on_day_2.set_index("product_id").loc["P2", "price"] == 25.0
    on_day_1 = minilake.read_table("product", as_of=dt.date(2024, 1, 1), root=tmp_path)
    assert sorted(on_day_1["product_id"]) == ["P1", "P2", "P3"]


def test_transactional_cases(tmp_path):
    cols = ["sale_id", "quantity", "total_price", "effective_from", "expiry_date", "is_current"]
    sales_file(tmp_path, "2024-01-01", [("001", 1, "2.50", "2024-01-01"),
                                        ("002", 2, "5.00", "2024-01-01")])
    assert minilake.run(tmp_path).ok
    # day 2: 001 resent unchanged, 002 corrected, 003 new, 004 bad; absent keys stay
    sales_file(tmp_path, "2024-01-02", [("001", 1, "2.50", "2024-01-01"),
                                        ("002", 3, "7.50", "2024-01-01"),
                                        ("003", 4, "10.00", "2024-01-02"),
                                        ("004", 1, "ERROR", "2024-01-02")])
    assert minilake.run(tmp_path).ok
    sales_file(tmp_path, "2024-01-03", [("005", 1, "2.50", "2024-01-03")])
    assert minilake.run(tmp_path).ok
    assert table(tmp_path, "sales", cols) == sorted([
        ("001", 1, 2.5, "2024-01-01", END, True),
        ("002", 2, 5.0, "2024-01-01", "2024-01-02", False),
        ("002", 3, 7.5, "2024-01-02", END, True),
        ("003", 4, 10.0, "2024-01-02", END, True),
        ("005", 1, 2.5, "2024-01-03", END, True),
    ])


def test_reapplying_a_file_changes_nothing(tmp_path):
    products_file(tmp_path, "2024-01-01", [("P1", "A", 10.0)])
    minilake.run(tmp_path)
    before = versions(tmp_path, "product")
    # the same file delivered again under its name: dropped from landing (said once: the
    # archive holds the same bytes), table untouched
    products_file(tmp_path, "2024-01-01", [("P1", "A", 10.0)])
    result = minilake.run(tmp_path)
    assert [p.name for p in result.split.dropped] == ["products_20240101.json"]
    assert any("identical to archive/product/products_20240101.json; dropped" in line
               for line in result.lines())
    assert not any((tmp_path / "landing_zone").iterdir())
    assert minilake.run(tmp_path).split.lines() == ["split: 0 file(s) archived"]
    assert versions(tmp_path, "product") == before
    # and an ingest of the archive alone does nothing either
    assert minilake.ingest(tmp_path).files == []
    assert versions(tmp_path, "product") == before


def test_a_file_without_changes_makes_no_table_version(tmp_path):
    products_file(tmp_path, "2024-01-01", [("P1", "A", 10.0)])
    minilake.run(tmp_path)
    products_file(tmp_path, "2024-01-02", [("P1", "A", 10.0)])
    minilake.run(tmp_path)
    assert versions(tmp_path, "product") == 0
    log = read_log(Layout.of(tmp_path)).sort_values("file")
    assert log["file"].tolist() == ["products_20240101.json", "products_20240102.json"]
    assert log["table_version"].isna().tolist() == [False, True]


M64 = 2**64 - 1
PINNED = -1095766388975916579


def siphash24(key: bytes, data: bytes) -> int:
    """SipHash-2-4, written from the paper (Aumasson & Bernstein), for checking row_hash."""
    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & M64

    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261,
         k1 ^ 0x7465646279746573]

    def sipround() -> None:
        v[0] = (v[0] + v[1]) & M64; v[1] = rotl(v[1], 13) ^ v[0]; v[0] = rotl(v[0], 32)  # noqa: E702
        v[2] = (v[2] + v[3]) & M64; v[3] = rotl(v[3], 16) ^ v[2]  # noqa: E702
        v[0] = (v[0] + v[3]) & M64; v[3] = rotl(v[3], 21) ^ v[0]  # noqa: E702
        v[2] = (v[2] + v[1]) & M64; v[1] = rotl(v[1], 17) ^ v[2]; v[2] = rotl(v[2], 32)  # noqa: E702

    whole = len(data) // 8 * 8
    for i in range(0, whole, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v[3] ^= m
        sipround()
        sipround()
        v[0] ^= m
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v[3] ^= last
    sipround()
    sipround()
    v[0] ^= last
    v[2] ^= 0xFF
    for _ in range(4):
        sipround()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def splitmix64_finish(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def expected_hash(canonical: str) -> int:
    value = splitmix64_finish(siphash24(HASH_KEY.encode(), canonical.encode()))
    return value - 2**64 if value >= 2**63 else value


def test_the_reference_siphash_matches_the_papers_test_vector():
    assert siphash24(bytes(range(16)), bytes(range(15))) == 0xA129CA6149BE45E5


def test_row_hash_is_pinned():
    """row_hash is SipHash-2-4 + splitmix64 of the row's canonical text; it must never change."""
    row = pa.table({"i": pa.array([123456789012345678], pa.int64()),
                    "s": pa.array(["Zoë, \"quoted\"\nline"]),
                    "n": pa.array([None], pa.string()),
                    "f": pa.array([1811.8]),
                    "d": pa.array([dt.date(2024, 10, 9)])})
    canonical = "\x1f".join(["123456789012345678", "Zoë, \"quoted\"\nline", "\\N", "1811.8",
                             "2024-10-09"])
    assert row_hashes(row).to_pylist() == [expected_hash(canonical)]
    # the pin: this literal was taken once; if it ever changes, every table's history breaks
    assert expected_hash(canonical) == PINNED


@pytest.mark.parametrize("value,text", [(0.1 + 0.2, "0.30000000000000004"), (2.5, "2.5"),
                                        (1e20, "1e+20"), (100.0, "100.0"), (-0.0, "-0.0"),
                                        (-12.05, "-12.05"), (float("nan"), "nan")])
def test_row_hash_floats_use_the_shortest_round_trip_text(value, text):
    assert row_hashes(pa.table({"f": [value]})).to_pylist() == [expected_hash(text)]


@pytest.mark.parametrize("value,text", [
    (dt.datetime(2024, 4, 4, 3, 3, 53), "2024-04-04 03:03:53"),
    (dt.datetime(2024, 4, 4), "2024-04-04"),                 # midnight: the date itself
    (dt.datetime(1999, 12, 31, 23, 59, 59), "1999-12-31 23:59:59")])
def test_row_hash_of_a_date_and_time_is_its_iso_text_and_at_midnight_its_date(value, text):
    """docs/contracts.md: a date column widened hashes its old values as it did."""
    stamp = pa.array([value], pa.timestamp("us", "UTC"))
    assert row_hashes(pa.table({"t": stamp})).to_pylist() == [expected_hash(text)]


@pytest.mark.parametrize("value,text", [
    (3.0, "3"), (-0.0, "0"), (0.0, "0"), (-7.0, "-7"),            # whole: the integer it was
    (2.0 ** 53, "9007199254740992"), (2.5, "2.5"), (0.1 + 0.2, "0.30000000000000004"),
    (2.0 ** 53 * 2, "1.8014398509481984e+16"), (1e20, "1e+20"),    # beyond 2^53: a float
    (float("inf"), "inf"), (float("nan"), "nan")])
def test_row_hash_of_a_number_widened_from_an_integer_writes_whole_values_as_integers(
        value, text):
    """docs/contracts.md: an integer column widened to numbers hashes its old values (now
    whole numbers) as it did, and only those columns (``whole``)."""
    row = pa.table({"q": [value], "f": [value]})
    assert row_hashes(row, whole=("q",)).to_pylist() == [
        expected_hash(f"{text}\x1f{repr(value)}")]
    if text.lstrip("-").isdigit():          # as the integer column hashed it before
        assert row_hashes(pa.table({"q": [int(text)]})).to_pylist() == [expected_hash(text)]


@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                          st.integers(-10**15, 10**15).map(lambda c: c / 100)),
                min_size=1, max_size=50))
@settings(max_examples=200, deadline=None, derandomize=True, database=None)
def test_float_text_is_pythons_repr(values):
    assert float_text(np.array(values, dtype=float)).to_pylist() == [repr(float(v))
                                                                      for v in values]


def test_read_table_names_known_tables_when_asked_for_another(tmp_path):
    products_file(tmp_path, "2024-01-01", [("P1", "A", 10.0)])
    minilake.run(tmp_path)
    with pytest.raises(FileNotFoundError, match="product"):
        minilake.read_table("customers", root=tmp_path)
    assert isinstance(minilake.read_table("product", root=tmp_path), pd.DataFrame)


# --- diff() on tables written out by hand (no pipeline run) --------------------------------------

def products(rows: list[tuple]) -> pa.Table:
    """A file's good product rows, typed: (product_id, name, price)."""
    return pa.table({"product_id": pa.array([r[0] for r in rows], pa.string()),
                     "name": pa.array([r[1] for r in rows], pa.string()),
                     "price": pa.array([r[2] for r in rows], pa.float64())})


def product_hash(product_id: str, name: str, price: str) -> int:
    """The row_hash of a product row from the reference SipHash above, never from scd2."""
    return expected_hash("\x1f".join([product_id, name, price]))


def current(keys: list, hashes: list[int], key: str = "product_id",
            key_type: pa.DataType | None = None) -> pa.Table:
    """The current versions as diff() is given them: the key and row_hash only."""
    return pa.table({key: pa.array(keys, key_type or pa.string()),
                     "row_hash": pa.array(hashes, pa.int64())})


CURRENT = current(["P1", "P2", "P3", "P5"], [product_hash("P1", "A", "10.0"),
                                             product_hash("P2", "B", "20.0"),
                                             product_hash("P3", "C", "30.0"),
                                             product_hash("P5", "E", "50.0")])
# P1 unchanged, P2 re-priced, P4 new; P3 and P5 absent (P5 is a bad row of the file)
INCOMING = products([("P4", "D", 40.0), ("P1", "A", 10.0), ("P2", "B", 25.0)])


def test_diff_of_a_snapshot_by_hand():
    changes = diff(CURRENT, INCOMING, "product_id", snapshot=True, bad_keys=pd.Series(["P5"]))
    assert changes.inserts.column_names == ["product_id", "name", "price", "row_hash"]
    assert changes.inserts.to_pylist() == [
        {"product_id": "P4", "name": "D", "price": 40.0,
         "row_hash": product_hash("P4", "D", "40.0")},
        {"product_id": "P2", "name": "B", "price": 25.0,
         "row_hash": product_hash("P2", "B", "25.0")},
    ]
    assert changes.expire_keys.to_pylist() == ["P2", "P3"]      # changed first, then gone
    assert (changes.inserted, changes.updated, changes.expired) == (1, 1, 1)
    assert not changes.empty


def test_diff_of_a_snapshot_without_bad_rows_expires_every_absent_key():
    for bad in (None, pd.Series([], dtype=str)):
        changes = diff(CURRENT, INCOMING, "product_id", snapshot=True, bad_keys=bad)
        assert changes.expire_keys.to_pylist() == ["P2", "P3", "P5"]
        assert (changes.inserted, changes.updated, changes.expired) == (1, 1, 2)


def test_diff_of_transactions_never_expires_absent_keys():
    changes = diff(CURRENT, INCOMING, "product_id", snapshot=False,
                   bad_keys=pd.Series(["P5"]))
    assert [r["product_id"] for r in changes.inserts.to_pylist()] == ["P4", "P2"]
    assert changes.expire_keys.to_pylist() == ["P2"]
    assert (changes.inserted, changes.updated, changes.expired) == (1, 1, 0)


def test_diff_against_an_empty_table_inserts_every_row_in_file_order():
    changes = diff(current([], []), INCOMING, "product_id", snapshot=True)
    assert [r["product_id"] for r in changes.inserts.to_pylist()] == ["P4", "P1", "P2"]
    assert changes.inserts.column("row_hash").to_pylist() == [
        product_hash("P4", "D", "40.0"), product_hash("P1", "A", "10.0"),
        product_hash("P2", "B", "25.0")]
    assert changes.expire_keys.to_pylist() == []
    assert (changes.inserted, changes.updated, changes.expired) == (3, 0, 0)


def test_a_file_that_changes_nothing_is_empty():
    same = products([("P1", "A", 10.0), ("P2", "B", 20.0), ("P3", "C", 30.0),
                     ("P5", "E", 50.0)])
    changes = diff(CURRENT, same, "product_id", snapshot=True)
    assert changes.empty and changes.inserts.num_rows == 0
    assert (changes.inserted, changes.updated, changes.expired) == (0, 0, 0)
    # only an expiry: not empty
    assert not diff(CURRENT, same.slice(1), "product_id", snapshot=True).empty


def test_only_a_new_row_is_not_empty():
    changes = diff(current([], []), products([("P9", "Z", 1.0)]), "product_id",
                   snapshot=False)
    assert not changes.empty and changes.inserted == 1


def customers(ids: list[int]) -> pa.Table:
    return pa.table({"customer_id": pa.array(ids, pa.int64()),
                     "first_name": pa.array(["Ann"] * len(ids))})


def test_bad_rows_keys_match_integer_keys_by_value():
    """customer_id 7 held; the file's bad rows name it as '07' (the same customer), and 'x'
    and a 19-digit number (no customer): 7 stays, 8 (absent) expires."""
    held = current([7, 8], [expected_hash("7\x1fAnn"), expected_hash("8\x1fAnn")],
                   key="customer_id", key_type=pa.int64())
    changes = diff(held, customers([]), "customer_id", snapshot=True,
                   bad_keys=pd.Series(["07", "x", "1234567890123456789", "-5"]))
    assert changes.expire_keys.to_pylist() == [8]
    assert changes.expired == 1
    unchanged = diff(held, customers([7]), "customer_id", snapshot=True,
                     bad_keys=pd.Series(["8"]))
    assert unchanged.empty


def test_bad_text_keys_are_compared_as_text():
    """Text keys: '07' is not '7'."""
    held = current(["7", "07"], [1, 2], key="sale_id")
    changes = diff(held, pa.table({"sale_id": pa.array([], pa.string())}), "sale_id",
                   snapshot=True, bad_keys=pd.Series(["07"]))
    assert changes.expire_keys.to_pylist() == ["7"]


# --- row_hash: canonical text of every type, in chunks -------------------------------------------

def test_row_hash_of_chunked_columns_nulls_and_signed_zero():
    """Columns in several chunks, as a table read from many files holds them; -0.0 is not 0.0
    (its repr differs), a null is \\N whatever the type."""
    table = pa.Table.from_batches([
        pa.record_batch({"i": pa.array([1, None], pa.int64()),
                         "f": pa.array([0.0, -0.0]),
                         "d": pa.array([dt.date(2024, 1, 31), None], pa.date32()),
                         "s": pa.array(["x", ""])}),
        pa.record_batch({"i": pa.array([-3], pa.int64()), "f": pa.array([None], pa.float64()),
                         "d": pa.array([dt.date(1900, 1, 1)], pa.date32()),
                         "s": pa.array([None], pa.string())}),
    ])
    assert row_hashes(table).to_pylist() == [
        expected_hash("1\x1f0.0\x1f2024-01-31\x1fx"),
        expected_hash("\\N\x1f-0.0\x1f\\N\x1f"),
        expected_hash("-3\x1f\\N\x1f1900-01-01\x1f\\N"),
    ]


def test_row_hash_in_chunks_is_the_hash_of_each_row(monkeypatch):
    """Hashed HASH_CHUNK rows at a time (here 2, so 5 rows make 3 chunks): each row keeps its
    own hash, in its place."""
    monkeypatch.setattr(scd2, "HASH_CHUNK", 2)
    values = [f"row {i}" for i in range(5)]
    got = row_hashes(pa.table({"s": values}))
    assert got.type == pa.int64()
    assert got.to_pylist() == [expected_hash(v) for v in values]


def test_row_hash_of_no_rows():
    got = row_hashes(pa.table({"s": pa.array([], pa.string())}))
    assert got.type == pa.int64() and len(got) == 0


@pytest.mark.parametrize("cents", [1, 5, 10, 50, 99, 100, 101, 12345, 7 * 10**15 - 1,
                                   7 * 10**15, 7 * 10**15 + 1])
def test_float_text_of_whole_cents_is_pythons_repr(cents):
    """Both signs of each, and the cents digits of every kind (0, 05, 5, 12)."""
    for value in (cents / 100, -cents / 100):
        assert float_text(np.array([value])).to_pylist() == [repr(value)]


def test_diff_against_a_table_of_one_key():
    """One current version, a file with it changed and a new key: the new key's place among
    the current ones is -1, which must not be read as a position."""
    held = current(["P1"], [product_hash("P1", "A", "10.0")])
    changes = diff(held, products([("P9", "Z", 1.0), ("P1", "A", 11.0)]), "product_id",
                   snapshot=False)
    assert [r["product_id"] for r in changes.inserts.to_pylist()] == ["P9", "P1"]
    assert changes.expire_keys.to_pylist() == ["P1"]
    assert (changes.inserted, changes.updated) == (1, 1)


@pytest.mark.parametrize("k", [1, 7, 50])
def test_float_text_of_values_near_but_not_whole_cents(k):
    """k/101 rounds to k cents and is not k cents: it needs every digit repr gives it."""
    assert float_text(np.array([k / 101])).to_pylist() == [repr(k / 101)]


def test_float_text_says_nothing_of_nan_infinity_or_huge_values():
    """Comparing NaN, or multiplying 1e308 by 100, warns in numpy unless told not to: a log
    line per file for values that are fine."""
    import warnings

    values = [float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 0.5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float_text(np.array(values)).to_pylist() == [repr(v) for v in values]


# --- diff() against a dictionary oracle, on random snapshots -------------------------------------

def canonical(value) -> str:
    """A value's canonical text (docs/formats.md), written here without scd2."""
    if value is None:
        return "\\N"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def oracle_diff(current_rows: list[tuple], rows: list[dict], key: str, snapshot: bool,
                bad_keys: list[str], key_is_int: bool) -> tuple:
    """SCD2 by the book with dictionaries: (inserted rows with their hash, expired keys in
    order, inserted, updated, expired)."""
    held = dict(current_rows)
    inserts, changed, new = [], [], 0
    for row in rows:
        digest = row_digest(row)
        if row[key] not in held:
            new += 1
        elif held[row[key]] == digest:
            continue
        else:
            changed.append(row[key])
        inserts.append({c: row[c] for c in ["k", *CELLS]} | {"row_hash": digest})
    gone = []
    if snapshot:
        named = [int(t) for t in bad_keys if re.fullmatch(r"-?\d{1,18}", t)] if key_is_int \
            else list(bad_keys)
        present = {row[key] for row in rows} | set(named)
        gone = [k for k, _ in current_rows if k not in present]
    return inserts, changed + gone, new, len(changed), len(gone)


def row_digest(row: dict) -> int:
    """The row_hash of a row of columns k, t, f, d, i, from the reference SipHash above."""
    return expected_hash("\x1f".join(canonical(row[c]) for c in ["k", *CELLS]))


KEYS = {"int": (st.integers(-20, 20), pa.int64()),
        "digits": (st.text(alphabet="0127", min_size=1, max_size=3), pa.string()),
        "text": (st.text(max_size=3), pa.string())}
CELLS = {"t": (st.one_of(st.none(), st.text(max_size=6)), pa.string()),
         "f": (st.one_of(st.none(), st.floats(allow_nan=False), st.sampled_from([0.0, -0.0])),
               pa.float64()),
         "d": (st.one_of(st.none(), st.dates()), pa.date32()),
         "i": (st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), pa.int64())}


@st.composite
def snapshots(draw):
    """Current versions (some hashed from the very rows that come again, some not) and a
    file's good rows and bad rows' keys: kept, changed, new, vanished and reappearing keys,
    leading zeros, nulls, a bad row naming a good row's key or a current one."""
    kind = draw(st.sampled_from(sorted(KEYS)))
    keys, key_type = KEYS[kind]
    pool = draw(st.lists(keys, max_size=10, unique=True))
    row = st.fixed_dictionaries({n: cell for n, (cell, _) in CELLS.items()})
    earlier = {k: {"k": k, **draw(row)} for k in pool}
    held = draw(st.permutations(pool).map(lambda p: p[:draw(st.integers(0, len(p)))]))
    current_rows = [(k, row_digest(earlier[k]) if draw(st.booleans())
                     else draw(st.integers(-(2**63), 2**63 - 1)))
                    for k in held]
    coming = draw(st.permutations(pool).map(lambda p: p[:draw(st.integers(0, len(p)))]))
    rows = [earlier[k] if draw(st.booleans()) else {"k": k, **draw(row)} for k in coming]
    bad = draw(st.lists(st.one_of(st.sampled_from(pool or ["x"]).map(str),
                                  st.sampled_from(["07", "-3", "x", "", "00", "9" * 19])),
                        max_size=4))
    return kind == "int", key_type, current_rows, rows, bad, draw(st.booleans())


@given(snapshots())
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
def test_diff_equals_scd2_by_the_book(case):
    key_is_int, key_type, current_rows, rows, bad, snapshot = case
    schema = pa.schema([("k", key_type), *((n, t) for n, (_, t) in CELLS.items())])
    held = pa.table({"k": pa.array([k for k, _ in current_rows], key_type),
                     "row_hash": pa.array([h for _, h in current_rows], pa.int64())})
    got = diff(held, pa.Table.from_pylist(rows, schema), "k", snapshot=snapshot,
               bad_keys=pd.Series(bad, dtype=object))
    inserts, expired_keys, inserted, updated, expired = oracle_diff(
        current_rows, rows, "k", snapshot, bad, key_is_int)
    assert got.inserts.to_pylist() == inserts
    assert got.expire_keys.to_pylist() == expired_keys
    assert (got.inserted, got.updated, got.expired) == (inserted, updated, expired)
    assert got.empty == (not inserts and not expired_keys)
