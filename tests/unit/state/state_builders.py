"""Builders of ViewUpdate objects for store tests (shaped like the replica's decoded view records)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rocksdict import AccessType, Options, Rdict

from pipelines.projections import Change, get_projection
from state.contracts import SourcePosition, ViewUpdate
from state.rocks_open import raw_items

ORDER_TOPIC = "view.order-status"


def order_update(key: str, seq: int, valid_from_ms: int, status: str, *, offset: int, partition: int = 0) -> ViewUpdate:
    """An order-status update: the row is the version (validFrom = the order's running max event time)."""
    row = {"orderId": key, "customerId": "c-" + key, "status": status, "lastSeq": seq, "validFrom": valid_from_ms}
    return ViewUpdate(
        view="order-status", key=key, row=row, row_valid_from_ms=valid_from_ms, change_valid_from_ms=valid_from_ms,
        delta=None, order_id=key, seq=seq, source=SourcePosition("orders", partition, offset * 10),
        record_position=SourcePosition(ORDER_TOPIC, partition, offset),
    )


def counter_update(
    view: str, key: str, order_id: str, seq: int, change_valid_from_ms: int, delta: dict[str, int], *,
    offset: int | None = None, row: dict[str, Any] | None = None, partition: int = 0,
) -> ViewUpdate:
    """A counter-view update; ``row`` defaults to {} (not given: the store re-derives rows from changes)."""
    return ViewUpdate(
        view=view, key=key, row=row or {}, row_valid_from_ms=change_valid_from_ms, change_valid_from_ms=change_valid_from_ms,
        delta=delta, order_id=order_id, seq=seq, source=SourcePosition("orders", partition, (offset or 0) + 1000),
        record_position=None if offset is None else SourcePosition(f"view.{view}", partition, offset),
    )


def fold_row(view: str, key: str, changes: list[tuple[int, str, int, dict[str, int]]]) -> dict[str, Any] | None:
    """Brute force: the projection's own fold of ``(valid_from, orderId, seq, delta)`` changes, in time order."""
    projection = get_projection(view)
    row = None
    for valid_from_ms, order_id, seq, delta in sorted(changes, key=lambda c: (c[0], c[1], c[2])):
        row = projection.apply(row, Change(key, delta, order_id, seq, valid_from_ms))
    return row


def dump_store(path: Path) -> dict[bytes, bytes]:
    """Every key and value of the RocksDB store in ``path``, as stored (opened read-only)."""
    db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        return dict(raw_items(db, from_key=b""))
    finally:
        db.close()
