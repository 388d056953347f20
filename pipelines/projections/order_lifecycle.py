"""The order fold: validates each event against its order and produces the order row.

This is the one place that knows the order state machine on the projection side.
(The workload generator has its own, independent model: it is the test oracle.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.projections.base import FoldOutcome, Row
from pipelines.projections.domain import PAYLOAD_CHECKS

__all__ = ["STATUS_AFTER", "TIMESTAMP_FIELD", "OPEN_STATUSES", "OrderFoldResult", "order_step", "SEQUENCE_GAP", "IMPOSSIBLE_TRANSITION"]

SEQUENCE_GAP = "SequenceGap"
IMPOSSIBLE_TRANSITION = "ImpossibleTransition"

#: (status before, event type) -> status after. A missing pair is an impossible transition.
STATUS_AFTER: dict[tuple[str | None, str], str] = {
    (None, "OrderPlaced"): "PLACED",
    ("PLACED", "PaymentAuthorized"): "PAYMENT_AUTHORIZED",
    ("PLACED", "PaymentFailed"): "PAYMENT_FAILED",
    ("PAYMENT_FAILED", "OrderCancelled"): "CANCELLED",
    ("PAYMENT_AUTHORIZED", "InventoryReserved"): "INVENTORY_RESERVED",
    ("PAYMENT_AUTHORIZED", "OrderCancelled"): "CANCELLED",
    ("INVENTORY_RESERVED", "OrderShipped"): "SHIPPED",
    ("INVENTORY_RESERVED", "InventoryReleased"): "INVENTORY_RELEASED",
    ("INVENTORY_RELEASED", "OrderCancelled"): "CANCELLED",
    ("SHIPPED", "OrderDelivered"): "DELIVERED",
    ("DELIVERED", "RefundIssued"): "REFUNDED",
}

#: Which row field records when each lifecycle step happened (event time, epoch ms).
TIMESTAMP_FIELD: dict[str, str] = {
    "OrderPlaced": "placedAt",
    "PaymentAuthorized": "paidAt",
    "PaymentFailed": "paymentFailedAt",
    "InventoryReserved": "reservedAt",
    "InventoryReleased": "releasedAt",
    "OrderShipped": "shippedAt",
    "OrderDelivered": "deliveredAt",
    "OrderCancelled": "cancelledAt",
    "RefundIssued": "refundedAt",
}

OPEN_STATUSES = frozenset({"PLACED", "PAYMENT_AUTHORIZED", "PAYMENT_FAILED", "INVENTORY_RESERVED", "INVENTORY_RELEASED", "SHIPPED"})


@dataclass(frozen=True, slots=True)
class OrderFoldResult:
    """Why folding one event into its order did not apply it: ``outcome`` is "duplicate"
    (seq already applied: a counted no-op) or "rejected" (``reason`` says why; the event
    goes to the DLQ and the order row is unchanged, so the real event with that seq is
    still accepted). An applied event gives the new row instead (:func:`order_step`).
    """

    outcome: FoldOutcome
    reason_class: str | None = None
    reason: str | None = None


def _new_row(event: Mapping[str, Any]) -> Row:
    env = event["envelope"]
    return {
        "orderId": env["orderId"],
        "customerId": event["customerId"],
        "status": None,
        "items": [dict(item) for item in event["items"]],
        "totalMinor": event["total"]["amountMinor"],  # OrderPlaced v3: the total is one Money record
        "currency": event["total"]["currency"],
        "refundedMinor": 0,
        "lastSeq": 0,
        "validFrom": env["occurredAt"],
        **{field: None for field in TIMESTAMP_FIELD.values()},
    }


#: Every duplicate folds to this one result (it is immutable, so it is shared).
DUPLICATE = OrderFoldResult("duplicate")


def order_step(row: Row | None, event: Mapping[str, Any]) -> Row | OrderFoldResult:
    """Fold one decoded event into its order row (None before OrderPlaced): the new order
    row when the event applies, else the duplicate or rejected :class:`OrderFoldResult`.

    Seq order is the truth: seq <= lastSeq is a duplicate; seq > lastSeq + 1 is a gap
    (rejected); the transition must be in :data:`STATUS_AFTER`; the payload must be in its
    domain and agree with the order (:data:`~pipelines.projections.domain.PAYLOAD_CHECKS`,
    rejected with that module's reason classes). The envelope's domain (seq >= 1, ...) is
    checked by the kernel before this runs. ``validFrom`` of the new row is
    max(previous validFrom, occurredAt), per ../shared/DESIGN.md "Time, precisely".
    A new row is built per event; ``row`` is never mutated.
    """
    env = event["envelope"]
    seq = env["seq"]
    event_type = env["eventType"]
    last_seq = row["lastSeq"] if row is not None else 0
    if seq <= last_seq:
        return DUPLICATE
    if seq != last_seq + 1:
        return OrderFoldResult(
            "rejected", reason_class=SEQUENCE_GAP, reason=f"seq {seq} after {last_seq}: events {last_seq + 1}..{seq - 1} are missing"
        )
    status = row["status"] if row is not None else None
    after_status = STATUS_AFTER.get((status, event_type))
    if after_status is None:
        where = f"in status {status}" if status else "before OrderPlaced"
        return OrderFoldResult("rejected", reason_class=IMPOSSIBLE_TRANSITION, reason=f"{event_type} is not allowed {where}")
    check = PAYLOAD_CHECKS.get(event_type)
    if check is not None:
        refusal = check(event, row)
        if refusal is not None:
            return OrderFoldResult("rejected", reason_class=refusal.reason_class, reason=refusal.reason)
    after = _new_row(event) if row is None else dict(row)
    after["status"] = after_status
    after["lastSeq"] = seq
    occurred_at = env["occurredAt"]
    after[TIMESTAMP_FIELD[event_type]] = occurred_at
    if after["validFrom"] < occurred_at:
        after["validFrom"] = occurred_at
    if event_type == "RefundIssued":
        after["refundedMinor"] = after["refundedMinor"] + event["amountMinor"]
        after["refundedItems"] = [dict(line) for line in event["items"]]
    return after
