"""payments-daily: deltas and apply by hand, and a whole generated workload against the oracle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.kernel import Verdict
from pipelines.projections import Change, order_step
from pipelines.projections.order_lifecycle import OrderFoldResult
from pipelines.projections.payments_daily import DAY_MS, PaymentsDailyProjection
from schemas.codec import EventCodec
from schemas.errors import CodecError
from scripts.workload import Oracle, Workload, WorkloadConfig, generate, write_oracle
from scripts.workload.expected_views import expected_payments_daily, subset

DAY = 1_699_920_000_000  # 2023-11-14T00:00:00Z, a UTC midnight
VIEW = PaymentsDailyProjection()
# The order row after each event, as the order fold would leave it (only the fields read here).
AFTER = {"orderId": "o-1", "customerId": "c-1", "totalMinor": 1300, "currency": "EUR", "lastSeq": 2, "validFrom": DAY + 5000}


def event(event_type: str, occurred_at: int, **payload: object) -> dict:
    return {
        "envelope": {
            "eventId": "e-1", "eventType": event_type, "schemaVersion": 1, "orderId": "o-1",
            "seq": 2, "occurredAt": occurred_at, "correlationId": "c", "causationId": "x",
        },
        **payload,
    }


def test_authorized_counts_the_events_own_amount_in_its_utc_day() -> None:
    """Scenario: a PaymentAuthorized of 1250 (not the order's 1300) at 13:00 UTC.
    We expect one delta keyed EUR:<that midnight> adding one authorization of 1250."""
    e = event("PaymentAuthorized", DAY + 13 * 3_600_000, paymentId="p", authorizedMinor=1250, currency="EUR")
    assert VIEW.deltas(e, AFTER) == ((f"EUR:{DAY}", {"authorizedCount": 1, "authorizedMinor": 1250}),)


def test_failed_counts_the_order_total() -> None:
    """Scenario: a PaymentFailed (it carries no amount) at 23:59:59.999 UTC.
    We expect one failure of the order's total 1300, still in that day."""
    e = event("PaymentFailed", DAY + DAY_MS - 1, reason="card declined")
    assert VIEW.deltas(e, AFTER) == ((f"EUR:{DAY}", {"failedCount": 1, "failedMinor": 1300}),)


def test_refund_counts_its_amount_at_midnight_in_the_new_day() -> None:
    """Scenario: a RefundIssued of 150 at exactly the next UTC midnight.
    We expect it counted in the next day (a day is [start, start + 24 h))."""
    e = event("RefundIssued", DAY + DAY_MS, items=[{"sku": "A", "quantity": 1}], amountMinor=150, currency="EUR", reason="x")
    assert VIEW.deltas(e, AFTER) == ((f"EUR:{DAY + DAY_MS}", {"refundedCount": 1, "refundedMinor": 150}),)


@pytest.mark.parametrize("event_type", ["OrderPlaced", "InventoryReserved", "InventoryReleased", "OrderShipped",
                                        "OrderDelivered", "OrderCancelled"])
def test_other_events_change_nothing(event_type: str) -> None:
    """Scenario: each non-payment event type. We expect no delta and no change."""
    e = event(event_type, DAY + 1)
    assert VIEW.deltas(e, AFTER) == ()
    assert _changes(e) == ()


def _changes(e: dict) -> tuple[Change, ...]:
    """The kernel's changes of ``e`` applied to an order whose row becomes AFTER."""
    return Verdict("applied", None, event=e, after=AFTER, deltas=VIEW.deltas(e, AFTER)).changes()


def test_changes_are_tagged_with_the_order_row() -> None:
    """Scenario: a PaymentAuthorized whose clock stepped back (occurredAt before the row's validFrom).
    We expect its change keyed by its own day but valid from the row's validFrom, with the row's (orderId, lastSeq)."""
    e = event("PaymentAuthorized", DAY - 1, paymentId="p", authorizedMinor=1300, currency="EUR")
    [change] = _changes(e)
    assert change == Change(f"EUR:{DAY - DAY_MS}", {"authorizedCount": 1, "authorizedMinor": 1300}, "o-1", 2, DAY + 5000)
    assert VIEW.partition_key(change) == "EUR"


def test_apply_starts_from_the_identity_and_adds() -> None:
    """Scenario: an authorization, then a failure (later event time), then a refund with an earlier valid_from,
    folded into a new USD day. We expect the counters summed, the identity's fields, and validFrom the max."""
    key = f"USD:{DAY}"
    row = VIEW.apply(None, Change(key, {"authorizedCount": 1, "authorizedMinor": 999}, "o-1", 2, DAY + 10))
    assert row == {"currency": "USD", "dayStart": DAY, "authorizedCount": 1, "authorizedMinor": 999, "failedCount": 0,
                   "failedMinor": 0, "refundedCount": 0, "refundedMinor": 0, "validFrom": DAY + 10}
    before = dict(row)
    row2 = VIEW.apply(row, Change(key, {"failedCount": 1, "failedMinor": 500}, "o-2", 2, DAY + 50))
    row3 = VIEW.apply(row2, Change(key, {"refundedCount": 1, "refundedMinor": 7}, "o-3", 6, DAY + 20))
    assert row == before  # apply does not mutate its input
    assert row3 == {"currency": "USD", "dayStart": DAY, "authorizedCount": 1, "authorizedMinor": 999, "failedCount": 1,
                    "failedMinor": 500, "refundedCount": 1, "refundedMinor": 7, "validFrom": DAY + 50}


def test_view_declaration() -> None:
    """Scenario: the view's declaration. We expect its name and key, and no window lateness rule."""
    assert (VIEW.name, VIEW.key_field, DAY_MS) == ("payments-daily", "currency:dayStart", 86_400_000)
    assert not hasattr(VIEW, "late_by_ms")


# ---- a whole generated workload, folded directly, against the oracle ----

#: Seven days so refunds happen; poison on (duplicates, impossible transitions, undecodable bytes).
CONFIG = WorkloadConfig(seed=23, orders=2000, days=7, poison_rate=0.03)


@pytest.fixture(scope="module")
def workload() -> Workload:
    return generate(CONFIG)


@pytest.fixture(scope="module")
def oracle(workload: Workload, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    path: Path = tmp_path_factory.mktemp("oracle") / "oracle.sqlite"
    write_oracle(workload, path, topic="orders-test")
    with Oracle.open(path) as o:
        yield o


def test_a_folded_workload_matches_the_oracle(workload: Workload, oracle: Oracle) -> None:
    """Scenario: every record of a poisoned 7-day workload, in emission order, decoded and folded per order with
    order_step, then each accepted transition's changes folded with PaymentsDailyProjection.
    We expect exactly the oracle's days, every counter equal, and all three payment kinds present."""
    codec = EventCodec()
    orders: dict[str, dict] = {}
    rows: dict[str, dict] = {}
    outcomes = {"applied": 0, "duplicate": 0, "rejected": 0, "undecodable": 0}
    for record in workload.records:
        try:
            e = codec.decode(record.value)
        except CodecError:
            outcomes["undecodable"] += 1
            continue
        order_id = e["envelope"]["orderId"]
        step = order_step(orders.get(order_id), e)
        if isinstance(step, OrderFoldResult):
            outcomes[step.outcome] += 1
            continue
        outcomes["applied"] += 1
        orders[order_id] = step
        for key, delta in VIEW.deltas(e, step):
            change = Change(key, delta, step["orderId"], step["lastSeq"], step["validFrom"])
            rows[key] = VIEW.apply(rows.get(key), change)
    expected = expected_payments_daily(oracle)
    assert outcomes["applied"] == sum(oracle.event_type_counts().values())
    assert outcomes["duplicate"] > 0 and outcomes["rejected"] > 0 and outcomes["undecodable"] > 0
    assert sorted(rows) == sorted(expected)
    for key, fields in expected.items():
        assert subset(rows[key], fields) == fields, key
        assert rows[key]["validFrom"] is not None
    totals = {f: sum(r[f] for r in expected.values()) for f in ("authorizedCount", "failedCount", "refundedCount")}
    assert all(totals.values()), totals
    counts = oracle.event_type_counts()
    assert totals == {"authorizedCount": counts["PaymentAuthorized"], "failedCount": counts["PaymentFailed"],
                      "refundedCount": counts["RefundIssued"]}
    assert len({r["currency"] for r in expected.values()}) > 1
