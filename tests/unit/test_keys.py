"""Key lookups on int64 codes must answer exactly what a lookup on the keys themselves answers
(checked against Python dicts and sets)."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from minilake.load.keys import (
    codes,
    digit_codes,
    found,
    positions,
    prefix_codes,
    range_codes,
    range_of,
)

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


# --- where the coded path ends: 17 digits, nulls, other types, repeated keys --------------------

def test_seventeen_digits_have_a_code_and_eighteen_do_not():
    """value x 18 + length, written out by hand for the longest coded key."""
    longest = "9" * 17
    assert codes(pa.array([longest, "0"])).tolist() == [int(longest) * 18 + 17, 0 * 18 + 1]
    assert codes(pa.array([longest, "1" * 18])) is None
    assert codes(pa.array(["12", ""])) is None                 # empty text is no digits
    assert codes(pa.array(["12", None], pa.string())) is None


def test_integer_keys_are_their_own_codes_unless_one_is_null():
    assert codes(pa.array([5, -3, 2**62], pa.int64())).tolist() == [5, -3, 2**62]
    assert codes(pa.array([5, None], pa.int64())) is None
    assert codes(pa.array([1.5, 2.0])) is None                  # neither integer nor text
    assert positions(pa.array([5, None, 7], pa.int64()),
                     pa.array([7, 5], pa.int64())).tolist() == [1, -1, 0]


def test_keys_held_twice_are_found_at_their_first_place():
    """``among`` with a key twice (the coded index is not unique): the lookup on the keys
    themselves answers, as a dict keeping the first place would."""
    keys, among = ["12", "7", "9"], ["7", "12", "7", "12"]
    assert positions(pa.array(keys), pa.array(among)).tolist() == expected_positions(keys, among)
    assert found(pa.array(keys), pa.array(among)).tolist() == [True, True, False]


# --- key ranges (README, A distributed engine): the line of int64 codes
# ----------------------------------------------

def expected_prefix(text: str | None) -> int:
    """The first 8 bytes of the UTF-8 text, NUL-padded, as a big-endian unsigned number,
    moved down by 2**63 so that it fits int64 in the same order (Python's own int)."""
    head = (text or "").encode("utf-8")[:8].ljust(8, b"\0")
    return int.from_bytes(head, "big") - 2**63


def test_prefix_codes_by_hand():
    got = prefix_codes(pa.array(["", "A", "AB", "ABCDEFGHIJ", None, "é"], pa.string()))
    assert got.tolist() == [
        -2**63,                                     # eight NULs
        0x41 * 256**7 - 2**63,
        (0x41 * 256 + 0x42) * 256**6 - 2**63,
        int.from_bytes(b"ABCDEFGH", "big") - 2**63,  # past 8 bytes: cut
        -2**63,                                     # null: as empty
        (0xC3 * 256 + 0xA9) * 256**6 - 2**63,       # é is two bytes
    ]


key_text = st.one_of(st.none(), st.text(alphabet="09AZaz~é😀\0 ", max_size=12))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(key_text, min_size=1, max_size=30), st.integers(0, 30), st.booleans())
def test_prefix_codes_match_the_bytes_and_keep_their_order(texts, cut, large):
    """Against Python's bytes, for arrays in pieces, sliced (an offset into a larger array's
    buffers) and as ``large_string``; codes sort as the texts' bytes do."""
    kind = pa.large_string() if large else pa.string()
    at = min(cut, len(texts))
    whole = pa.array(["padding", *texts], kind)
    chunked = pa.chunked_array([whole.slice(1, at), whole.slice(1 + at)], kind)
    want = [expected_prefix(t) for t in texts]
    assert prefix_codes(chunked).tolist() == want
    assert prefix_codes(whole.slice(1)).tolist() == want
    assert range_codes(chunked, by_value=False).tolist() == want
    heads = [(t or "").encode("utf-8")[:8].ljust(8, b"\0") for t in texts]
    for (a, code_a), (b, code_b) in pairwise(zip(heads, want, strict=True)):
        assert (a < b) == (code_a < code_b) and (a == b) == (code_a == code_b)


def test_range_codes_by_value_place_integer_keys_by_their_value():
    lowest = -2**63
    assert range_codes(pa.array(["7", "07", "-3", "x", "", "99999999999999999999"]),
                       by_value=True).tolist() == [7, 7, -3, lowest, lowest, lowest]
    assert range_codes(pa.chunked_array([pa.array([5, None], pa.int64()),
                                         pa.array([-1], pa.int64())]),
                       by_value=True).tolist() == [5, lowest, -1]
    assert range_codes(pa.array([3, 1], pa.int32()), by_value=True).tolist() == [3, 1]


def test_range_of_puts_a_bound_in_the_range_it_opens():
    """range i holds bounds[i-1] <= code < bounds[i]."""
    bounds = np.array([10, 20], np.int64)
    codes_ = np.array([-2**63, 9, 10, 19, 20, 21, 2**63 - 1], np.int64)
    assert range_of(codes_, bounds).tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert range_of(codes_, np.array([], np.int64)).tolist() == [0] * len(codes_)


def test_digit_codes_say_which_texts_are_coded_as_plain_booleans():
    """A null text is no digits: False, not a null the callers would index with."""
    which, coded = digit_codes(pa.array(["12", None, "x", "007"]))
    assert which.dtype == np.bool_ and which.tolist() == [True, False, False, True]
    assert coded.tolist() == [12 * 18 + 2, 7 * 18 + 3]


def test_large_string_keys_are_coded_too():
    assert codes(pa.array(["7", "07"], pa.large_string())).tolist() == [7 * 18 + 1, 7 * 18 + 2]
