"""What each view should hold, computed from the workload oracle alone (never from projection code).

Used by the integration tests and the main job to compare live views with the oracle.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from scripts.workload import Oracle

HOUR_MS = 3_600_000

# Row field of order-status -> oracle time column. Written out by hand on purpose.
ORDER_TIMES = {
    "placedAt": "placed_at_ms", "paidAt": "paid_at_ms", "paymentFailedAt": "payment_failed_at_ms",
    "reservedAt": "reserved_at_ms", "releasedAt": "released_at_ms", "shippedAt": "shipped_at_ms",
    "deliveredAt": "delivered_at_ms", "cancelledAt": "cancelled_at_ms", "refundedAt": "refunded_at_ms",
}

#: DLQ reason classes that each poison kind may produce.
DLQ_REASONS = {
    "undecodable": {"BadMagicError", "TruncatedEventError", "CodecError"},
    "unknown_schema": {"UnknownSchemaError"},
    "impossible_transition": {"ImpossibleTransition"},
}


def expected_order_status(oracle: Oracle) -> dict[str, dict[str, Any]]:
    out = {}
    for order in oracle.final_orders():
        row = {
            "orderId": order.order_id, "customerId": order.customer_id, "status": str(order.status),
            "totalMinor": order.total_minor, "currency": order.currency, "lastSeq": order.last_seq,
            "refundedMinor": order.refunded_minor,
            "items": [{"sku": s, "quantity": q, "unitPriceMinor": p} for s, q, p in order.items],
        }
        row.update({field: order.times_ms[col] for field, col in ORDER_TIMES.items()})
        out[order.order_id] = row
    return out


def expected_customers(oracle: Oracle) -> dict[str, dict[str, int]]:
    return {
        c.customer_id: {
            "ordersPlaced": c.orders_placed, "ordersDelivered": c.orders_delivered, "ordersCancelled": c.orders_cancelled,
            "lifetimeValueMinor": c.lifetime_value_minor, "openOrders": c.open_orders,
        }
        for c in oracle.customers()
    }


def expected_skus(oracle: Oracle) -> dict[str, dict[str, int]]:
    return {
        s.sku: {
            "unitsOrdered": s.units_ordered, "unitsReserved": s.units_reserved, "unitsReleased": s.units_released,
            "unitsShipped": s.units_shipped, "unitsRefunded": s.units_refunded, "revenueMinor": s.revenue_minor,
        }
        for s in oracle.skus()
    }


def expected_revenue_windows(oracle: Oracle) -> dict[str, int]:
    """Revenue per ``<currency>:<hour start>``: delivered totals minus refunds, in the event's own hour."""
    currency = {c.customer_id: c.currency for c in oracle.customers()}
    windows: dict[str, int] = defaultdict(int)
    for event in oracle.events():
        if event.poison_kind is None and event.ltv_delta_minor:
            assert event.customer_id is not None, f"{event.order_id}: a good event names its customer"
            start = event.occurred_at_ms - event.occurred_at_ms % HOUR_MS
            windows[f"{currency[event.customer_id]}:{start}"] += event.ltv_delta_minor
    return dict(windows)


def expected_dead_letters(oracle: Oracle) -> Counter[tuple[str, str]]:
    """(orderId, poison kind) of every poison record that must be dead-lettered (duplicates are not)."""
    return Counter((p.order_id, p.kind) for p in oracle.poison() if p.kind != "duplicate")


def subset(row: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in fields}


def mismatched_keys(view_records: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> list[str]:
    """Keys whose view row differs from the oracle on an expected field, are missing, or should not exist.

    ``view_records`` maps key -> the view-topic value (``{"row": ...}``), as pipelines.readback.latest_by_key gives.
    """
    differ = [k for k, fields in expected.items() if subset(view_records.get(k, {}).get("row", {}), fields) != fields]
    return differ + sorted(set(view_records) - set(expected))


DAY_MS = 86_400_000


def expected_payments_daily(oracle: Oracle, *, as_of_ms: int | None = None) -> dict[str, dict[str, Any]]:
    """Payments per ``<currency>:<UTC day start>`` of each good payment event's own occurredAt
    (as of ``as_of_ms``, inclusive: only each order's longest seq prefix whose occurredAt are
    all <= it; None: every good event).

    From the oracle's tables alone: the currency and total are the order's (``orders``); an
    authorization is for the order total (the generator's PaymentAuthorized carries exactly
    that), a failed payment counts the order total too, and a refund its amount, which the
    ``events`` table records as ``-ltv_delta_minor``.
    """
    orders = {o.order_id: (o.currency, o.total_minor) for o in oracle.final_orders()}
    fields = {"PaymentAuthorized": "authorized", "PaymentFailed": "failed", "RefundIssued": "refunded"}
    days: dict[str, dict[str, Any]] = {}
    good = sorted((e for e in oracle.events() if e.poison_kind is None), key=lambda e: (e.order_id, e.seq))
    cut: set[str] = set()
    for event in good:
        if as_of_ms is not None and (event.order_id in cut or event.occurred_at_ms > as_of_ms):
            cut.add(event.order_id)
            continue
        field = fields.get(event.event_type or "")
        if field is None:
            continue
        currency, total = orders[event.order_id]
        start = event.occurred_at_ms - event.occurred_at_ms % DAY_MS
        key = f"{currency}:{start}"
        row = days.get(key)
        if row is None:
            row = days[key] = {"currency": currency, "dayStart": start, **{
                f"{name}{suffix}": 0 for name in fields.values() for suffix in ("Count", "Minor")
            }}
        row[f"{field}Count"] += 1
        if field == "refunded":
            assert event.ltv_delta_minor is not None, f"{event.order_id}: a refund carries its amount"
            row[f"{field}Minor"] -= event.ltv_delta_minor
        else:
            row[f"{field}Minor"] += total
    return days


def late_revenue(oracle: Oracle, late_events: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Revenue per ``<currency>:<hour start>`` of events dead-lettered as ``LateEvent`` (their
    decoded records): a delivery adds its order's total, a refund subtracts its amount. Added to
    the revenue-hourly windows, it must give :func:`expected_revenue_windows`."""
    orders = {o.order_id: (o.currency, o.total_minor) for o in oracle.final_orders()}
    out: dict[str, int] = {}
    for event in late_events:
        envelope = event["envelope"]
        currency, total = orders[envelope["orderId"]]
        key = f"{currency}:{envelope['occurredAt'] - envelope['occurredAt'] % HOUR_MS}"
        out[key] = out.get(key, 0) + (total if envelope["eventType"] == "OrderDelivered" else -event["amountMinor"])
    return out
