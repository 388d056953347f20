"""The order service's HTTP API through FastAPI's TestClient, on SQLite and on PostgreSQL (no broker).

Every test runs on both databases (the ``database_url`` fixture); expected statuses are facts
written here (tests/lifecycle_spec.py's hand-written lifecycle, the issue's list of bad input),
never the service's own decisions replayed.
"""

from __future__ import annotations

import itertools
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

import pipelines.orders.event_store as event_store_module
from pipelines.orders.database import migrate, open_database
from pipelines.orders.decide import decide
from pipelines.orders.event_store import MAX_BATCH, EventStore
from pipelines.orders.service import REPLAYED_HEADER, create_app
from pipelines.orders.tables import commands, events, outbox
from schemas.codec import EventCodec
from tests.lifecycle_spec import LIFECYCLE

_ids = itertools.count(1)


def cid() -> str:
    return f"cmd-{next(_ids)}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty event store database: a SQLite file, or a PostgreSQL database of this test's own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'orders.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_database(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(EventStore(engine))) as client:
        yield client


def counts(engine: Engine) -> tuple[int, int, int]:
    """Rows in events, outbox, commands."""
    with engine.connect() as conn:
        n = [conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (events, outbox, commands)]
    return n[0], n[1], n[2]


ITEMS = [{"sku": "A", "quantity": 2, "unitPriceMinor": 150}, {"sku": "B", "quantity": 1, "unitPriceMinor": 1000}]  # total 1300


def place_body(order_id: str, **fields: Any) -> dict[str, Any]:
    return {"commandId": cid(), "orderId": order_id, "customerId": "cust-1", "items": ITEMS, "currency": "EUR", **fields}


# Endpoint, the event it asks for (the commands), and a valid body for an order of ITEMS.
ENDPOINTS: dict[str, tuple[str, dict[str, Any]]] = {
    "payment": ("PaymentAuthorized", {}),
    "payment-failure": ("PaymentFailed", {"reason": "card declined"}),
    "reservation": ("InventoryReserved", {"warehouseId": "wh-1"}),
    "release": ("InventoryReleased", {"reason": "out of stock"}),
    "shipment": ("OrderShipped", {"carrier": "DHL", "trackingNumber": "DH1"}),
    "delivery": ("OrderDelivered", {}),
    "cancellation": ("OrderCancelled", {"reason": "customer request"}),
    "refund": ("RefundIssued", {"items": [{"sku": "A", "quantity": 1}], "amountMinor": 150, "reason": "damaged"}),
}
PATH_TO: dict[str, list[str]] = {
    "PLACED": [],
    "PAYMENT_AUTHORIZED": ["payment"],
    "PAYMENT_FAILED": ["payment-failure"],
    "INVENTORY_RESERVED": ["payment", "reservation"],
    "INVENTORY_RELEASED": ["payment", "reservation", "release"],
    "SHIPPED": ["payment", "reservation", "shipment"],
    "DELIVERED": ["payment", "reservation", "shipment", "delivery"],
    "REFUNDED": ["payment", "reservation", "shipment", "delivery", "refund"],
    "CANCELLED": ["payment-failure", "cancellation"],
}


def send(client: TestClient, order_id: str, endpoint: str, **fields: Any) -> Any:
    return client.post(f"/orders/{order_id}/{endpoint}", json={"commandId": cid(), **ENDPOINTS[endpoint][1], **fields})


def assert_one_line_error(response: Any, status: int, *needles: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and "\n" not in body["detail"] and body["detail"], body
    for needle in needles:
        assert needle in body["detail"], body


def test_an_order_through_its_whole_lifecycle(client: TestClient, engine: Engine) -> None:
    """Scenario: place, pay, reserve, ship, deliver, refund over HTTP. We expect 201 then 200s, each status as the lifecycle says,
    and GET showing six events."""
    placed = client.post("/orders", json=place_body("o-1", commandId="c-place"))
    assert placed.status_code == 201 and placed.json()["status"] == "PLACED" and placed.json()["order"]["totalMinor"] == 1300
    expected = {"payment": "PAYMENT_AUTHORIZED", "reservation": "INVENTORY_RESERVED", "shipment": "SHIPPED", "delivery": "DELIVERED", "refund": "REFUNDED"}
    for endpoint, status in expected.items():
        answer = send(client, "o-1", endpoint)
        assert answer.status_code == 200 and answer.json()["status"] == status, answer.text
    shown = client.get("/orders/o-1")
    assert shown.status_code == 200
    assert [(e["seq"], e["eventType"]) for e in shown.json()["events"]] == list(
        enumerate(["OrderPlaced", "PaymentAuthorized", "InventoryReserved", "OrderShipped", "OrderDelivered", "RefundIssued"], start=1)
    )
    assert shown.json()["order"]["refundedMinor"] == 150
    assert counts(engine) == (6, 6, 6)
    with engine.connect() as conn:
        payloads = [r.payload for r in conn.execute(select(outbox.c.payload).order_by(outbox.c.id))]
    assert [EventCodec().decode(p)["envelope"]["seq"] for p in payloads] == [1, 2, 3, 4, 5, 6]


def test_every_endpoint_in_every_status(client: TestClient, engine: Engine) -> None:
    """Scenario: each command endpoint on an order in each status. We expect 200 where the lifecycle allows the event, else 409 with one line."""
    for (status, path), endpoint in itertools.product(PATH_TO.items(), ENDPOINTS):
        order_id = f"o-{status.lower()}-{endpoint}"
        assert client.post("/orders", json=place_body(order_id)).status_code == 201
        for step in path:
            assert send(client, order_id, step).status_code == 200
        after = LIFECYCLE.get((status, ENDPOINTS[endpoint][0]))
        answer = send(client, order_id, endpoint)
        if after is None:
            assert_one_line_error(answer, 409, f"in status {status}")
        else:
            assert answer.status_code == 200 and answer.json()["status"] == after, (status, endpoint, answer.text)


@pytest.mark.parametrize(
    "method,path,body,status,needle",
    [
        ("post", "/orders/o-1/teleport", {"commandId": "x"}, 404, "teleport"),  # an unknown command type
        ("put", "/orders/o-1/payment", {"commandId": "x"}, 405, "payment"),
        ("post", "/orders", b"{not json", 422, "body"),  # malformed body
        ("post", "/orders", [1, 2], 422, "body"),
        ("post", "/orders", {"customerId": "c", "items": ITEMS, "currency": "EUR"}, 422, "commandId"),
        ("post", "/orders", {"commandId": "x", "customerId": "c", "items": [{"sku": "A", "quantity": -1, "unitPriceMinor": 5}], "currency": "EUR"},
         422, "items[0].quantity -1"),  # negative quantity
        ("post", "/orders", {"commandId": "x", "customerId": "c", "items": [{"sku": "A", "quantity": 1, "unitPriceMinor": -5}], "currency": "EUR"},
         422, "items[0].unitPriceMinor -5"),  # negative amount
        ("post", "/orders", {"commandId": "x", "customerId": "c", "items": [{"sku": "A", "quantity": 1, "unitPriceMinor": 9.99}], "currency": "EUR"},
         422, "unitPriceMinor"),  # money as a float
        ("post", "/orders", {"commandId": "x", "customerId": "c", "items": ITEMS, "currency": "EUX"}, 422, "EUX"),  # unknown currency
        ("post", "/orders", {"commandId": "x", "customerId": "c", "items": ITEMS, "currency": "EUR", "discount": 5}, 422, "discount"),
        ("post", "/orders", {"commandId": "a b", "customerId": "c", "items": ITEMS, "currency": "EUR"}, 422, "commandId"),
        ("post", "/orders/o-1/payment", {"commandId": "x", "amountMinor": -1}, 404, "o-1"),  # the order does not exist: nothing to judge it against
        ("get", "/orders/nobody", None, 404, "nobody"),
    ],
)
def test_bad_input_gets_one_line_and_writes_nothing(
    client: TestClient, engine: Engine, method: str, path: str, body: Any, status: int, needle: str
) -> None:
    """Scenario: an unknown command, malformed bodies, negative numbers, a float, an unknown currency. We expect the status, one line naming it, no rows."""
    if isinstance(body, bytes):
        response = client.request(method, path, content=body, headers={"content-type": "application/json"})
    else:
        response = client.request(method, path, json=body) if body is not None else client.request(method, path)
    assert_one_line_error(response, status, needle)
    assert counts(engine) == (0, 0, 0)


def test_money_rules_on_an_existing_order(client: TestClient, engine: Engine) -> None:
    """Scenario: a 1300 EUR order paid 1000; payments in USD, over the total, negative; refunds over what was paid, of a SKU not ordered.
    We expect a 422 naming each, nothing written, and the order's state unchanged by them."""
    client.post("/orders", json=place_body("o-1"))
    assert_one_line_error(send(client, "o-1", "payment", currency="USD"), 422, "currency 'USD' is not the order's 'EUR'")
    assert_one_line_error(send(client, "o-1", "payment", amountMinor=1301), 422, "amountMinor 1301 is more than the order's total 1300")
    assert_one_line_error(send(client, "o-1", "payment", amountMinor=-1), 422, "authorizedMinor -1")
    assert send(client, "o-1", "payment", amountMinor=1000).status_code == 200
    for endpoint in ("reservation", "shipment", "delivery"):
        assert send(client, "o-1", endpoint).status_code == 200
    before = counts(engine)
    assert_one_line_error(send(client, "o-1", "refund", amountMinor=1001), 422, "1001 is more than the 1000 paid")
    assert_one_line_error(send(client, "o-1", "refund", amountMinor=-3), 422, "amountMinor -3")
    assert_one_line_error(send(client, "o-1", "refund", items=[{"sku": "Z", "quantity": 1}]), 422, "'Z' is not in the order")
    assert counts(engine) == before
    assert client.get("/orders/o-1").json()["order"]["status"] == "DELIVERED"


def test_retries_by_command_id(client: TestClient, engine: Engine) -> None:
    """Scenario: a PlaceOrder and a payment each sent twice, then the payment's id with another amount. We expect the first answers again, byte for byte,
    marked replayed, then a 422; one event per command."""
    body = place_body("o-1")
    first = client.post("/orders", json=body)
    again = client.post("/orders", json=dict(reversed(list(body.items()))))  # key order is not part of the command
    assert (again.status_code, again.content) == (201, first.content) and again.headers.get(REPLAYED_HEADER) == "true"
    assert REPLAYED_HEADER not in first.headers
    pay = {"commandId": "c-pay", "amountMinor": 1300}
    paid = client.post("/orders/o-1/payment", json=pay)
    paid_again = client.post("/orders/o-1/payment", json=pay)
    assert paid.status_code == 200 and paid_again.content == paid.content
    assert counts(engine) == (2, 2, 2)
    assert_one_line_error(client.post("/orders/o-1/payment", json={**pay, "amountMinor": 1200}), 422, "c-pay")
    assert_one_line_error(client.post("/orders", json={**body, "customerId": "someone else"}), 422, body["commandId"])
    assert counts(engine) == (2, 2, 2)


def test_occurred_at_over_http(client: TestClient, engine: Engine) -> None:
    """Scenario: an order placed with occurredAt T and paid with T - 1 s, a shipment stamped in 2100, a float time, a retry at another time.
    We expect T and T - 1 s in the answers and the event store, 422s naming occurredAt, and nothing written by the refusals."""
    t = 1_704_067_200_000
    placed = client.post("/orders", json=place_body("o-1", occurredAt=t))
    assert placed.status_code == 201 and placed.json()["occurredAt"] == t and placed.json()["order"]["placedAt"] == t
    pay = {"commandId": "c-pay", "occurredAt": t - 1000}
    assert client.post("/orders/o-1/payment", json=pay).json()["order"]["paidAt"] == t - 1000
    assert [e["occurredAt"] for e in client.get("/orders/o-1").json()["events"]] == [t, t - 1000]
    before = counts(engine)
    assert_one_line_error(send(client, "o-1", "reservation", occurredAt=4_102_444_800_000), 422, "occurredAt 4102444800000 is outside its domain")
    assert_one_line_error(send(client, "o-1", "reservation", occurredAt=float(t)), 422, "occurredAt")
    assert_one_line_error(client.post("/orders/o-1/payment", json={**pay, "occurredAt": t}), 422, "c-pay")
    assert counts(engine) == before


def test_placing_an_existing_order_is_a_409(client: TestClient, engine: Engine) -> None:
    """Scenario: two PlaceOrder commands (two command ids) for one order id. We expect 201, then 409 naming the order."""
    assert client.post("/orders", json=place_body("o-1")).status_code == 201
    assert_one_line_error(client.post("/orders", json=place_body("o-1")), 409, "o-1 already exists")
    assert counts(engine) == (1, 1, 1)


def test_a_race_for_one_orders_next_seq_has_one_winner(client: TestClient, engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario: two payment commands on one order at once. We expect one 200 and one 409; on PostgreSQL, where both read the order before
    either writes (held at a barrier), the loser's 409 says another command won seq 2."""
    client.post("/orders", json=place_body("o-1"))
    postgres = database_url.startswith("postgresql")
    if postgres:
        barrier = threading.Barrier(2)
        real_decide = decide

        def decide_after_both_read(*args: Any, **kwargs: Any) -> Any:
            barrier.wait(timeout=10)  # both transactions have loaded seq 1
            return real_decide(*args, **kwargs)

        monkeypatch.setattr(event_store_module, "decide", decide_after_both_read)
    start = threading.Barrier(2)
    answers: list[Any] = []

    def pay(command_id: str) -> None:
        start.wait(timeout=10)
        answers.append(client.post("/orders/o-1/payment", json={"commandId": command_id}))

    threads = [threading.Thread(target=pay, args=(f"c-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    loser = next(a for a in answers if a.status_code == 409)
    assert_one_line_error(loser, 409, "concurrent command on order o-1 won seq 2; retry" if postgres else "")
    assert counts(engine) == (2, 2, 2)


def test_healthz_names_the_database(client: TestClient, database_url: str) -> None:
    """Scenario: a healthy database. We expect 200 and its dialect."""
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok", "database": database_url.split(":")[0].split("+")[0]}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_database_that_is_down_is_a_503_within_bounds() -> None:
    """Scenario: the service's PostgreSQL does not listen. We expect every endpoint to answer 503 with one line, each within a few seconds."""
    engine = open_database(f"postgresql+psycopg://rewind@127.0.0.1:{_closed_port()}/orders")
    client = TestClient(create_app(EventStore(engine)))
    try:
        for method, path, body in [("post", "/orders", place_body("o-1")), ("post", "/orders/o-1/payment", {"commandId": "c"}),
                                   ("get", "/orders/o-1", None), ("get", "/healthz", None)]:
            started = time.monotonic()
            response = client.request(method, path, json=body)
            assert time.monotonic() - started < 10
            assert_one_line_error(response, 503, "unavailable")
    finally:
        engine.dispose()


def test_a_sqlite_file_locked_by_another_writer_is_a_503_after_its_busy_timeout(tmp_path: Path) -> None:
    """Scenario: another process holds the SQLite write lock and does not let go. We expect a 503 after the busy timeout (5 s), not a hang."""
    path = tmp_path / "orders.sqlite"
    engine = open_database(f"sqlite:///{path}")
    migrate(engine)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        response = TestClient(create_app(EventStore(engine))).post("/orders", json=place_body("o-1"))
        assert_one_line_error(response, 503, "locked")
        assert time.monotonic() - started < 15
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()


def test_the_openapi_document_lists_every_command() -> None:
    """Scenario: the service's OpenAPI document. We expect the nine command endpoints, the batch endpoint, the order read and the health check."""
    engine = open_database("sqlite:///:memory:")
    paths = TestClient(create_app(EventStore(engine))).get("/openapi.json").json()["paths"]
    engine.dispose()
    assert set(paths) == {"/orders", "/orders/{orderId}", "/healthz", "/commands", *(f"/orders/{{orderId}}/{e}" for e in ENDPOINTS)}
    assert json.dumps(paths["/orders"]["post"]["responses"]["201"]).count("CommandAnswerBody") == 1

# --- POST /commands: a batch of commands in one transaction ----------------------------------------------------
# The one comparison between the two paths: a batch leaves the event store holding the same events as the same
# commands sent one by one.


def batch_place(order_id: str, command_id: str) -> dict[str, Any]:
    return {"type": "PlaceOrder", "command": {"commandId": command_id, "orderId": order_id, "customerId": "c-1", "items": ITEMS, "currency": "EUR"}}


def step(kind: str, order_id: str, command_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "orderId": order_id, "command": {"commandId": command_id, **fields}}


def lifecycle(order_id: str) -> list[dict[str, Any]]:
    """Place, pay, reserve, ship, deliver: five commands, each legal after the one before."""
    return [
        batch_place(order_id, f"{order_id}-1"),
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
    too_many = [batch_place(f"o-{n}", f"c-{n}") for n in range(MAX_BATCH + 1)]
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
    real_decide = decide

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
