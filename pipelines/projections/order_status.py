"""`order-status`: one row per order (key orderId), the order fold's own row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipelines.projections.base import Change, OrderTransition, Row, changes_of

__all__ = ["OrderStatusProjection"]


class OrderStatusProjection:
    """Status, customer, items, total, currency, time of each lifecycle step, last applied seq."""

    name = "order-status"
    key_field = "orderId"

    def changes(self, transition: OrderTransition) -> Iterable[Change]:
        """Every accepted event replaces the order's row."""
        return changes_of(self.deltas(transition.event, transition.after), transition.after)

    def deltas(self, event: Mapping[str, Any], after: Row) -> Sequence[tuple[str, Row]]:
        """The order's new row, keyed by its orderId."""
        return ((after["orderId"], after),)

    def apply(self, row: Row | None, change: Change) -> Row:
        """The new row is the order fold's row (already validated and seq-checked)."""
        return dict(change.delta)
