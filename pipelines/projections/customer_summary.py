"""`customer-summary` (key customerId): orders placed/delivered/cancelled, lifetime value, open orders."""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.projections.base import Change, OrderTransition, Row
from pipelines.projections.counters import add_counters

__all__ = ["CustomerSummaryProjection"]

# Lifetime value is recognised at delivery and reduced by refunds (exact minor units).
_DELTAS = {
    "OrderPlaced": lambda t: {"ordersPlaced": 1, "openOrders": 1},
    "OrderDelivered": lambda t: {"ordersDelivered": 1, "openOrders": -1, "lifetimeValueMinor": t.after["totalMinor"]},
    "OrderCancelled": lambda t: {"ordersCancelled": 1, "openOrders": -1},
    "RefundIssued": lambda t: {"lifetimeValueMinor": -t.event["amountMinor"]},
}


class CustomerSummaryProjection:
    """Per-customer counters, re-keyed from orders by customerId."""

    name = "customer-summary"
    key_field = "customerId"

    def changes(self, transition: OrderTransition) -> Iterable[Change]:
        """At most one change per transition, keyed by the order's customer."""
        delta_of = _DELTAS.get(transition.event_type)
        if delta_of is None:
            return ()
        after = transition.after
        return (Change(after["customerId"], delta_of(transition), after["orderId"], after["lastSeq"], after["validFrom"]),)

    def apply(self, row: Row | None, change: Change) -> Row:
        """Add the change's counters to the customer's row."""
        identity = {
            "customerId": change.key,
            "ordersPlaced": 0,
            "ordersDelivered": 0,
            "ordersCancelled": 0,
            "lifetimeValueMinor": 0,
            "openOrders": 0,
            "validFrom": None,
        }
        return add_counters(row, change, identity=identity)
