"""`order-status`: one row per order (key orderId), the order fold's own row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.projections.base import Change, IndexSpec, Row, ViewSpec

__all__ = ["OrderStatusProjection", "SPEC"]


class OrderStatusProjection:
    """Status, customer, items, total, currency, time of each lifecycle step, last applied seq."""

    name = "order-status"
    key_field = "orderId"

    def deltas(self, event: Mapping[str, Any], after: Row) -> Sequence[tuple[str, Row]]:
        """The order's new row, keyed by its orderId."""
        return ((after["orderId"], after),)

    def apply(self, row: Row | None, change: Change) -> Row:
        """The new row is the order fold's row (already validated and seq-checked)."""
        return dict(change.delta)


SPEC = ViewSpec(
    name=OrderStatusProjection.name, key_field=OrderStatusProjection.key_field, kind="per-order",
    build=lambda _grace_ms: OrderStatusProjection(),
    indexes=(IndexSpec(OrderStatusProjection.name, "status", "status", "equality"),),
)
