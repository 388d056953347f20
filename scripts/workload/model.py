"""The oracle's own order lifecycle: statuses, legal transitions, and plain running totals.

This module is deliberately independent of every projection: the oracle that
tests hold the projections to must not share their code, or a bug in one
would be a bug in both. It is written from the lifecycle table alone::

    (none)             --OrderPlaced-------> PLACED
    PLACED             --PaymentAuthorized-> PAYMENT_AUTHORIZED
    PLACED             --PaymentFailed-----> PAYMENT_FAILED
    PAYMENT_FAILED     --OrderCancelled----> CANCELLED
    PAYMENT_AUTHORIZED --InventoryReserved-> INVENTORY_RESERVED
    PAYMENT_AUTHORIZED --OrderCancelled----> CANCELLED
    INVENTORY_RESERVED --OrderShipped------> SHIPPED
    INVENTORY_RESERVED --InventoryReleased-> INVENTORY_RELEASED
    INVENTORY_RELEASED --OrderCancelled----> CANCELLED
    SHIPPED            --OrderDelivered----> DELIVERED
    DELIVERED          --RefundIssued------> REFUNDED   (at most one refund per order)

Money is integer minor units. Revenue and lifetime value are recognised at
OrderDelivered (the order total) and reduced at RefundIssued (the refund amount).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from schemas.errors import RewindError
from schemas.registry import EVENT_TYPES

__all__ = [
    "Status",
    "TRANSITIONS",
    "TERMINAL",
    "OPEN_EXCLUDED",
    "TIME_COLUMNS",
    "WorkloadError",
    "LineItem",
    "RefundLine",
    "Refund",
    "Order",
    "next_status",
    "illegal_event_types",
    "rejection_reason",
    "is_open",
    "OrderState",
    "CustomerTotals",
    "SkuTotals",
    "Ledger",
]


class WorkloadError(RewindError):
    """The generator's own model was violated (a bug in the generator, not in the data); report it."""


class Status(StrEnum):
    """An order's lifecycle status."""

    PLACED = "PLACED"
    PAYMENT_AUTHORIZED = "PAYMENT_AUTHORIZED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    INVENTORY_RESERVED = "INVENTORY_RESERVED"
    INVENTORY_RELEASED = "INVENTORY_RELEASED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"


#: (status before, or None for a new order; event type) -> status after. Anything absent is illegal.
TRANSITIONS: Mapping[tuple[Status | None, str], Status] = MappingProxyType(
    {
        (None, "OrderPlaced"): Status.PLACED,
        (Status.PLACED, "PaymentAuthorized"): Status.PAYMENT_AUTHORIZED,
        (Status.PLACED, "PaymentFailed"): Status.PAYMENT_FAILED,
        (Status.PAYMENT_FAILED, "OrderCancelled"): Status.CANCELLED,
        (Status.PAYMENT_AUTHORIZED, "InventoryReserved"): Status.INVENTORY_RESERVED,
        (Status.PAYMENT_AUTHORIZED, "OrderCancelled"): Status.CANCELLED,
        (Status.INVENTORY_RESERVED, "OrderShipped"): Status.SHIPPED,
        (Status.INVENTORY_RESERVED, "InventoryReleased"): Status.INVENTORY_RELEASED,
        (Status.INVENTORY_RELEASED, "OrderCancelled"): Status.CANCELLED,
        (Status.SHIPPED, "OrderDelivered"): Status.DELIVERED,
        (Status.DELIVERED, "RefundIssued"): Status.REFUNDED,
    }
)

#: No event is legal after these.
TERMINAL: frozenset[Status] = frozenset({Status.CANCELLED, Status.REFUNDED})
#: An order is "open" unless its status is one of these (DELIVERED may still be refunded, but is not open).
OPEN_EXCLUDED: frozenset[Status] = frozenset({Status.DELIVERED, Status.CANCELLED, Status.REFUNDED})

#: Event type -> the ``orders`` column holding the occurredAt of that event.
TIME_COLUMNS: Mapping[str, str] = MappingProxyType(
    {
        "OrderPlaced": "placed_at_ms",
        "PaymentAuthorized": "paid_at_ms",
        "PaymentFailed": "payment_failed_at_ms",
        "InventoryReserved": "reserved_at_ms",
        "InventoryReleased": "released_at_ms",
        "OrderShipped": "shipped_at_ms",
        "OrderDelivered": "delivered_at_ms",
        "OrderCancelled": "cancelled_at_ms",
        "RefundIssued": "refunded_at_ms",
    }
)


def next_status(before: Status | None, event_type: str) -> Status | None:
    """The status after ``event_type`` in status ``before``; None when the transition is illegal."""
    return TRANSITIONS.get((before, event_type))


def illegal_event_types(before: Status | None) -> tuple[str, ...]:
    """Every event type that is illegal in status ``before``, in lifecycle order."""
    return tuple(t for t in EVENT_TYPES if (before, t) not in TRANSITIONS)


def rejection_reason(before: Status | None, event_type: str) -> str:
    """A human reason why ``event_type`` is illegal in ``before``."""
    if before is None:
        return f"{event_type} is not allowed before OrderPlaced"
    return f"{event_type} is not allowed in status {before}"


def is_open(status: Status) -> bool:
    """True while an order is neither delivered, cancelled nor refunded."""
    return status not in OPEN_EXCLUDED


@dataclass(frozen=True, slots=True)
class LineItem:
    """One order line: ``quantity`` units of ``sku`` at a fixed integer unit price."""

    sku: str
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True, slots=True)
class RefundLine:
    """Refunded units of one line; the unit price is the line's, so the amount is exact."""

    sku: str
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True, slots=True)
class Refund:
    """The one refund an order may get: some units of some lines."""

    lines: tuple[RefundLine, ...]
    amount_minor: int
    reason: str


@dataclass(frozen=True, slots=True)
class Order:
    """What an order is, independent of how far its lifecycle got.

    ``refund`` is the refund it gets *if* its RefundIssued event falls inside the
    history; only emitted events change any total.
    """

    order_id: str
    customer_id: str
    currency: str
    items: tuple[LineItem, ...]
    total_minor: int
    correlation_id: str
    refund: Refund | None = None


class OrderState:
    """The fold of one order's good events so far (mutable: it is the accumulator)."""

    __slots__ = ("order", "status", "last_seq", "times_ms", "refunded_minor")

    def __init__(self, order: Order) -> None:
        self.order = order
        self.status: Status | None = None
        self.last_seq = 0
        self.times_ms: dict[str, int] = {}
        self.refunded_minor = 0


class CustomerTotals:
    """Running totals of one customer (mutable accumulator); see the oracle's ``customers`` table."""

    __slots__ = ("customer_id", "currency", "orders_placed", "orders_delivered", "orders_cancelled",
                 "lifetime_value_minor", "open_orders")

    def __init__(self, customer_id: str, currency: str) -> None:
        self.customer_id = customer_id
        self.currency = currency
        self.orders_placed = 0
        self.orders_delivered = 0
        self.orders_cancelled = 0
        self.lifetime_value_minor = 0
        self.open_orders = 0


class SkuTotals:
    """Running unit counters and revenue of one SKU (mutable accumulator); see the ``skus`` table."""

    __slots__ = ("sku", "unit_price_minor", "units_ordered", "units_reserved", "units_released", "units_shipped",
                 "units_refunded", "revenue_minor")

    def __init__(self, sku: str, unit_price_minor: int) -> None:
        self.sku = sku
        self.unit_price_minor = unit_price_minor
        self.units_ordered = 0
        self.units_reserved = 0
        self.units_released = 0
        self.units_shipped = 0
        self.units_refunded = 0
        self.revenue_minor = 0


class Ledger:
    """Folds good events, in each order's seq order, into order states and customer/SKU totals.

    Plain accumulation, one event at a time: the simplest thing that can be right.
    """

    def __init__(self) -> None:
        self.orders: dict[str, OrderState] = {}
        self.customers: dict[str, CustomerTotals] = {}
        self.skus: dict[str, SkuTotals] = {}

    def apply(self, order: Order, event_type: str, *, seq: int, occurred_at_ms: int) -> Status:
        """Apply one good event and return the order's new status.

        Raises :class:`WorkloadError` for an illegal transition or a seq that is not the next one:
        the ledger only ever sees the generator's good events, so either is a generator bug.
        """
        state = self.orders.get(order.order_id)
        if state is None:
            state = self.orders[order.order_id] = OrderState(order)
        after = next_status(state.status, event_type)
        if after is None:
            raise WorkloadError(f"{order.order_id} seq {seq}: {rejection_reason(state.status, event_type)}")
        if seq != state.last_seq + 1:
            raise WorkloadError(f"{order.order_id}: seq {seq} follows {state.last_seq}")
        was_open = state.status is not None and is_open(state.status)
        state.status, state.last_seq = after, seq
        state.times_ms[TIME_COLUMNS[event_type]] = occurred_at_ms
        self._count(order, state, event_type)
        # open_orders: +1 when an order appears, -1 the moment it stops being open.
        customer = self.customers[order.customer_id]
        if event_type == "OrderPlaced":
            customer.open_orders += 1
        elif was_open and not is_open(after):
            customer.open_orders -= 1
        return after

    def _count(self, order: Order, state: OrderState, event_type: str) -> None:
        customer = self.customers.get(order.customer_id)
        if customer is None:
            customer = self.customers[order.customer_id] = CustomerTotals(order.customer_id, order.currency)
        if event_type == "OrderPlaced":
            customer.orders_placed += 1
            for line in order.items:
                self._sku(line.sku, line.unit_price_minor).units_ordered += line.quantity
        elif event_type == "InventoryReserved":
            for line in order.items:
                self._sku(line.sku, line.unit_price_minor).units_reserved += line.quantity
        elif event_type == "InventoryReleased":
            for line in order.items:
                self._sku(line.sku, line.unit_price_minor).units_released += line.quantity
        elif event_type == "OrderShipped":
            for line in order.items:
                self._sku(line.sku, line.unit_price_minor).units_shipped += line.quantity
        elif event_type == "OrderDelivered":
            customer.orders_delivered += 1
            customer.lifetime_value_minor += order.total_minor
            for line in order.items:
                self._sku(line.sku, line.unit_price_minor).revenue_minor += line.quantity * line.unit_price_minor
        elif event_type == "OrderCancelled":
            customer.orders_cancelled += 1
        elif event_type == "RefundIssued":
            if order.refund is None:
                raise WorkloadError(f"{order.order_id}: RefundIssued without a planned refund")
            state.refunded_minor += order.refund.amount_minor
            customer.lifetime_value_minor -= order.refund.amount_minor
            for refund_line in order.refund.lines:
                sku = self._sku(refund_line.sku, refund_line.unit_price_minor)
                sku.units_refunded += refund_line.quantity
                sku.revenue_minor -= refund_line.quantity * refund_line.unit_price_minor

    def _sku(self, sku: str, unit_price_minor: int) -> SkuTotals:
        totals = self.skus.get(sku)
        if totals is None:
            totals = self.skus[sku] = SkuTotals(sku, unit_price_minor)
        return totals
