"""The oracle's lifecycle model says exactly what the lifecycle table says."""

from __future__ import annotations

import pytest

from schemas.registry import EVENT_TYPES
from scripts.workload import (
    Ledger,
    LineItem,
    Order,
    Status,
    WorkloadError,
    illegal_event_types,
    is_open,
    next_status,
    rejection_reason,
)
from scripts.workload.model import TRANSITIONS
from tests.lifecycle_spec import LIFECYCLE

# The lifecycle spec is transcribed once for all tests, never imported from product code.
SPEC = LIFECYCLE
STATUSES = [None, *Status]


def test_transitions_are_the_lifecycle_table() -> None:
    """Scenario: every (status, event type) pair. We expect legal exactly where the table says."""
    for before in STATUSES:
        for event_type in EVENT_TYPES:
            expected = SPEC.get((None if before is None else str(before), event_type))
            assert next_status(before, event_type) == expected, (before, event_type)
    assert len(TRANSITIONS) == len(SPEC)


def test_terminal_and_open() -> None:
    for status in Status:
        legal_after = [t for t in EVENT_TYPES if next_status(status, t) is not None]
        if status in (Status.CANCELLED, Status.REFUNDED):
            assert legal_after == []
        assert is_open(status) == (status not in (Status.DELIVERED, Status.CANCELLED, Status.REFUNDED))


def test_illegal_event_types_and_reasons() -> None:
    assert "OrderShipped" in illegal_event_types(Status.PLACED)
    assert "PaymentAuthorized" not in illegal_event_types(Status.PLACED)
    assert illegal_event_types(None) == tuple(t for t in EVENT_TYPES if t != "OrderPlaced")
    assert rejection_reason(Status.PLACED, "OrderShipped") == "OrderShipped is not allowed in status PLACED"
    assert rejection_reason(None, "OrderShipped") == "OrderShipped is not allowed before OrderPlaced"


def _order() -> Order:
    return Order("ord-1", "cust-1", "EUR", (LineItem("sku-1", 2, 500),), 1000, "corr")


def test_ledger_refuses_illegal_transitions_and_gaps() -> None:
    ledger = Ledger()
    ledger.apply(_order(), "OrderPlaced", seq=1, occurred_at_ms=1)
    with pytest.raises(WorkloadError, match="not allowed in status PLACED"):
        ledger.apply(_order(), "OrderShipped", seq=2, occurred_at_ms=2)
    with pytest.raises(WorkloadError, match="seq 3 follows 1"):
        ledger.apply(_order(), "PaymentAuthorized", seq=3, occurred_at_ms=2)


def test_ledger_open_orders_and_lifetime_value() -> None:
    """Scenario: place, pay, reserve, ship, deliver. We expect LTV = total and no open order at the end."""
    ledger = Ledger()
    order = _order()
    for seq, event_type in enumerate(
        ["OrderPlaced", "PaymentAuthorized", "InventoryReserved", "OrderShipped", "OrderDelivered"], start=1
    ):
        ledger.apply(order, event_type, seq=seq, occurred_at_ms=seq)
        customer = ledger.customers["cust-1"]
        assert customer.open_orders == (0 if event_type == "OrderDelivered" else 1)
    assert ledger.customers["cust-1"].lifetime_value_minor == 1000
    assert ledger.skus["sku-1"].revenue_minor == 1000
    assert ledger.orders["ord-1"].times_ms["delivered_at_ms"] == 5
