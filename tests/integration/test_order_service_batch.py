"""POST /commands, the order service's batch endpoint, on SQLite and on PostgreSQL (no broker).

Expected statuses are facts written here (the order lifecycle, the bad input), not the service's
decisions replayed; the one comparison between the two paths is that a batch leaves the event
store holding the same events as the same commands sent one by one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

import pipelines.orders.event_store as event_store_module
from pipelines.orders.database import migrate, open_database
from pipelines.orders.event_store import MAX_BATCH, EventStore
from pipelines.orders.tables import commands, events, outbox
from schemas.codec import EventCodec

ITEMS = [{"sku": "A", "quantity": 2, "unitPriceMinor": 150}, {"sku": "B", "quantity": 1, "unitPriceMinor": 1000}]  # total 1300


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'orders.sqlite'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = open_database(url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    from pipelines.orders.service import create_app

    with TestClient(create_app(EventStore(engine))) as client:
        yield client


def counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        n = [conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (events, outbox, commands)]
    return n[0], n[1], n[2]


def place(order_id: str, command_id: str) -> dict[str, Any]:
    return {"type": "PlaceOrder", "command": {"commandId": command_id, "orderId": order_id, "customerId": "c-1", "items": ITEMS, "currency": "EUR"}}


def step(kind: str, order_id: str, command_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "orderId": order_id, "command": {"commandId": command_id, **fields}}


def lifecycle(order_id: str) -> list[dict[str, Any]]:
    """Place, pay, reserve, ship, deliver: five commands, each legal after the one before."""
    return [
        place(order_id, f"{order_id}-1"),
        step("AuthorizePayment", order_id, f"{order_id}-2"),
        step("ReserveInventory", order_id, f"{order_id}-3", warehouseId="wh-1"),
        step("ShipOrder", order_id, f"{order_id}-4", carrier="DHL", trackingNumber="T1"),
        step("DeliverOrder", order_id, f"{order_id}-5"),
    ]


def test_a_batch_decides_in_order_and_refuses_each_bad_command_alone(client: TestClient, engine: Engine) -> None:
    """Scenario: two orders' lifecycles interleaved in one batch, plus a shipment of an unreserved order, a refund above what
    was paid, an unknown command type, a malformed body, a step on an order that does not exist, and a command id sent twice.
    We expect 201/200 for the lifecycle in order (each later command sees the batch's earlier events), the refusals each with
    its own status and one line, the repeated id answered as a retry, and only the accepted commands written."""
    a, b = lifecycle("o-a"), lifecycle("o-b")
    batch = [a[0], b[0], a[1], step("ShipOrder", "o-b", "bad-ship", carrier="DHL", trackingNumber="T"), b[1], a[2], b[2], a[3], b[3],
             a[4], b[4], step("IssueRefund", "o-a", "bad-refund", items=[], amountMinor=1301, reason="r"),
             {"type": "TeleportOrder", "orderId": "o-a", "command": {"commandId": "x"}},
             step("ReserveInventory", "o-a", "no-warehouse"), step("AuthorizePayment", "o-nobody", "ghost"), a[1]]
    answer = client.post("/commands", json={"commands": batch})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [201, 201, 200, 409, 200, 200, 200, 200, 200, 200, 200, 422, 422, 422, 404, 200]
    assert [r["answer"]["status"] for r in results[:3]] == ["PLACED", "PLACED", "PAYMENT_AUTHORIZED"]
    assert results[9]["answer"]["status"] == results[10]["answer"]["status"] == "DELIVERED"
    for r, needle in zip(results[11:15], ("1301", "TeleportOrder", "warehouseId", "o-nobody"), strict=True):
        assert r["error"] and "\n" not in r["detail"] and needle in r["detail"], r
    assert results[3]["error"] == "CommandConflictError" and "o-b" in results[3]["detail"]
    assert results[15]["replayed"] is True and results[15]["answer"] == results[2]["answer"]
    assert counts(engine) == (10, 10, 10)
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.order_id, outbox.c.payload).order_by(outbox.c.id)).all()
    # The outbox in commit order: each order's events in seq order (the relay publishes in this order).
    for order_id in ("o-a", "o-b"):
        seqs = [EventCodec().decode(r.payload)["envelope"]["seq"] for r in rows if r.order_id == order_id]
        assert seqs == [1, 2, 3, 4, 5]


def test_a_batch_sent_again_is_answered_again_and_writes_nothing(client: TestClient, engine: Engine) -> None:
    """Scenario: a batch of three lifecycles, then the same batch again (a client retry after a lost answer). We expect the
    first answers again, byte for byte, each marked replayed, and no new row."""
    batch = lifecycle("o-1") + lifecycle("o-2") + lifecycle("o-3")
    first = client.post("/commands", json={"commands": batch})
    assert [r["status"] for r in first.json()["results"]] == [201, 200, 200, 200, 200] * 3
    assert counts(engine) == (15, 15, 15)
    again = client.post("/commands", json={"commands": batch})
    assert all(r["replayed"] for r in again.json()["results"])
    assert [r["answer"] for r in again.json()["results"]] == [r["answer"] for r in first.json()["results"]]
    assert counts(engine) == (15, 15, 15)


def test_a_batch_stores_what_the_same_commands_one_by_one_store(client: TestClient, engine: Engine) -> None:
    """Scenario: one order's lifecycle as a batch, another's through the single endpoints. We expect the same event types,
    seqs and order rows (ids and times aside)."""
    client.post("/commands", json={"commands": lifecycle("o-batch")})
    paths = ["payment", "reservation", "shipment", "delivery"]
    singles = lifecycle("o-single")
    assert client.post("/orders", json=singles[0]["command"]).status_code == 201
    for path, command in zip(paths, singles[1:], strict=True):
        assert client.post(f"/orders/o-single/{path}", json=command["command"]).status_code == 200
    shown = {o: client.get(f"/orders/{o}").json() for o in ("o-batch", "o-single")}
    kinds = {o: [(e["seq"], e["eventType"]) for e in s["events"]] for o, s in shown.items()}
    assert kinds["o-batch"] == kinds["o-single"] == list(
        enumerate(["OrderPlaced", "PaymentAuthorized", "InventoryReserved", "OrderShipped", "OrderDelivered"], start=1))
    skip = {"orderId", "placedAt", "paidAt", "reservedAt", "shippedAt", "deliveredAt", "validFrom", "lastEventId", "correlationId"}
    rows = {o: {k: v for k, v in s["order"].items() if k not in skip and not k.endswith("At")} for o, s in shown.items()}
    assert rows["o-batch"] == rows["o-single"]


def test_bad_batches_are_one_line_422s(client: TestClient, engine: Engine) -> None:
    """Scenario: no commands, more than the most a batch takes, a body that is not an object, an orderId outside the id alphabet.
    We expect a 422 with one line each and nothing written."""
    too_many = [place(f"o-{n}", f"c-{n}") for n in range(MAX_BATCH + 1)]
    bodies: tuple[dict[str, Any], ...] = ({"commands": []}, {"commands": too_many}, {"commands": "PlaceOrder"},
                                          {"commands": [step("AuthorizePayment", "o/../x", "c-1")]})
    for body in bodies:
        answer = client.post("/commands", json=body)
        assert answer.status_code == 422, answer.text
        assert set(answer.json()) == {"error", "detail"} and "\n" not in answer.json()["detail"]
    assert counts(engine) == (0, 0, 0)


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    """PostgreSQL only: on SQLite a batch holds the one write lock from its first read (BEGIN IMMEDIATE), so no
    other writer can append between its read and its insert."""
    engine = open_database(postgres_url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_a_batch_that_loses_a_race_falls_back_to_one_by_one(postgres_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario: a batch decided while another writer appends seq 2 to one of its orders (between the batch's read and its
    insert). We expect the batch's transaction rolled back, then each command decided alone, after the other writer: the
    other order's PlaceOrder accepted, the raced payment refused (409: the order is paid already), the reservation accepted
    as seq 3, and every event stored once."""
    engine = postgres_engine
    store = EventStore(engine)
    from pipelines.orders.commands import AuthorizePayment, LineItem, PlaceOrder, ReserveInventory

    lines = [LineItem.model_validate(item) for item in ITEMS]

    store.execute(PlaceOrder(command_id="p-1", order_id="o-1", customer_id="c", items=lines, currency="EUR"))
    raced = threading.Event()
    from pipelines.orders.decide import decide as real_decide

    def decide_after_a_race(command: Any, order: Any, **kwargs: Any) -> Any:
        if command.command_id == "pay-1" and not raced.is_set():
            raced.set()
            # Another writer (its own connection and transaction) takes o-1's seq 2 after this batch read o-1.
            EventStore(engine).execute(AuthorizePayment(command_id="other-writer"), order_id="o-1")
        return real_decide(command, order, **kwargs)

    monkeypatch.setattr(event_store_module, "decide", decide_after_a_race)
    results = store.execute_many([
        (PlaceOrder(command_id="p-2", order_id="o-2", customer_id="c", items=lines, currency="EUR"), None),
        (AuthorizePayment(command_id="pay-1"), "o-1"),
        (ReserveInventory(command_id="res-1", warehouse_id="w"), "o-1"),
    ])
    assert raced.is_set()
    statuses = [getattr(r, "status", None) for r in results]
    # o-2 placed; o-1's payment now comes after the other writer's payment: a second payment is not allowed (409);
    # the reservation follows the other writer's payment and is accepted.
    assert statuses == [201, 409, 200], results
    with engine.connect() as conn:
        stored = conn.execute(select(events.c.order_id, events.c.seq, events.c.command_id).order_by(events.c.order_id, events.c.seq)).all()
    assert [tuple(r) for r in stored] == [("o-1", 1, "p-1"), ("o-1", 2, "other-writer"), ("o-1", 3, "res-1"), ("o-2", 1, "p-2")]
