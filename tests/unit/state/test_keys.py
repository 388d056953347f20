"""Key encoding: byte order is numeric order (ascending and descending), and length prefixes keep keys apart."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from state import keys as K
from state.errors import InvalidUpdateError

i64 = st.integers(-(2**63), 2**63 - 1)


@given(a=i64, b=i64)
def test_signed_ints_sort_in_numeric_order_both_ways(a: int, b: int) -> None:
    """Scenario: any two signed 64-bit ints. We expect byte order to be numeric order, reversed for enc_desc."""
    assert (K.enc_int(a) < K.enc_int(b)) == (a < b)
    assert (K.enc_desc(a) < K.enc_desc(b)) == (a > b)
    assert K.dec_int(K.enc_int(a)) == a and K.dec_desc(K.enc_desc(a)) == a


@given(key=st.text(max_size=30), t=i64, u=i64)
def test_version_keys_of_one_row_sort_by_time_and_never_mix_with_another_row(key: str, t: int, u: int) -> None:
    """Scenario: versions of key and of key+"x". We expect time order within a row and no shared prefix."""
    assert (K.version_key("v", key, t) < K.version_key("v", key, u)) == (t < u)
    assert not K.version_key("v", key + "x", t).startswith(K.version_prefix("v", key))


def test_out_of_range_ints_and_long_keys_are_refused() -> None:
    """Scenario: a 65-bit int, a 70 kB key. We expect InvalidUpdateError, not a silently wrapped key."""
    with pytest.raises(InvalidUpdateError):
        K.enc_int(2**63)
    with pytest.raises(InvalidUpdateError):
        K.lp("x" * 70_000)


@given(prefix=st.binary(min_size=1, max_size=6).filter(lambda p: p.strip(b"\xff")), rest=st.binary(max_size=6))
def test_prefix_end_bounds_every_key_with_the_prefix(prefix: bytes, rest: bytes) -> None:
    """Scenario: any prefix with a byte below 0xFF. We expect every key starting with it below prefix_end,
    prefix_end itself outside the prefix, and an all-0xFF prefix refused (it has no bound)."""
    end = K.prefix_end(prefix)
    assert prefix + rest < end and not end.startswith(prefix)
    with pytest.raises(ValueError):
        K.prefix_end(b"\xff\xff")


def test_change_keys_round_trip() -> None:
    """Scenario: a change key. We expect (valid_from, orderId, seq) back."""
    prefix = K.change_prefix("customer-summary", "c1")
    assert K.parse_change_key(K.change_key("customer-summary", "c1", -5, "o:1", 7), len(prefix)) == (-5, "o:1", 7)
