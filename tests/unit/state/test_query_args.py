"""Timestamps (ISO with zone or epoch ms, shown both ways) and min_position parsing."""

from __future__ import annotations

import pytest

from state.errors import InvalidPositionError, InvalidTimestampError
from state.query_args import format_iso, format_position, missing, parse_min_position, parse_timestamp


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2026-11-21T15:00:00Z", 1795273200000),
        ("2026-11-21T16:00:00+01:00", 1795273200000),
        ("2026-11-21T15:00:00.0019Z", 1795273200001),
        ("1795273200000", 1795273200000),
        ("-1", -1),
        ("1969-12-31T23:59:59.9995Z", -1),
    ],
)
def test_accepted_timestamps(text: str, expected: int) -> None:
    """Scenario: ISO with Z/offset, fractions, epoch ms. We expect exact ms, fractions floored."""
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["2026-11-21T15:00:00", "yesterday", "2026-13-01T00:00:00Z", "", "1.5"])
def test_refused_timestamps(text: str) -> None:
    """Scenario: no zone, words, impossible dates. We expect a one-line InvalidTimestampError."""
    with pytest.raises(InvalidTimestampError) as info:
        parse_timestamp(text)
    assert "\n" not in str(info.value)


def test_iso_form() -> None:
    """Scenario: answers show ISO. We expect UTC with ms and Z, also before 1970."""
    assert format_iso(1795273200001) == "2026-11-21T15:00:00.001Z"
    assert format_iso(-1) == "1969-12-31T23:59:59.999Z"


def test_min_position_forms() -> None:
    """Scenario: the compact and JSON forms. We expect the same map, and format_position to round-trip."""
    compact = parse_min_position("orders:3:1200,orders:4:88,view.order-status:0:5")
    assert compact == {"orders": {3: 1200, 4: 88}, "view.order-status": {0: 5}}
    assert parse_min_position('{"orders": {"3": 1200, "4": 88}, "view.order-status": {"0": 5}}') == compact
    assert parse_min_position(format_position(compact)) == compact
    assert parse_min_position(None) == {} and parse_min_position(" ") == {}


@pytest.mark.parametrize("text", ["orders:3", "orders:x:1", ":1:2", "orders:1:-3", '{"orders": 5}', "{bad json"])
def test_malformed_min_positions(text: str) -> None:
    """Scenario: missing parts, non-numbers, negatives, bad JSON. We expect InvalidPositionError."""
    with pytest.raises(InvalidPositionError):
        parse_min_position(text)


def test_missing_offsets_per_partition() -> None:
    """Scenario: required vs reached. We expect only the short partitions, by how much."""
    assert missing({"t": {0: 10, 1: 5}}, {"t": {0: 4, 1: 9}}) == {"t": {0: 6}}
    assert missing({"u": {2: 3}}, {}) == {"u": {2: 3}}
