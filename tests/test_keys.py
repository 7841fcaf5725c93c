"""Key lookups on int64 codes must answer exactly what a lookup on the keys themselves answers
(checked against Python dicts and sets)."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from minilake.load.keys import codes, found, positions

digits = st.text(alphabet="0123456789", min_size=1, max_size=19)       # 18+ digits: no code
texts = st.one_of(digits, st.text(alphabet="0123P ", min_size=0, max_size=4))


def expected_positions(keys: list, among: list) -> list[int]:
    first = {}
    for i, key in enumerate(among):
        first.setdefault(key, i)
    return [first.get(key, -1) for key in keys]


def test_leading_zeros_make_other_keys():
    keys, among = pa.array(["007", "7", "12", "0"]), pa.array(["7", "12", "0007", "00"])
    assert positions(keys, among).tolist() == [-1, 0, 1, -1]
    assert found(keys, among).tolist() == [False, True, True, False]
    assert codes(pa.array(["7", "07"])).tolist() == [7 * 18 + 1, 7 * 18 + 2]


def test_text_that_is_not_digits_is_compared_as_text():
    assert codes(pa.array(["P1", "1"])) is None
    assert positions(pa.array(["P1", "P2", "1"]), pa.array(["P2", "1"])).tolist() == [-1, 0, 1]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(digits, max_size=30), st.lists(digits, max_size=30, unique=True))
def test_digit_keys_as_codes_match_a_dict(keys, among):
    got = positions(pa.array(keys, pa.string()), pa.array(among, pa.string()))
    assert got.tolist() == expected_positions(keys, among)
    assert found(pa.array(keys, pa.string()), pa.array(among, pa.string())).tolist() == [
        k in set(among) for k in keys]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(texts, max_size=30), st.lists(texts, max_size=30))
def test_any_text_keys_match_a_dict(keys, among):
    got = positions(pa.array(keys, pa.string()), pa.array(among, pa.string()))
    assert got.tolist() == expected_positions(keys, among)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.integers(-2**63, 2**63 - 1), max_size=30),
       st.lists(st.integers(-2**63, 2**63 - 1), max_size=30, unique=True))
def test_integer_keys_match_a_dict(keys, among):
    got = positions(pa.array(keys, pa.int64()), pa.array(among, pa.int64()))
    assert got.tolist() == expected_positions(keys, among)
    assert found(pa.array(keys, pa.int64()), pa.array(among, pa.int64())).tolist() == [
        k in set(among) for k in keys]
