"""Replica lag (issue 12, point 5): 0 once the replica read to the end, although a transaction marker follows the last record."""

from __future__ import annotations

import pytest

from state.replica import partition_lag


@pytest.mark.parametrize(
    "low,high,next_offset,end_seen,expected",
    [
        # One transaction of 3 records (offsets 0-2), its commit marker at 3, high watermark 4; all applied.
        (0, 4, 3, 4, 0),  # was 1 for good: high - next_offset counted the marker
        (0, 4, 3, None, 1),  # the end not reached yet: the marker may still hide a record
        (0, 4, 1, None, 3),  # two records and the marker still to read
        (0, 9, 3, 4, 5),  # a second transaction (4 records + marker) arrived after the end was seen
        (0, 5, None, None, 5),  # nothing applied yet
        (7, 9, None, None, 2),  # retention removed offsets below 7: they are not owed
        (0, 0, None, None, 0),  # an empty partition
        (0, 4, 4, 4, 0),  # a producer without transactions: no marker, next_offset is the end
    ],
)
def test_lag_counts_from_where_the_replica_read_to(low: int, high: int, next_offset: int | None, end_seen: int | None, expected: int) -> None:
    """Scenario: watermarks, the stored next_offset and the end-of-partition offset in each state. We expect
    the offsets still to read, 0 when caught up (the marker after a transaction's last record included)."""
    assert partition_lag(low=low, high=high, next_offset=next_offset, end_seen=end_seen) == expected
