"""Bad events that decode: each one is a dead letter with a meaningful reason, never a crash,
and the live step (Quix fakes) and the replay fold agree on it record by record.

Found from outside by mutating valid events (issue 12, point 4). Expected reason classes are
written out by hand from the rules in pipelines/projections/domain.py and pipelines/kernel.py.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from fastavro import schemaless_writer

from pipelines.dlq import DeadLetter
from pipelines.kernel import FOLD_ERROR, KEY_MISMATCH, WRONG_PARTITION, process_record
from pipelines.live import steps as live_steps
from pipelines.live.stats import PipelineStats
from pipelines.partitioning import partition_for
from pipelines.projections import Change, Projection, Row, get_projection, view_spec
from pipelines.projections.domain import CURRENCY_MISMATCH, IMPOSSIBLE_REFUND, INVALID_VALUE, UNKNOWN_SKU
from pipelines.projections.revenue_hourly import HOUR_MS
from schemas.codec import MAGIC, EventCodec
from schemas.fast_decode import FastDecoder
from state.replay.fold import OrderFolder, RawRecord, ViewFolder
from tests.quix_fakes import FakeState, drive_live_step

CODEC = EventCodec()
DECODE = FastDecoder(CODEC).decode
PARTITIONS = 4
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS
ITEMS = [{"sku": "A", "quantity": 2, "unitPriceMinor": 150}, {"sku": "B", "quantity": 1, "unitPriceMinor": 1000}]
HAPPY = ["OrderPlaced", "PaymentAuthorized", "InventoryReserved", "OrderShipped", "OrderDelivered"]


def event(event_type: str, seq: int, *, order_id: str = "o-1", at: int | None = None, **payload: Any) -> dict[str, Any]:
    """An event in the newest shape of its type (OrderPlaced v3, PaymentAuthorized v2); ``payload`` overrides fields."""
    bodies: dict[str, dict[str, Any]] = {
        "OrderPlaced": {"customerId": "c-1", "items": ITEMS, "total": {"amountMinor": 1300, "currency": "EUR"}, "salesChannel": "web"},
        "PaymentAuthorized": {"paymentId": "p-1", "authorizedMinor": 1300, "currency": "EUR"},
        "InventoryReserved": {"warehouseId": "w-1"},
        "OrderShipped": {"carrier": "DHL", "trackingNumber": "1"},
        "OrderDelivered": {},
        "RefundIssued": {"items": [{"sku": "A", "quantity": 1}], "amountMinor": 150, "currency": "EUR", "reason": "damaged"},
    }
    body = bodies[event_type]
    version = CODEC.registry.get(event_type).version
    return {
        "envelope": {
            "eventId": f"e-{order_id}-{seq}", "eventType": event_type, "schemaVersion": version, "orderId": order_id,
            "seq": seq, "occurredAt": T0 + seq * 1000 if at is None else at, "correlationId": "c", "causationId": "x",
        },
        **body, **payload,
    }


def delivered(order_id: str = "o-1") -> list[dict[str, Any]]:
    """Placed, paid, reserved, shipped, delivered: the state a refund needs."""
    return [event(kind, seq, order_id=order_id) for seq, kind in enumerate(HAPPY, start=1)]


def placed(items: list[Any], *, partition: int | None = None) -> list[RawRecord]:
    """Records in log order, each on its key's partition (unless ``partition`` says otherwise);
    an item is an event dict or a (key, value bytes) pair."""
    offsets: dict[int, int] = {}
    out = []
    for item in items:
        if isinstance(item, tuple):
            key, value = item
        else:
            key, value = item["envelope"]["orderId"].encode(), CODEC.encode(item)
        p = partition_for(key, PARTITIONS) if partition is None else partition
        offsets[p] = offsets.get(p, -1) + 1
        out.append(RawRecord(p, offsets[p], key, value, T0))
    return out


Letter = tuple[int, int, str, str]


def run_live(projection: Projection, recs: list[RawRecord],
             states: dict[tuple[int, bytes | None], FakeState] | None = None) -> tuple[list[Letter], PipelineStats]:
    """The live step 1 over ``recs`` (one Quix state per partition and key, one cache for all, as in one process)."""
    stats = PipelineStats(projection.name)
    step = live_steps.OrderStep(projection, stats, rekeyed=view_spec(projection.name).rekeyed, partition_count=PARTITIONS)
    letters = [(item.source_partition, item.source_offset, item.reason_class, item.reason)
               for item in drive_live_step(step, recs, states=states) if isinstance(item, DeadLetter)]
    return letters, stats


def run_replay(projection: Projection, recs: list[RawRecord]) -> tuple[list[Letter], OrderFolder, list[tuple[Any, ...]]]:
    """The replay fold over ``recs``, and its re-keyed step 2 over the changes (it must not raise either)."""
    letters: list[DeadLetter] = []
    folder = OrderFolder(projection, topic="orders", decode=DECODE, on_dead_letter=letters.append, partition_count=PARTITIONS)
    changes: list[tuple[Any, ...]] = []
    folder.fold(recs, changes)
    view = ViewFolder(projection)
    for key, payload, order_id, seq, valid_from, _, _ in changes:
        view.apply(key, payload, order_id, seq, valid_from)
    return [(d.source_partition, d.source_offset, d.reason_class, d.reason) for d in letters], folder, changes


def judged(view: str, items: list[Any], *, partition: int | None = None) -> list[Letter]:
    """The dead letters of ``items``, after checking live and replay give the same ones and the same counts."""
    recs = placed(items, partition=partition)
    live, stats = run_live(get_projection(view), recs)
    replayed, folder, _ = run_replay(get_projection(view), recs)
    assert live == replayed
    c = folder.counters
    assert (stats.applied, stats.duplicates, stats.dead_lettered) == (c.applied, c.duplicates, c.dead_lettered)
    assert c.events_in == c.applied + c.duplicates + c.dead_lettered + c.beyond_as_of == len(recs)
    return live


def classes(letters: list[Letter]) -> list[str]:
    return [letter[2] for letter in letters]


def reframed(schema_type: str, body: dict[str, Any]) -> bytes:
    """``body`` written with ``schema_type``'s newest schema and fingerprint, whatever its envelope says."""
    schema = CODEC.registry.get(schema_type)
    buf = BytesIO()
    buf.write(MAGIC + schema.fingerprint)
    schemaless_writer(buf, schema.parsed, body)
    return buf.getvalue()


ALL_VIEWS = ["order-status", "customer-summary", "product-sales", "revenue-hourly", "payments-daily"]


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_a_body_of_another_type_than_its_envelope_says_is_a_codec_error(view: str) -> None:
    """Scenario: a PaymentAuthorized body (its schema's fingerprint) whose envelope says OrderPlaced, as an order's
    first event (it crashed the order fold with KeyError 'customerId'). We expect a CodecError dead letter, then the
    real OrderPlaced applies."""
    body = event("PaymentAuthorized", 1)
    body["envelope"]["eventType"] = "OrderPlaced"
    letters = judged(view, [(b"o-1", reframed("PaymentAuthorized", body)), event("OrderPlaced", 1)])
    assert classes(letters) == ["CodecError"] and "OrderPlaced" in letters[0][3]


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_a_refund_of_a_sku_the_order_lacks_is_unknown_sku(view: str) -> None:
    """Scenario: a delivered order, then a refund line of SKU "Z" (product-sales raised KeyError on every restart).
    We expect an UnknownSku dead letter naming the SKU; the order stays DELIVERED, so the real refund still applies."""
    bad = event("RefundIssued", 6, items=[{"sku": "Z", "quantity": 1}])
    letters = judged(view, [*delivered(), bad, event("RefundIssued", 6)])
    assert classes(letters) == [UNKNOWN_SKU] and "'Z'" in letters[0][3]


@pytest.mark.parametrize("change,reason_class", [
    ({"items": [{"sku": "A", "quantity": 3}]}, IMPOSSIBLE_REFUND),                           # 2 ordered
    ({"items": [{"sku": "A", "quantity": 2}, {"sku": "A", "quantity": 1}]}, IMPOSSIBLE_REFUND),  # 3 of 2, in two lines
    ({"amountMinor": 1301}, IMPOSSIBLE_REFUND),                                               # more than the total
    ({"amountMinor": -150}, INVALID_VALUE),
    ({"items": [{"sku": "A", "quantity": 0}]}, INVALID_VALUE),
    ({"items": [{"sku": "A", "quantity": -1}]}, INVALID_VALUE),
    ({"currency": "USD"}, CURRENCY_MISMATCH),
])
def test_an_impossible_refund_is_a_dead_letter(change: dict[str, Any], reason_class: str) -> None:
    """Scenario: refunds of more units or money than the order has, of no units, in another currency.
    We expect a dead letter of the named class in every view (product-sales read the bad quantities as negative sales)."""
    for view in ALL_VIEWS:
        assert classes(judged(view, [*delivered(), event("RefundIssued", 6, **change)])) == [reason_class], view


@pytest.mark.parametrize("change,field", [
    ({"customerId": ""}, "customerId"),
    ({"items": [{"sku": "", "quantity": 1, "unitPriceMinor": 100}]}, "items[0].sku"),
    ({"items": [{"sku": "A", "quantity": -2, "unitPriceMinor": 150}]}, "items[0].quantity"),
    ({"items": [{"sku": "A", "quantity": 2, "unitPriceMinor": -150}]}, "items[0].unitPriceMinor"),
    ({"items": [{"sku": "A", "quantity": 1_000_000, "unitPriceMinor": 2**40}]}, "items[0]"),      # a line past 10^15
    ({"total": {"amountMinor": -1300, "currency": "EUR"}}, "total.amountMinor"),
    ({"total": {"amountMinor": 2**62, "currency": "EUR"}}, "total.amountMinor"),
    ({"total": {"amountMinor": 1300, "currency": "eur"}}, "total.currency"),
    ({"total": {"amountMinor": 1300, "currency": "E:U"}}, "total.currency"),                     # broke the window key
])
def test_an_order_placed_outside_its_fields_domain_is_invalid_value(change: dict[str, Any], field: str) -> None:
    """Scenario: an OrderPlaced (v3) with one field outside its domain, then the rest of a happy order.
    We expect one InvalidValue naming the field, then Parked behind it for each later event (the order never started)."""
    for view in ALL_VIEWS:
        letters = judged(view, [event("OrderPlaced", 1, **change), *delivered()[1:]])
        assert classes(letters) == [INVALID_VALUE] + ["Parked"] * 4, view
        assert letters[0][3].startswith(f"{field} "), letters[0][3]


def test_a_currency_that_breaks_a_window_key_no_longer_crashes_revenue_hourly() -> None:
    """Scenario: an order in currency "E:U" is delivered (the window key "E:U:<start>" made the late rule raise
    ValueError in the kernel on every restart). We expect the OrderPlaced refused as InvalidValue, nothing folded."""
    letters = judged("revenue-hourly", [event("OrderPlaced", 1, total={"amountMinor": 1300, "currency": "E:U"}), *delivered()[1:]])
    assert classes(letters)[0] == INVALID_VALUE


@pytest.mark.parametrize("change,reason_class", [
    ({"authorizedMinor": -1}, INVALID_VALUE),
    ({"authorizedMinor": 10**15 + 1}, INVALID_VALUE),
    ({"currency": "GBP"}, CURRENCY_MISMATCH),
])
def test_a_payment_outside_its_domain_or_currency_is_a_dead_letter(change: dict[str, Any], reason_class: str) -> None:
    """Scenario: a PaymentAuthorized of a negative or absurd amount, or in another currency than the order's.
    We expect a dead letter of that class, then the real payment applies (payments-daily counted the bad one)."""
    for view in ALL_VIEWS:
        letters = judged(view, [event("OrderPlaced", 1), event("PaymentAuthorized", 2, **change), event("PaymentAuthorized", 2)])
        assert classes(letters) == [reason_class], view


@pytest.mark.parametrize("envelope,field", [
    ({"seq": 0}, "envelope.seq"),                      # was a "duplicate" of nothing
    ({"seq": -5}, "envelope.seq"),
    ({"occurredAt": -1}, "envelope.occurredAt"),
    ({"occurredAt": 2**50}, "envelope.occurredAt"),     # year 37648
])
def test_an_envelope_outside_its_domain_is_invalid_value(envelope: dict[str, Any], field: str) -> None:
    """Scenario: an order's first event with seq <= 0 or an absurd occurredAt, then its real events.
    We expect one InvalidValue naming the field, and the real events applied."""
    bad = event("OrderPlaced", 1)
    bad["envelope"].update(envelope)
    for view in ALL_VIEWS:
        letters = judged(view, [bad, *delivered()])
        assert classes(letters) == [INVALID_VALUE], view
        assert letters[0][3].startswith(f"{field} ")


def test_an_absurd_event_time_does_not_move_stream_time() -> None:
    """Scenario: revenue-hourly; a record stamped in the year 37648 arrives before a delivery in the first hour.
    We expect it refused before stream time moves: the delivery is on time, not a LateEvent."""
    absurd = event("OrderPlaced", 1, order_id="o-2")
    absurd["envelope"]["occurredAt"] = 2**50
    letters = judged("revenue-hourly", [*delivered()[:4], absurd, delivered()[4]])
    assert classes(letters) == [INVALID_VALUE]


def test_an_empty_order_id_is_invalid_value_even_under_an_empty_key() -> None:
    """Scenario: an OrderPlaced with orderId "" under the record key b"" (the key check alone let it through).
    We expect InvalidValue."""
    letters = judged("order-status", [(b"", CODEC.encode(event("OrderPlaced", 1, order_id="")))])
    assert classes(letters) == [INVALID_VALUE]


def test_a_key_that_only_decodes_to_the_order_id_is_a_key_mismatch() -> None:
    """Scenario: the key b"\\xff" and the orderId U+FFFD (what b"\\xff" decodes to with errors="replace"); they are two
    keys to Kafka's partitioner and to Quix's per-key state. We expect KeyMismatch."""
    letters = judged("order-status", [(b"\xff", CODEC.encode(event("OrderPlaced", 1, order_id="\ufffd")))])
    assert classes(letters) == [KEY_MISMATCH]


def wrong_partition_of(key: bytes) -> int:
    return (partition_for(key, PARTITIONS) + 1) % PARTITIONS


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_an_event_on_another_partition_than_its_key_is_wrong_partition(view: str) -> None:
    """Scenario: o-1 placed and paid on its key's partition, then its InventoryReserved (seq 3) on another partition
    (another producer's partitioner); read by one process whose row cache held o-1's row (it was applied), by a
    process restarted in between (no row on that partition: SequenceGap), by one replay worker for both partitions
    and by two. We expect WrongPartition every time, naming both partitions."""
    right = placed([event("OrderPlaced", 1), event("PaymentAuthorized", 2)])
    wrong = wrong_partition_of(b"o-1")
    stray = RawRecord(wrong, 0, b"o-1", CODEC.encode(event("InventoryReserved", 3)), T0)
    one_process, _ = run_live(get_projection(view), [*right, stray])
    states: dict[tuple[int, bytes | None], FakeState] = {}
    run_live(get_projection(view), right, states)
    restarted, _ = run_live(get_projection(view), [stray], states)  # a new step: an empty row cache
    one_worker, folder, _ = run_replay(get_projection(view), [*right, stray])
    two_workers = run_replay(get_projection(view), right)[0] + run_replay(get_projection(view), [stray])[0]
    assert one_process == restarted == one_worker == two_workers
    assert classes(one_worker) == [WRONG_PARTITION]
    assert f"partition {wrong}" in one_worker[0][3] and f"partition {partition_for(b'o-1', PARTITIONS)} of {PARTITIONS}" in one_worker[0][3]
    assert folder.counters.applied == 2


class ExplodingProjection:
    """order-status, except that its deltas raise on OrderShipped (a fold bug no rule foresaw)."""

    name = "order-status"
    key_field = "orderId"

    def __init__(self) -> None:
        self._inner = get_projection("order-status")

    def deltas(self, event: Any, after: Row) -> Any:
        if event["envelope"]["eventType"] == "OrderShipped":
            raise ZeroDivisionError("division by zero")
        return self._inner.deltas(event, after)

    def apply(self, row: Row | None, change: Change) -> Row:
        return self._inner.apply(row, change)


def test_an_exception_in_a_fold_is_a_fold_error_dead_letter() -> None:
    """Scenario: a projection raises on one event type. We expect a FoldError dead letter naming the exception and
    the event, the same live and in replay, and the order row unchanged (the next event is parked behind it)."""
    recs = placed(delivered())
    live, _ = run_live(ExplodingProjection(), recs)
    replayed, folder, _ = run_replay(ExplodingProjection(), recs)
    assert live == replayed
    assert classes(replayed) == [FOLD_ERROR, "Parked"]
    assert replayed[0][3] == "ZeroDivisionError folding OrderShipped seq 4 into order-status: division by zero"
    assert folder.counters.applied == 3


def test_the_kernel_alone_turns_a_fold_exception_into_a_verdict() -> None:
    """Scenario: process_record with a projection that raises. We expect a "dead" verdict, not an exception."""
    shipped = CODEC.encode(event("OrderShipped", 4))
    row = {"orderId": "o-1", "status": "INVENTORY_RESERVED", "lastSeq": 3, "validFrom": T0, "shippedAt": None}
    verdict = process_record(ExplodingProjection(), b"o-1", shipped, decode=DECODE, row_of=lambda _: row, stream_time_ms=None,
                             partition=partition_for(b"o-1", PARTITIONS), partition_count=PARTITIONS)
    assert (verdict.outcome, verdict.reason_class, verdict.after) == ("dead", FOLD_ERROR, None)
