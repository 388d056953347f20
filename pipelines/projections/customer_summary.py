"""`customer-summary` (key customerId): orders placed/delivered/cancelled, lifetime value, open orders."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipelines.projections.base import Change, IndexSpec, Row, ViewSpec
from pipelines.projections.counters import add_counters

__all__ = ["CustomerSummaryProjection", "SPEC"]


def _identity(customer_id: str) -> Row:
    """The row of a customer with no changes yet."""
    return {
        "customerId": customer_id,
        "ordersPlaced": 0,
        "ordersDelivered": 0,
        "ordersCancelled": 0,
        "lifetimeValueMinor": 0,
        "openOrders": 0,
        "validFrom": None,
    }


# Lifetime value is recognised at delivery and reduced by refunds (exact minor units).
# Each maps (event, order row after it) to the delta.
#: Event type -> the counter delta it contributes, from (event, the order row after it).
_DELTAS: dict[str, Callable[[Mapping[str, Any], Row], Row]] = {
    "OrderPlaced": lambda event, after: {"ordersPlaced": 1, "openOrders": 1},
    "OrderDelivered": lambda event, after: {"ordersDelivered": 1, "openOrders": -1, "lifetimeValueMinor": after["totalMinor"]},
    "OrderCancelled": lambda event, after: {"ordersCancelled": 1, "openOrders": -1},
    "RefundIssued": lambda event, after: {"lifetimeValueMinor": -event["amountMinor"]},
}


class CustomerSummaryProjection:
    """Per-customer counters, re-keyed from orders by customerId."""

    name = "customer-summary"
    key_field = "customerId"

    def deltas(self, event: Mapping[str, Any], after: Row) -> Sequence[tuple[str, Row]]:
        """At most one delta, keyed by the order's customer."""
        delta_of = _DELTAS.get(event["envelope"]["eventType"])
        if delta_of is None:
            return ()
        return ((after["customerId"], delta_of(event, after)),)

    def apply(self, row: Row | None, change: Change) -> Row:
        """Add the change's counters to the customer's row."""
        return add_counters(row, change, identity=_identity)


SPEC = ViewSpec(
    name=CustomerSummaryProjection.name, key_field=CustomerSummaryProjection.key_field, kind="rekeyed",
    build=lambda _grace_ms: CustomerSummaryProjection(),
    indexes=(IndexSpec(CustomerSummaryProjection.name, "lifetimeValue", "lifetimeValueMinor", "ranking"),),
)
