"""`order-status`: one row per order (key orderId), the order fold's own row."""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.projections.base import Change, OrderTransition, Row

__all__ = ["OrderStatusProjection"]


class OrderStatusProjection:
    """Status, customer, items, total, currency, time of each lifecycle step, last applied seq."""

    name = "order-status"
    key_field = "orderId"

    def changes(self, transition: OrderTransition) -> Iterable[Change]:
        """Every accepted event replaces the order's row."""
        after = transition.after
        return (Change(after["orderId"], after, after["orderId"], after["lastSeq"], after["validFrom"]),)

    def apply(self, row: Row | None, change: Change) -> Row:
        """The new row is the order fold's row (already validated and seq-checked)."""
        return dict(change.delta)
