"""Every fold, no broker: the order state machine, duplicates, each illegal transition, and the counter views."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from pipelines.kernel import Verdict
from pipelines.projections import OrderFoldResult, Row, get_projection, order_step
from pipelines.projections.order_lifecycle import STATUS_AFTER
from pipelines.projections.revenue_hourly import HOUR_MS, RevenueHourlyProjection
from tests.lifecycle_spec import LIFECYCLE

T0 = 1_700_000_000_000
ITEMS = [{"sku": "A", "quantity": 2, "unitPriceMinor": 150}, {"sku": "B", "quantity": 1, "unitPriceMinor": 1000}]
EVENT_TYPES = sorted({t for (_, t) in STATUS_AFTER})
STATUSES = [None, *sorted(set(STATUS_AFTER.values()))]

# The lifecycle as the business describes it, written out here independently of STATUS_AFTER.
HAPPY = ["OrderPlaced", "PaymentAuthorized", "InventoryReserved", "OrderShipped", "OrderDelivered", "RefundIssued"]
CANCELLED_AFTER_RELEASE = ["OrderPlaced", "PaymentAuthorized", "InventoryReserved", "InventoryReleased", "OrderCancelled"]
FAILED_PAYMENT = ["OrderPlaced", "PaymentFailed", "OrderCancelled"]


def event(event_type: str, seq: int, *, ts: int | None = None, order_id: str = "o-1") -> dict:
    payload: dict = {}
    if event_type == "OrderPlaced":
        payload = {"customerId": "c-1", "items": ITEMS, "total": {"amountMinor": 1300, "currency": "EUR"}, "salesChannel": "web"}
    elif event_type == "PaymentAuthorized":  # the decoded shape (v2): the fold checks its amount and currency
        payload = {"paymentId": "p-1", "authorizedMinor": 1300, "currency": "EUR"}
    elif event_type == "RefundIssued":
        payload = {"items": [{"sku": "A", "quantity": 1}], "amountMinor": 150, "currency": "EUR", "reason": "damaged"}
    return {
        "envelope": {
            "eventId": f"e-{order_id}-{seq}", "eventType": event_type, "orderId": order_id,
            "schemaVersion": {"OrderPlaced": 3, "PaymentAuthorized": 2}.get(event_type, 1),
            "seq": seq, "occurredAt": T0 + seq * 1000 if ts is None else ts, "correlationId": "c", "causationId": "x",
        },
        **payload,
    }


@dataclass
class Folded:
    """What order_step gave, in one shape for the assertions below."""

    outcome: str
    event: dict[str, Any]
    after: Row | None = None
    reason_class: str | None = None
    reason: str | None = None

    @property
    def row(self) -> Row:
        """The row after an applied event."""
        assert self.after is not None, (self.outcome, self.reason)
        return self.after


def fold_order_event(row: Row | None, e: dict[str, Any]) -> Folded:
    step = order_step(row, e)
    if isinstance(step, OrderFoldResult):
        return Folded(step.outcome, e, None, step.reason_class, step.reason)
    return Folded("applied", e, step)


def run(types: list[str], *, order_id: str = "o-1") -> list[Folded]:
    row, transitions = None, []
    for seq, event_type in enumerate(types, start=1):
        result = fold_order_event(row, event(event_type, seq, order_id=order_id))
        assert result.outcome == "applied", (event_type, result.reason)
        transitions.append(result)
        row = result.after
    return transitions


@pytest.mark.parametrize("path,final", [(HAPPY, "REFUNDED"), (CANCELLED_AFTER_RELEASE, "CANCELLED"), (FAILED_PAYMENT, "CANCELLED")])
def test_legal_paths_reach_their_final_status(path: list[str], final: str) -> None:
    transitions = run(path)
    row = transitions[-1].row
    assert row["status"] == final and row["lastSeq"] == len(path)
    assert row["placedAt"] == T0 + 1000


def test_happy_path_records_every_step_time_and_refund() -> None:
    row = run(HAPPY)[-1].row
    assert [row[f] for f in ("placedAt", "paidAt", "reservedAt", "shippedAt", "deliveredAt", "refundedAt")] == [
        T0 + i * 1000 for i in range(1, 7)
    ]
    assert row["refundedMinor"] == 150 and row["totalMinor"] == 1300 and row["customerId"] == "c-1"


LEGAL = set(LIFECYCLE)
PATH_TO = {None: [], "PLACED": ["OrderPlaced"], "PAYMENT_AUTHORIZED": HAPPY[:2], "PAYMENT_FAILED": FAILED_PAYMENT[:2],
           "INVENTORY_RESERVED": HAPPY[:3], "INVENTORY_RELEASED": CANCELLED_AFTER_RELEASE[:4], "SHIPPED": HAPPY[:4],
           "DELIVERED": HAPPY[:5], "REFUNDED": HAPPY, "CANCELLED": FAILED_PAYMENT}


@pytest.mark.parametrize("status,event_type", [p for p in itertools.product(STATUSES, EVENT_TYPES) if p not in LEGAL])
def test_every_illegal_transition_is_rejected_and_leaves_the_row_alone(status: str | None, event_type: str) -> None:
    transitions = run(PATH_TO[status])
    row = transitions[-1].after if transitions else None
    result = fold_order_event(row, event(event_type, len(PATH_TO[status]) + 1))
    assert result.outcome == "rejected" and result.reason_class == "ImpossibleTransition"
    assert event_type in (result.reason or "")
    # The real next event with the same seq is still accepted afterwards.
    if status == "PLACED":
        assert fold_order_event(row, event("PaymentAuthorized", 2)).outcome == "applied"


def test_duplicates_and_gaps() -> None:
    row = run(HAPPY[:3])[-1].after
    assert fold_order_event(row, event("PaymentAuthorized", 2)).outcome == "duplicate"
    assert fold_order_event(row, event("InventoryReserved", 3)).outcome == "duplicate"
    gap = fold_order_event(row, event("OrderDelivered", 5))
    assert gap.outcome == "rejected" and gap.reason_class == "SequenceGap"


def test_valid_from_never_decreases_when_a_clock_steps_back() -> None:
    row = fold_order_event(None, event("OrderPlaced", 1, ts=T0 + 5000)).row
    after = fold_order_event(row, event("PaymentAuthorized", 2, ts=T0 + 2000)).row
    assert after["paidAt"] == T0 + 2000 and after["validFrom"] == T0 + 5000


def fold_view(view: str, orders: dict[str, list[str]]) -> dict:
    projection = get_projection(view)
    rows: dict = {}
    for order_id, path in orders.items():
        for transition in run(path, order_id=order_id):
            assert transition.after is not None
            deltas = projection.deltas(transition.event, transition.after)
            for change in Verdict("applied", None, after=transition.after, deltas=deltas).changes():
                rows[change.key] = projection.apply(rows.get(change.key), change)
    return rows


def test_customer_summary_counts_and_lifetime_value() -> None:
    rows = fold_view("customer-summary", {"o-1": HAPPY, "o-2": FAILED_PAYMENT, "o-3": HAPPY[:5], "o-4": HAPPY[:3]})
    c = rows["c-1"]
    assert (c["ordersPlaced"], c["ordersDelivered"], c["ordersCancelled"], c["openOrders"]) == (4, 2, 1, 1)
    assert c["lifetimeValueMinor"] == 1300 * 2 - 150


def test_product_sales_units_and_revenue() -> None:
    rows = fold_view("product-sales", {"o-1": HAPPY, "o-2": CANCELLED_AFTER_RELEASE})
    a, b = rows["A"], rows["B"]
    assert (a["unitsOrdered"], a["unitsReserved"], a["unitsShipped"], a["unitsRefunded"]) == (4, 4, 2, 1)
    assert a["revenueMinor"] == 2 * 150 - 150 and b["revenueMinor"] == 1000
    assert a["unitsReleased"] == 2 and b["unitsReleased"] == 1


def test_revenue_hourly_windows_and_lateness() -> None:
    rows = fold_view("revenue-hourly", {"o-1": HAPPY})
    [(key, row)] = rows.items()
    start = (T0 + 5000) - (T0 + 5000) % HOUR_MS
    assert key == f"EUR:{start}" and row["revenueMinor"] == 1300 - 150 and row["deliveries"] == 1 and row["refunds"] == 1
    projection = get_projection("revenue-hourly", grace_ms=60_000)
    assert isinstance(projection, RevenueHourlyProjection)
    end = start + HOUR_MS
    assert projection.late_by_ms(f"EUR:{start}", stream_time_ms=end + 59_999) == 0
    assert projection.late_by_ms(f"EUR:{start}", stream_time_ms=end + 60_000) == 1


def test_folds_do_not_mutate_their_input_row() -> None:
    row = run(HAPPY[:2])[-1].row
    snapshot = dict(row)
    fold_order_event(row, event("InventoryReserved", 3))
    assert row == snapshot
