"""The as-of prefix rule of the batch fold, on hand-made event sequences (no broker).

Expected states are written out by hand from ../shared/DESIGN.md "Time, precisely",
never computed by the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.dlq import DeadLetter
from pipelines.live import steps as live_steps
from pipelines.live.stats import PipelineStats
from pipelines.projections import get_projection
from schemas.codec import EventCodec
from schemas.fast_decode import FastDecoder
from state.replay.fold import FoldedChange, OrderFolder, RawRecord, ViewFolder
from tests.quix_fakes import FakeContext, FakeState, FakeTransaction

CODEC = EventCodec()
T0 = 1_700_000_000_000
ITEMS = [{"sku": "A", "quantity": 2, "unitPriceMinor": 150}, {"sku": "B", "quantity": 1, "unitPriceMinor": 1000}]


def event(event_type: str, seq: int, occurred_ms: int, *, order_id: str = "o-1", customer: str = "c-1") -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if event_type == "OrderPlaced":
        payload = {"customerId": customer, "items": ITEMS, "totalMinor": 1300, "currency": "EUR"}
    elif event_type == "PaymentAuthorized":
        payload = {"paymentId": "p", "amountMinor": 1300, "currency": "EUR"}
    elif event_type == "InventoryReserved":
        payload = {"warehouseId": "w"}
    elif event_type == "OrderShipped":
        payload = {"carrier": "DHL", "trackingNumber": "1"}
    elif event_type in ("PaymentFailed", "OrderCancelled", "InventoryReleased"):
        payload = {"reason": "r"}
    elif event_type == "RefundIssued":
        payload = {"items": [{"sku": "A", "quantity": 1}], "amountMinor": 150, "currency": "EUR", "reason": "r"}
    return {
        "envelope": {
            "eventId": f"e-{order_id}-{seq}-{occurred_ms}", "eventType": event_type, "schemaVersion": 1, "orderId": order_id,
            "seq": seq, "occurredAt": occurred_ms, "correlationId": "c", "causationId": "x",
        },
        **payload,
    }


def records(*items: dict[str, Any] | bytes, order_id: str = "o-1", partition: int = 0) -> list[RawRecord]:
    """Kafka-shaped records in offset order; bytes are sent as they are (poison)."""
    out = []
    for offset, item in enumerate(items):
        if isinstance(item, bytes):
            out.append(RawRecord(partition, offset, order_id.encode(), item, T0))
        else:
            out.append(RawRecord(partition, offset, item["envelope"]["orderId"].encode(), CODEC.encode(item),
                                 item["envelope"]["occurredAt"]))
    return out


def fold(recs: list[RawRecord], *, as_of_ms: int | None, view: str = "order-status") -> tuple[OrderFolder, list[FoldedChange]]:
    folder = OrderFolder(get_projection(view), topic="orders", decode=FastDecoder().decode, as_of_ms=as_of_ms)
    out: list[tuple[Any, ...]] = []
    folder.fold(recs, out)
    c = folder.counters
    assert c.events_in == c.applied + c.duplicates + c.dead_lettered + c.beyond_as_of
    return folder, [FoldedChange._make(t) for t in out]


def status(folder: OrderFolder, order_id: str = "o-1") -> str | None:
    row = folder.rows.get(order_id, 0)
    return None if row is None else row["status"]


# Placed at 100, paid at 200, then a reservation whose clock stepped back to 150.
STEP_BACK = [event("OrderPlaced", 1, T0 + 100), event("PaymentAuthorized", 2, T0 + 200), event("InventoryReserved", 3, T0 + 150)]


@pytest.mark.parametrize(
    "as_of,expected_status,expected_seqs",
    [
        (T0 + 99, None, []),
        (T0 + 100, "PLACED", [1]),  # exactly at T: visible (inclusive bound)
        (T0 + 150, "PLACED", [1]),  # seq 3 occurred at 150, but seq 2 (200) cut the prefix first
        (T0 + 199, "PLACED", [1]),
        (T0 + 200, "INVENTORY_RESERVED", [1, 2, 3]),  # both visible once 200 is: validFrom stays 200
        (None, "INVENTORY_RESERVED", [1, 2, 3]),
    ],
)
def test_step_back_clock_prefix(as_of: int | None, expected_status: str | None, expected_seqs: list[int]) -> None:
    """Scenario: an order's clock steps back. We expect the longest seq prefix with every occurredAt <= T."""
    folder, changes = fold(records(*STEP_BACK), as_of_ms=as_of)
    assert status(folder) == expected_status
    assert [c.seq for c in changes] == expected_seqs
    assert [c.valid_from_ms for c in changes] == [T0 + 100, T0 + 200, T0 + 200][: len(expected_seqs)]


def test_duplicates_never_count_and_never_cut() -> None:
    """Scenario: seq 1 is redelivered with a later occurredAt (> T), then seq 2 arrives. We expect the
    duplicate to be skipped without cutting the order, so seq 2 (<= T) counts."""
    recs = records(event("OrderPlaced", 1, T0 + 100), event("OrderPlaced", 1, T0 + 900), event("PaymentAuthorized", 2, T0 + 300))
    folder, changes = fold(recs, as_of_ms=T0 + 500)
    assert status(folder) == "PAYMENT_AUTHORIZED"
    assert [c.seq for c in changes] == [1, 2]
    assert (folder.counters.duplicates, folder.counters.beyond_as_of) == (1, 0)


@pytest.mark.parametrize("poison", [b"\x00garbage", b"\xc3\x01" + b"\x07" * 8 + b"body", "impossible", "gap"])
def test_poison_in_the_middle_never_counts_and_never_cuts(poison: bytes | str) -> None:
    """Scenario: a bad record between seq 1 and seq 2, its occurredAt after T. We expect it dead-lettered,
    the order not cut, and seq 2 applied."""
    bad: dict[str, Any] | bytes
    if poison == "impossible":
        bad = event("OrderDelivered", 2, T0 + 10_000)  # illegal in PLACED, seq = the next one
    elif poison == "gap":
        bad = event("InventoryReserved", 3, T0 + 10_000)  # seq 3 after 1: events are missing
    else:
        assert isinstance(poison, bytes)
        bad = poison
    recs = records(event("OrderPlaced", 1, T0 + 100), bad, event("PaymentAuthorized", 2, T0 + 200))
    folder, changes = fold(recs, as_of_ms=T0 + 500)
    assert status(folder) == "PAYMENT_AUTHORIZED"
    assert [c.seq for c in changes] == [1, 2]
    assert folder.counters.dead_lettered == 1 and folder.counters.beyond_as_of == 0


def test_nothing_after_the_cut_counts_not_even_events_before_t() -> None:
    """Scenario: seq 2 occurs after T, seq 3 (clock stepped back) before T. We expect seq 3 not to count:
    once an accepted event is past T, the prefix has ended."""
    recs = records(event("OrderPlaced", 1, T0 + 100), event("PaymentAuthorized", 2, T0 + 900), event("InventoryReserved", 3, T0 + 50))
    folder, changes = fold(recs, as_of_ms=T0 + 500)
    assert status(folder) == "PLACED"
    assert folder.cut == {"o-1"} and folder.counters.beyond_as_of == 2


def test_key_mismatch_is_a_dead_letter() -> None:
    """Scenario: a record whose key is not its event's orderId. We expect a KeyMismatch dead letter, like live."""
    bad = RawRecord(0, 0, b"someone-else", CODEC.encode(event("OrderPlaced", 1, T0)), T0)
    folder, changes = fold([bad], as_of_ms=None)
    assert changes == [] and folder.counters.dead_letter_reasons == {"KeyMismatch": 1}


def test_orders_are_independent() -> None:
    """Scenario: two interleaved orders, one cut at T. We expect the other to keep folding."""
    a = [event("OrderPlaced", 1, T0 + 100, order_id="a"), event("PaymentAuthorized", 2, T0 + 900, order_id="a")]
    b = [event("OrderPlaced", 1, T0 + 200, order_id="b"), event("PaymentAuthorized", 2, T0 + 300, order_id="b")]
    folder, _ = fold(records(a[0], b[0], a[1], b[1]), as_of_ms=T0 + 500)
    assert (status(folder, "a"), status(folder, "b")) == ("PLACED", "PAYMENT_AUTHORIZED")


def test_rekeyed_view_as_of_is_the_fold_of_visible_prefixes() -> None:
    """Scenario: two orders of one customer, one delivered before T, one after. We expect customer-summary
    as of T to count both placements, one delivery and only the first order's value."""
    first = ["OrderPlaced", "PaymentAuthorized", "InventoryReserved", "OrderShipped", "OrderDelivered"]
    evs = [event(t, i + 1, T0 + 100 * (i + 1), order_id="a") for i, t in enumerate(first)]
    evs += [event(t, i + 1, T0 + 1000 * (i + 1), order_id="b") for i, t in enumerate(first)]
    folder, changes = fold(records(*evs), as_of_ms=T0 + 2500, view="customer-summary")
    view = ViewFolder(get_projection("customer-summary"))
    for c in changes:
        row = view.apply(c.key, c.payload, c.order_id, c.seq, c.valid_from_ms)
    assert {k: row[k] for k in ("ordersPlaced", "ordersDelivered", "lifetimeValueMinor", "openOrders")} == {
        "ordersPlaced": 2, "ordersDelivered": 1, "lifetimeValueMinor": 1300, "openOrders": 1,
    }
    assert row["validFrom"] == T0 + 1000  # the last visible change: order b placed at 1000 (payments change no customer)


@pytest.mark.parametrize("view", ["order-status", "customer-summary", "product-sales", "revenue-hourly"])
def test_replay_and_live_step_agree(view: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario: the same records through the live OrderStep and the replay fold. We expect the same
    dead letters (reason classes, offsets) and the same changes, in the same order."""
    evs: list[dict[str, Any] | bytes] = [
        event("OrderPlaced", 1, T0 + 100), b"\x00junk", event("OrderPlaced", 1, T0 + 100), event("OrderDelivered", 2, T0 + 150),
        event("PaymentAuthorized", 2, T0 + 200), event("InventoryReserved", 3, T0 + 150), event("OrderShipped", 4, T0 + 300),
        event("OrderDelivered", 5, T0 + 400), event("RefundIssued", 6, T0 + 500), event("RefundIssued", 7, T0 + 600),
    ]
    recs = records(*evs)
    live = live_steps.OrderStep(get_projection(view), PipelineStats(view), rekeyed=view != "order-status")
    states: dict[bytes | None, FakeState] = {}
    partition_store = FakeTransaction()  # one partition: every key's state shares its store
    live_letters: list[tuple[str, int]] = []
    live_changes: list[tuple[Any, ...]] = []
    for r in recs:
        monkeypatch.setattr(live_steps, "message_context", lambda r=r: FakeContext("orders", r.partition(), r.offset()))
        value = r.value()
        assert value is not None
        for item in live(value, r.key(), r.timestamp()[1], [], states.setdefault(r.key(), FakeState(partition_store))):
            if isinstance(item, DeadLetter):
                headers = dict(item.headers())
                live_letters.append((headers["rewind.reason.class"].decode(), int(headers["rewind.source.offset"])))
            elif isinstance(item, dict):  # a change on its way to the re-keyed step
                routed = live_steps.RekeyedChange.from_json(item)
                c = routed.change
                live_changes.append((c.key, c.delta, c.seq, c.valid_from_ms, routed.source.offset))
            else:
                assert item.source is not None
                live_changes.append((item.key, item.row, item.seq, item.change_valid_from_ms, item.source.offset))
    letters: list[tuple[str, int]] = []
    folder = OrderFolder(get_projection(view), topic="orders", decode=FastDecoder().decode,
                         on_dead_letter=lambda d: letters.append((d.reason_class, d.source_offset)))
    out: list[tuple[Any, ...]] = []
    folder.fold(recs, out)
    ours = [(c[0], c[1], c[3], c[4], c[6]) for c in out]
    assert letters == live_letters and len(letters) == 3  # junk, OrderDelivered in PLACED, second refund
    assert ours == live_changes
