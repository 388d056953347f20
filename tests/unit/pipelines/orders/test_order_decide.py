"""The order service's decide-and-append, no server: an event store on a SQLite file, the real codec.

Expected outcomes come from facts written here (tests/lifecycle_spec.py's hand-written lifecycle,
the amounts each test states), never from running decide again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from pipelines.orders.commands import (
    AuthorizePayment,
    CancelOrder,
    Command,
    DeliverOrder,
    IssueRefund,
    LineItem,
    PlaceOrder,
    RecordPaymentFailure,
    RefundLine,
    ReleaseInventory,
    ReserveInventory,
    ShipOrder,
    request_hash,
)
from pipelines.orders.database import migrate, open_database
from pipelines.orders.errors import (
    CommandConflictError,
    CommandError,
    CommandIdReusedError,
    ConcurrentCommandError,
    InvalidCommandError,
    OrderNotFoundError,
)
from pipelines.orders.event_store import EventStore
from pipelines.orders.tables import commands, events, outbox, outbox_shard
from schemas.codec import EventCodec
from tests.lifecycle_spec import LIFECYCLE

T0 = 1_800_000_000_000
_ids = itertools.count(1)


def cid() -> str:
    return f"cmd-{next(_ids)}"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_database(f"sqlite:///{tmp_path / 'orders.sqlite'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> EventStore:
    clock = itertools.count(T0, 1000)
    return EventStore(engine, clock_ms=lambda: next(clock))


def counts(engine: Engine) -> tuple[int, int, int]:
    """Rows in events, outbox, commands."""
    with engine.connect() as conn:
        n = [conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (events, outbox, commands)]
    return n[0], n[1], n[2]


def place(order_id: str, *, items: list[tuple[str, int, int]] | None = None, currency: str = "EUR", command_id: str | None = None) -> PlaceOrder:
    lines = [LineItem(sku=s, quantity=q, unit_price_minor=p) for s, q, p in (items or [("A", 2, 150), ("B", 1, 1000)])]
    return PlaceOrder(command_id=command_id or cid(), order_id=order_id, customer_id="cust-1", items=lines, currency=currency)


# Each command kind, the event it asks for (a fact of the issue), and a valid instance of it for an order of ITEMS A x2 @150 + B x1 @1000.
COMMAND_EVENT: dict[str, tuple[str, Callable[[], Command]]] = {
    "pay": ("PaymentAuthorized", lambda: AuthorizePayment(command_id=cid())),
    "fail-payment": ("PaymentFailed", lambda: RecordPaymentFailure(command_id=cid(), reason="card declined")),
    "reserve": ("InventoryReserved", lambda: ReserveInventory(command_id=cid(), warehouse_id="wh-1")),
    "release": ("InventoryReleased", lambda: ReleaseInventory(command_id=cid(), reason="out of stock")),
    "ship": ("OrderShipped", lambda: ShipOrder(command_id=cid(), carrier="DHL", tracking_number="DH123")),
    "deliver": ("OrderDelivered", lambda: DeliverOrder(command_id=cid())),
    "cancel": ("OrderCancelled", lambda: CancelOrder(command_id=cid(), reason="customer request")),
    "refund": ("RefundIssued", lambda: IssueRefund(command_id=cid(), items=[RefundLine(sku="A", quantity=1)], amount_minor=150, reason="damaged")),
}
# A way into each status, in command kinds after PlaceOrder.
PATH_TO: dict[str, list[str]] = {
    "PLACED": [],
    "PAYMENT_AUTHORIZED": ["pay"],
    "PAYMENT_FAILED": ["fail-payment"],
    "INVENTORY_RESERVED": ["pay", "reserve"],
    "INVENTORY_RELEASED": ["pay", "reserve", "release"],
    "SHIPPED": ["pay", "reserve", "ship"],
    "DELIVERED": ["pay", "reserve", "ship", "deliver"],
    "REFUNDED": ["pay", "reserve", "ship", "deliver", "refund"],
    "CANCELLED": ["fail-payment", "cancel"],
}


def order_in(store: EventStore, order_id: str, status: str) -> None:
    store.execute(place(order_id))
    for kind in PATH_TO[status]:
        store.execute(COMMAND_EVENT[kind][1](), order_id=order_id)


@pytest.mark.parametrize("status", list(PATH_TO))
@pytest.mark.parametrize("kind", list(COMMAND_EVENT))
def test_every_command_in_every_status(store: EventStore, engine: Engine, status: str, kind: str) -> None:
    """Scenario: each command on an order in each status. We expect it applied exactly where the lifecycle allows it, else a 409 that writes nothing."""
    order_id = f"o-{status}-{kind}"
    order_in(store, order_id, status)
    event_type, build = COMMAND_EVENT[kind]
    before = counts(engine)
    expected = LIFECYCLE.get((status, event_type))
    if expected is None:
        with pytest.raises(CommandConflictError) as refused:
            store.execute(build(), order_id=order_id)
        assert refused.value.status == 409 and f"in status {status}" in str(refused.value) and "\n" not in str(refused.value)
        assert counts(engine) == before
    else:
        answer = store.execute(build(), order_id=order_id)
        assert answer.status == 200 and answer.json()["status"] == expected and answer.json()["eventType"] == event_type
        assert counts(engine) == tuple(n + 1 for n in before)
        assert answer.json()["seq"] == len(PATH_TO[status]) + 2


@pytest.mark.parametrize("kind", list(COMMAND_EVENT))
def test_a_command_on_an_unknown_order_is_a_404(store: EventStore, engine: Engine, kind: str) -> None:
    """Scenario: a command names an order that was never placed. We expect a 404 that writes nothing."""
    with pytest.raises(OrderNotFoundError) as refused:
        store.execute(COMMAND_EVENT[kind][1](), order_id="never-placed")
    assert refused.value.status == 404 and "never-placed" in str(refused.value)
    assert counts(engine) == (0, 0, 0)


def test_placing_an_existing_order_is_a_409(store: EventStore, engine: Engine) -> None:
    """Scenario: PlaceOrder twice for one order id, different command ids. We expect the second refused with a 409."""
    store.execute(place("o-1"))
    with pytest.raises(CommandConflictError, match="o-1 already exists"):
        store.execute(place("o-1"))
    assert counts(engine) == (1, 1, 1)


def test_the_event_and_its_outbox_row_hold_the_same_codec_bytes(store: EventStore, engine: Engine) -> None:
    """Scenario: place, pay, reserve. We expect one event row and one outbox row per command, byte-identical, decoding to the event decided."""
    store.execute(place("o-1", command_id="c-place"))
    store.execute(AuthorizePayment(command_id="c-pay"), order_id="o-1")
    store.execute(ReserveInventory(command_id="c-reserve", warehouse_id="wh-7"), order_id="o-1")
    with engine.connect() as conn:
        stored = conn.execute(select(events).order_by(events.c.seq)).all()
        boxed = conn.execute(select(outbox).order_by(outbox.c.id)).all()
    codec = EventCodec()
    assert [r.seq for r in stored] == [1, 2, 3] and [r.seq for r in boxed] == [1, 2, 3]
    decoded = [codec.decode(r.payload) for r in stored]
    assert [e["envelope"]["eventType"] for e in decoded] == ["OrderPlaced", "PaymentAuthorized", "InventoryReserved"]
    assert [e["envelope"]["schemaVersion"] for e in decoded] == [3, 2, 1]  # the newest version of each type
    assert [e["envelope"]["causationId"] for e in decoded] == ["c-place", "c-pay", "c-reserve"]
    assert len({e["envelope"]["correlationId"] for e in decoded}) == 1
    assert [e["envelope"]["occurredAt"] for e in decoded] == [T0, T0 + 1000, T0 + 2000]
    assert decoded[0]["total"] == {"amountMinor": 2 * 150 + 1000, "currency": "EUR"}
    assert decoded[1]["authorizedMinor"] == 1300 and decoded[1]["currency"] == "EUR"  # defaults: the order's total and currency
    assert decoded[2]["warehouseId"] == "wh-7"
    for event_row, box in zip(stored, boxed, strict=True):
        assert box.payload == event_row.payload and box.order_id == "o-1"
        assert box.shard == outbox_shard("o-1") and box.timestamp_ms == event_row.occurred_at and box.published_at is None


def test_a_retried_command_gets_the_first_answer_and_writes_nothing(store: EventStore, engine: Engine) -> None:
    """Scenario: one PlaceOrder and one AuthorizePayment, each sent twice. We expect the same bytes back, marked replayed, and no new rows."""
    first = store.execute(place("o-1", command_id="c-1"))
    pay_first = store.execute(AuthorizePayment(command_id="c-2", amount_minor=1300), order_id="o-1")
    before = counts(engine)
    again = store.execute(place("o-1", command_id="c-1"))
    pay_again = store.execute(AuthorizePayment(command_id="c-2", amount_minor=1300), order_id="o-1")
    assert (again.status, again.body, again.replayed) == (201, first.body, True)
    assert (pay_again.status, pay_again.body, pay_again.replayed) == (200, pay_first.body, True)
    assert counts(engine) == before == (2, 2, 2)


def test_a_generated_order_id_is_kept_by_a_retry(store: EventStore, engine: Engine) -> None:
    """Scenario: PlaceOrder without an order id, sent twice. We expect one order, and the retry told its id."""
    command = PlaceOrder(command_id="c-1", customer_id="cust", items=[LineItem(sku="A", quantity=1, unit_price_minor=5)], currency="EUR")
    first, again = store.execute(command), store.execute(command)
    assert first.json()["orderId"] == again.json()["orderId"] and again.replayed
    assert counts(engine) == (1, 1, 1)


def test_a_command_id_reused_for_another_body_is_a_422(store: EventStore, engine: Engine) -> None:
    """Scenario: a command id sent again with another amount, and again for another order. We expect 422 both times and nothing written."""
    store.execute(place("o-1"))
    store.execute(place("o-2"))
    store.execute(AuthorizePayment(command_id="c-pay", amount_minor=1000), order_id="o-1")
    before = counts(engine)
    with pytest.raises(CommandIdReusedError) as refused:
        store.execute(AuthorizePayment(command_id="c-pay", amount_minor=1300), order_id="o-1")
    assert refused.value.status == 422
    with pytest.raises(CommandIdReusedError):
        store.execute(AuthorizePayment(command_id="c-pay", amount_minor=1000), order_id="o-2")
    with pytest.raises(CommandIdReusedError):
        store.execute(ReserveInventory(command_id="c-pay", warehouse_id="w"), order_id="o-1")
    assert counts(engine) == before


def test_a_refused_command_records_nothing_so_its_id_can_be_retried(store: EventStore, engine: Engine) -> None:
    """Scenario: ShipOrder refused (not reserved yet), then the order reserved and the same ShipOrder retried. We expect the retry decided afresh: shipped."""
    order_in(store, "o-1", "PAYMENT_AUTHORIZED")
    ship = ShipOrder(command_id="c-ship", carrier="UPS", tracking_number="1Z")
    before = counts(engine)
    with pytest.raises(CommandConflictError):
        store.execute(ship, order_id="o-1")
    assert counts(engine) == before
    store.execute(ReserveInventory(command_id=cid(), warehouse_id="w"), order_id="o-1")
    assert store.execute(ship, order_id="o-1").json()["status"] == "SHIPPED"


@pytest.mark.parametrize(
    "items,total",
    [
        ([("A", 3, 333), ("B", 1, 1)], 1000),
        ([("A", 1_000_000, 1_000_000_000)], 10**15),  # the largest line and total the domain allows, exact
        ([("A", 7, 0)], 0),
    ],
)
def test_the_total_is_the_exact_sum_of_the_lines(store: EventStore, items: list[tuple[str, int, int]], total: int) -> None:
    """Scenario: orders whose totals a float would round. We expect the total exact, in integer minor units."""
    answer = store.execute(place("o-1", items=items))
    assert answer.json()["order"]["totalMinor"] == total


@pytest.mark.parametrize(
    "items,problem",
    [
        ([("A", -1, 100)], "items[0].quantity -1"),
        ([("A", 0, 100)], "items[0].quantity 0"),
        ([("A", 1, -5)], "items[0].unitPriceMinor -5"),
        ([("A", 1_000_001, 1)], "items[0].quantity 1000001"),
        ([("A", 1, 10**15 + 1)], "items[0].unitPriceMinor"),
        ([("A", 1_000_000, 10**9), ("B", 1, 1)], "total.amountMinor 1000000000000001"),
    ],
)
def test_a_line_outside_its_domain_is_a_422(store: EventStore, engine: Engine, items: list[tuple[str, int, int]], problem: str) -> None:
    """Scenario: PlaceOrder with a negative, zero or too large quantity or price, or a total past the money bound. We expect a 422 naming it."""
    with pytest.raises(InvalidCommandError) as refused:
        store.execute(place("o-1", items=items))
    assert refused.value.status == 422 and problem in str(refused.value)
    assert counts(engine) == (0, 0, 0)


@pytest.mark.parametrize("currency", ["EUT", "eur", "EU", "EURO", "", "XXX", "XAU"])
def test_an_unknown_currency_is_refused_by_the_model(currency: str) -> None:
    """Scenario: a currency that is not an active ISO 4217 code of money. We expect the command model refused, naming it."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="currency"):
        place("o-1", currency=currency)


@pytest.mark.parametrize(
    "fields",
    [
        {"items": [{"sku": "A", "quantity": 1.0, "unitPriceMinor": 5}]},  # a float is not an integer, even 1.0
        {"items": [{"sku": "A", "quantity": 1, "unitPriceMinor": "5"}]},
        {"items": [{"sku": "A", "quantity": True, "unitPriceMinor": 5}]},
        {"items": []},
        {"items": [{"sku": "", "quantity": 1, "unitPriceMinor": 5}]},
        {"customerId": ""},
        {"orderId": "a/b"},
        {"orderId": "x" * 129},
        {"commandId": ""},
        {"customerId": "\ud800"},
        {"colour": "red"},  # no such field
    ],
)
def test_a_malformed_place_order_is_refused_by_the_model(fields: dict[str, Any]) -> None:
    """Scenario: PlaceOrder bodies of the wrong shape. We expect the model to refuse each."""
    from pydantic import ValidationError

    body = {"commandId": "c", "customerId": "cu", "items": [{"sku": "A", "quantity": 1, "unitPriceMinor": 5}], "currency": "EUR", **fields}
    with pytest.raises(ValidationError):
        PlaceOrder.model_validate(body)


def test_a_payment_in_another_currency_or_over_the_total_is_a_422(store: EventStore, engine: Engine) -> None:
    """Scenario: AuthorizePayment in USD for a EUR order, above the 1300 total, negative. We expect 422 each, then the order still payable."""
    store.execute(place("o-1"))
    before = counts(engine)
    for command, problem in [
        (AuthorizePayment(command_id=cid(), currency="USD"), "currency 'USD' is not the order's 'EUR'"),
        (AuthorizePayment(command_id=cid(), amount_minor=1301), "amountMinor 1301 is more than the order's total 1300"),
        (AuthorizePayment(command_id=cid(), amount_minor=-1), "authorizedMinor -1"),
    ]:
        with pytest.raises(InvalidCommandError, match=problem.replace("(", r"\(")):
            store.execute(command, order_id="o-1")
    assert counts(engine) == before
    assert store.execute(AuthorizePayment(command_id=cid(), currency="EUR"), order_id="o-1").json()["status"] == "PAYMENT_AUTHORIZED"


def _delivered(store: EventStore, order_id: str, *, paid: int) -> None:
    store.execute(place(order_id))  # A x2 @150 + B x1 @1000 = 1300
    for command in (AuthorizePayment(command_id=cid(), amount_minor=paid), ReserveInventory(command_id=cid(), warehouse_id="w"),
                    ShipOrder(command_id=cid(), carrier="c", tracking_number="t"), DeliverOrder(command_id=cid())):
        store.execute(command, order_id=order_id)


@pytest.mark.parametrize(
    "lines,amount,problem",
    [
        ([("A", 1)], 1301, "amountMinor 1301 is more than the 1300 left to refund"),
        ([("A", 3)], 100, "3 units of 'A' refunded, but the order has 2"),
        ([("C", 1)], 100, "items[0].sku 'C' is not in the order"),
        ([("A", -1)], 100, "items[0].quantity -1"),
        ([("A", 1)], -5, "amountMinor -5"),
    ],
)
def test_an_impossible_refund_is_a_422(store: EventStore, engine: Engine, lines: list[tuple[str, int]], amount: int, problem: str) -> None:
    """Scenario: refunds of a delivered 1300 EUR order beyond its total, its units or its SKUs, or negative. We expect a 422 naming the problem."""
    _delivered(store, "o-1", paid=1300)
    before = counts(engine)
    refund = IssueRefund(command_id=cid(), items=[RefundLine(sku=s, quantity=q) for s, q in lines], amount_minor=amount, reason="r")
    with pytest.raises(InvalidCommandError) as refused:
        store.execute(refund, order_id="o-1")
    assert problem in str(refused.value)
    assert counts(engine) == before


def test_a_refund_larger_than_what_was_paid_is_a_422(store: EventStore, engine: Engine) -> None:
    """Scenario: a 1300 order of which 1000 was authorized, then a refund of 1001, then one of 1000. We expect the first refused, the second applied."""
    _delivered(store, "o-1", paid=1000)
    with pytest.raises(InvalidCommandError, match="amountMinor 1001 is more than the 1000 paid and not yet refunded"):
        store.execute(IssueRefund(command_id=cid(), items=[], amount_minor=1001, reason="r"), order_id="o-1")
    answer = store.execute(IssueRefund(command_id=cid(), items=[RefundLine(sku="B", quantity=1)], amount_minor=1000, reason="r"), order_id="o-1")
    assert answer.json()["order"]["refundedMinor"] == 1000 and answer.json()["status"] == "REFUNDED"


def test_two_threads_racing_on_one_order_one_wins(store: EventStore, engine: Engine) -> None:
    """Scenario: two threads authorize the payment of one order at once, with different command ids. We expect exactly one 200 and one 409."""
    store.execute(place("o-1"))
    barrier = threading.Barrier(2)
    outcomes: list[int] = []

    def run(command_id: str) -> None:
        barrier.wait(timeout=10)
        try:
            outcomes.append(store.execute(AuthorizePayment(command_id=command_id), order_id="o-1").status)
        except CommandError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=run, args=(f"c-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == [200, 409]
    assert counts(engine) == (2, 2, 2)


def test_a_writer_that_lost_the_seq_gets_a_409_and_writes_nothing(store: EventStore, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario: a command decided on a stale read of its order (seq 1) after another committed seq 2. We expect the primary key to refuse it:
    a 409 naming the seq, nothing written, and its retry (same command id) decided afresh."""
    store.execute(place("o-1"))
    stale = store.load("o-1")
    store.execute(RecordPaymentFailure(command_id="c-winner", reason="declined"), order_id="o-1")
    before = counts(engine)
    real_load = EventStore._load
    monkeypatch.setattr(EventStore, "_load", lambda self, conn, order_id: stale)  # what a racing reader saw before the winner committed
    with pytest.raises(ConcurrentCommandError, match="concurrent command on order o-1 won seq 2; retry") as lost:
        store.execute(AuthorizePayment(command_id="c-loser"), order_id="o-1")
    assert lost.value.status == 409
    assert counts(engine) == before
    monkeypatch.setattr(EventStore, "_load", real_load)
    with pytest.raises(CommandConflictError, match="PaymentAuthorized is not allowed in status PAYMENT_FAILED"):
        store.execute(AuthorizePayment(command_id="c-loser"), order_id="o-1")


def test_the_order_view_lists_its_events(store: EventStore) -> None:
    """Scenario: an order placed and paid. We expect its row and its two events (seq, type, command) from the event store."""
    store.execute(place("o-1", command_id="c-1"))
    store.execute(AuthorizePayment(command_id="c-2"), order_id="o-1")
    view = store.order("o-1")
    assert view["order"]["status"] == "PAYMENT_AUTHORIZED" and view["order"]["lastSeq"] == 2
    assert [(e["seq"], e["eventType"], e["commandId"]) for e in view["events"]] == [(1, "OrderPlaced", "c-1"), (2, "PaymentAuthorized", "c-2")]
    with pytest.raises(OrderNotFoundError):
        store.order("o-2")


def test_occurred_at_is_the_events_business_time(store: EventStore, engine: Engine) -> None:
    """Scenario: an order placed at T1 and paid at T1 - 5 s (the provider's clock), then reserved with no time given.
    We expect the events and outbox rows stamped T1, T1 - 5 s and the service's clock, and the row's validFrom never going back."""
    t1 = 1_704_067_200_000
    store.execute(place("o-1").model_copy(update={"occurred_at": t1}))
    paid = store.execute(AuthorizePayment(command_id=cid(), occurred_at=t1 - 5000), order_id="o-1").json()
    store.execute(ReserveInventory(command_id=cid(), warehouse_id="w"), order_id="o-1")
    with engine.connect() as conn:
        stored: list[int] = list(conn.execute(select(events.c.occurred_at).order_by(events.c.seq)).scalars())
        stamped: list[int] = list(conn.execute(select(outbox.c.timestamp_ms).order_by(outbox.c.id)).scalars())
    assert stored == stamped == [t1, t1 - 5000, T0 + 2000]  # the test clock ticks once per command, given a time or not
    assert paid["occurredAt"] == t1 - 5000 and paid["order"]["paidAt"] == t1 - 5000 and paid["order"]["validFrom"] == t1


@pytest.mark.parametrize("occurred_at", [-1, 4_102_444_800_000, 2**70])
def test_an_occurred_at_outside_the_domain_is_a_422(store: EventStore, engine: Engine, occurred_at: int) -> None:
    """Scenario: a PlaceOrder and a payment stamped before 1970 or from 2100 on. We expect a 422 naming occurredAt, nothing written."""
    with pytest.raises(InvalidCommandError, match="occurredAt .* is outside its domain"):
        store.execute(place("o-1").model_copy(update={"occurred_at": occurred_at}))
    assert counts(engine) == (0, 0, 0)
    store.execute(place("o-2"))
    with pytest.raises(InvalidCommandError, match="occurredAt"):
        store.execute(AuthorizePayment(command_id=cid(), occurred_at=occurred_at), order_id="o-2")
    assert counts(engine) == (1, 1, 1)


def test_occurred_at_is_part_of_what_a_command_id_asks(store: EventStore, engine: Engine) -> None:
    """Scenario: a payment at T, retried at T, then its command id sent at another time and with no time.
    We expect the retry answered as the first, the other two refused as a command id reused (422), one event."""
    store.execute(place("o-1"))
    first = store.execute(AuthorizePayment(command_id="c-pay", occurred_at=T0 - 1), order_id="o-1")
    assert store.execute(AuthorizePayment(command_id="c-pay", occurred_at=T0 - 1), order_id="o-1").body == first.body
    for other in (T0 - 2, None):
        with pytest.raises(CommandIdReusedError):
            store.execute(AuthorizePayment(command_id="c-pay", occurred_at=other), order_id="o-1")
    assert counts(engine) == (2, 2, 2)


def test_a_command_without_occurred_at_hashes_as_before_the_field_existed() -> None:
    """Scenario: the request hash of a command with no occurredAt. We expect it equal to the hash of its body without the field,
    computed here by hand, so command ids stored before the field existed are still recognised."""
    command = AuthorizePayment(command_id="c-1", amount_minor=5)
    body = {"amountMinor": 5, "currency": None, "paymentId": None}
    asked = {"type": "AuthorizePayment", "orderId": "o-1", "body": body}
    expected = hashlib.sha256(json.dumps(asked, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert request_hash(command, order_id="o-1") == expected
    assert request_hash(command.model_copy(update={"occurred_at": 1}), order_id="o-1") != expected
