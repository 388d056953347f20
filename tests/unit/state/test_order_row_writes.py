"""The lean per-order encoder writes exactly the generic path's operations (state/order_row_writes.py)."""

from __future__ import annotations

import zlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.projections import Row, get_projection
from schemas.fast_decode import event_decoder
from scripts.workload import WorkloadConfig, generate
from state.encoded_writes import encode_row_writes, latest_from_order_row
from state.order_row_writes import covers, encode_order_row_writes
from state.replay.fold import OrderFolder
from state.replay.sink import per_order_updates

VIEW = "order-status"
TOPIC = "orders"


class _Record:
    """A Kafka message as the fold reads it."""

    def __init__(self, key: bytes, value: bytes, partition: int, offset: int, timestamp_ms: int) -> None:
        self._key, self._value, self._partition, self._offset, self._ts = key, value, partition, offset, timestamp_ms

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)

    def headers(self) -> None:
        return None


def _generic(changes: list[tuple[Any, ...]], rows_before: dict[str, Row | None], position: dict[str, dict[int, int]]) -> Any:
    return encode_row_writes(per_order_updates(VIEW, TOPIC, changes), stored_position=position,
                             latest_of=lambda order_id: latest_from_order_row(rows_before.get(order_id)))


def test_order_status_is_covered_and_rekeyed_views_are_not() -> None:
    assert covers("order-status")
    assert not covers("customer-summary")


def test_a_replayed_workload_encodes_to_the_same_operations() -> None:
    """Scenario: a late, skewed, poisoned workload folded in batches of several sizes, the stored position part-way
    into some partitions. We expect every batch's EncodedWrites equal to the generic path's, operation for operation."""
    workload = generate(WorkloadConfig(seed=9, orders=1500, days=4, late_rate=0.2, skew_rate=0.05, poison_rate=0.03))
    offsets = [0] * 12
    records = []
    for r in workload.records:
        partition = zlib.crc32(r.key) % 12
        records.append(_Record(r.key, r.value, partition, offsets[partition], r.timestamp_ms))
        offsets[partition] += 1
    for batch_size, skip in ((1, 0), (97, 5), (5000, 40)):
        folder = OrderFolder(get_projection(VIEW), topic=TOPIC, decode=event_decoder())
        position = {TOPIC: {p: skip for p in range(0, 12, 3)}}
        for start in range(0, len(records), batch_size):
            out: list[tuple[Any, ...]] = []
            before: dict[str, Row | None] = {}
            folder.fold(records[start : start + batch_size], out, rows_before=before)
            lean = encode_order_row_writes(VIEW, TOPIC, out, stored_position=position, rows_before=before)
            assert lean == _generic(out, before, position), (batch_size, start)


def _row(order_id: str, seq: int, valid_from: int, status: str | None) -> Row:
    return {"orderId": order_id, "status": status, "lastSeq": seq, "validFrom": valid_from, "items": []}


# Per order: the stored row (or none), then changes as (seq, validFrom, status): duplicates, equal and earlier
# validFroms, replacements of the stored version, a status that is not indexed (None): every branch of the applier.
_change = st.tuples(st.integers(0, 6), st.integers(0, 5), st.sampled_from(["PLACED", "PAID", None]))
_order = st.tuples(st.none() | st.tuples(st.integers(0, 3), st.integers(0, 3), st.sampled_from(["PLACED", None])),
                   st.lists(_change, min_size=1, max_size=5))


@settings(max_examples=400, deadline=None)
@given(st.lists(_order, min_size=1, max_size=4), st.integers(0, 3))
def test_any_group_encodes_to_the_same_operations(orders: list[Any], skip_below: int) -> None:
    """Scenario: random groups (duplicates, clamps, replacements, unindexed rows), some changes below the stored
    position. We expect the lean encoder's EncodedWrites equal to the generic path's."""
    changes: list[tuple[Any, ...]] = []
    before: dict[str, Row | None] = {}
    offset = 0
    for n, (stored, group) in enumerate(orders):
        order_id = f"ord-{n}"
        before[order_id] = None if stored is None else _row(order_id, stored[0], 1000 + stored[1], stored[2])
        for seq, valid_from, status in group:
            row = _row(order_id, seq, 1000 + valid_from, status)
            changes.append((order_id, row, order_id, seq, 1000 + valid_from, n % 2, offset))
            offset += 1
    position = {TOPIC: {0: skip_below}}
    assert encode_order_row_writes(VIEW, TOPIC, changes, stored_position=position, rows_before=before) == _generic(changes, before, position)
