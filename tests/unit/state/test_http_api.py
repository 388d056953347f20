"""The HTTP API over a real RocksDB store (no broker): answers, positions, and every error path (404/422/503)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from state.http_api import create_app
from state.query import QueryService
from state.replica import ReplicaStatus
from state.rocks_store import ReadOnlyStoreView, RocksStore, open_store
from tests.unit.state.state_builders import ORDER_TOPIC, counter_update, order_update

T0 = 1795273200000  # 2026-11-21T15:00:00Z


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RocksStore]:
    store = open_store(tmp_path / "replica")
    store.apply(
        [order_update("o1", 1, T0, "PLACED", offset=0), order_update("o1", 2, T0 + 60_000, "PAYMENT_AUTHORIZED", offset=1),
         order_update("o2", 1, T0 + 1000, "PLACED", offset=2)],
        position={ORDER_TOPIC: {0: 3}},
    )
    store.apply([counter_update("customer-summary", "c1", "o1", 1, T0, {"lifetimeValueMinor": 500}, offset=0),
                 counter_update("customer-summary", "c2", "o2", 1, T0, {"lifetimeValueMinor": 900}, offset=1)],
                position={"view.customer-summary": {0: 2}})
    yield store
    store.close()


@pytest.fixture
def client(store: RocksStore) -> TestClient:
    return TestClient(create_app(QueryService(ReadOnlyStoreView(store), default_wait_ms=50)))


def test_views_lists_every_view_with_indexes(client: TestClient) -> None:
    """Scenario: GET /views. We expect the five views, their key fields and indexes, and the position."""
    body = client.get("/views").json()
    by_name = {v["view"]: v for v in body["views"]}
    assert set(by_name) == {"order-status", "customer-summary", "product-sales", "revenue-hourly", "payments-daily"}
    assert by_name["payments-daily"]["key_field"] == "currency:dayStart"
    assert by_name["order-status"]["indexes"] == [{"name": "status", "field": "status", "kind": "equality"}]
    assert body["position"][ORDER_TOPIC] == {"0": 3}


def test_row_now_and_as_of_in_both_time_forms(client: TestClient) -> None:
    """Scenario: o1 now, as of an ISO time and as of epoch ms. We expect the right versions, times in ms and ISO, and the position."""
    now = client.get("/views/order-status/o1").json()
    assert now["row"]["row"]["status"] == "PAYMENT_AUTHORIZED" and now["row"]["valid_to_ms"] is None
    assert now["position"] == {ORDER_TOPIC: {"0": 3}, "view.customer-summary": {"0": 2}}
    past = client.get("/views/order-status/o1", params={"as_of": "2026-11-21T15:00:59.999Z"}).json()
    assert past["row"]["row"]["status"] == "PLACED"
    assert past["row"]["valid_from"] == "2026-11-21T15:00:00.000Z" and past["row"]["valid_to_ms"] == T0 + 60_000
    assert past["as_of_ms"] == T0 + 59_999 and past["as_of"] == "2026-11-21T15:00:59.999Z"
    exact = client.get("/views/order-status/o1", params={"as_of": str(T0 + 60_000)}).json()
    assert exact["row"]["row"]["status"] == "PAYMENT_AUTHORIZED"


def test_index_and_history(client: TestClient) -> None:
    """Scenario: status index as of T, ranking now, history. We expect rows in contract order."""
    placed = client.get("/views/order-status", params={"index": "status", "value": "PLACED", "as_of": str(T0 + 30_000)}).json()
    assert [r["key"] for r in placed["rows"]] == ["o1", "o2"] and placed["count"] == 2
    top = client.get("/views/customer-summary", params={"index": "lifetimeValue", "limit": 1}).json()
    assert [r["key"] for r in top["rows"]] == ["c2"]
    history = client.get("/views/order-status/o1/history").json()
    assert [v["row"]["status"] for v in history["versions"]] == ["PLACED", "PAYMENT_AUTHORIZED"]


@pytest.mark.parametrize(
    "path,params,status,error",
    [
        ("/views/nope/o1", {}, 404, "UnknownViewError"),
        ("/views/order-status/nobody", {}, 404, "KeyNotFoundError"),
        ("/views/order-status/o1", {"as_of": str(T0 - 1)}, 404, "KeyNotFoundError"),
        ("/views/order-status/nobody/history", {}, 404, "KeyNotFoundError"),
        ("/views/nope", {"index": "status", "value": "x"}, 404, "UnknownViewError"),
        ("/views/order-status/o1", {"as_of": "2026-11-21T15:00:00"}, 422, "InvalidTimestampError"),
        ("/views/order-status/o1", {"as_of": "tuesday"}, 422, "InvalidTimestampError"),
        ("/views/order-status", {"index": "colour", "value": "red"}, 422, "UnknownIndexError"),
        ("/views/order-status", {"index": "status"}, 422, "UnknownIndexError"),
        ("/views/order-status", {"index": "status", "value": "PLACED", "limit": 0}, 422, "InvalidRequest"),
        ("/views/order-status", {}, 422, "InvalidRequest"),
        ("/views/order-status/o1", {"min_position": "orders:x"}, 422, "InvalidPositionError"),
        ("/views/order-status/o1", {"wait_ms": -1}, 422, "InvalidRequest"),
    ],
)
def test_error_paths_are_one_line_and_never_500(client: TestClient, path: str, params: dict, status: int, error: str) -> None:
    """Scenario: unknown view/key, bad timestamp/index/parameter. We expect 404 or 422 with a one-line reason."""
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and body["detail"] and "\n" not in body["detail"]


def test_min_position_not_reached_is_a_503_saying_how_far_behind(client: TestClient) -> None:
    """Scenario: the query needs offset 10 of partition 0 and 4 of partition 1; the replica has 3 and nothing.
    We expect 503 after wait_ms, with the shortfall per partition."""
    response = client.get("/views/order-status/o1", params={"min_position": f"{ORDER_TOPIC}:0:10,{ORDER_TOPIC}:1:4", "wait_ms": 20})
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "ReplicaBehindError" and body["behind"] == {ORDER_TOPIC: {"0": 7, "1": 4}}


def test_min_position_waits_for_the_replica_to_catch_up(store: RocksStore) -> None:
    """Scenario: a read-your-writes query arrives before the replica applied the write. We expect it to wait and then see the row."""
    waiting = threading.Event()

    class SignallingView(ReadOnlyStoreView):
        def wait_for_apply(self, *, timeout_s: float) -> None:
            waiting.set()  # the query is now blocked on the replica
            super().wait_for_apply(timeout_s=timeout_s)

    def replica_applies_when_the_query_waits() -> None:
        assert waiting.wait(10)
        store.apply([order_update("o3", 1, T0, "PLACED", offset=3)], position={ORDER_TOPIC: {0: 4}})

    writer = threading.Thread(target=replica_applies_when_the_query_waits)
    writer.start()
    client = TestClient(create_app(QueryService(SignallingView(store))))
    response = client.get("/views/order-status/o3", params={"min_position": f"{ORDER_TOPIC}:0:4", "wait_ms": 10_000})
    writer.join()
    assert response.status_code == 200, response.text
    assert response.json()["position"][ORDER_TOPIC] == {"0": 4}


def test_min_position_on_the_orders_topic_uses_the_view_source_position(client: TestClient) -> None:
    """Scenario: read-your-writes named by orders offsets. We expect the view's source position to decide."""
    ok = client.get("/views/order-status/o1", params={"min_position": "orders:0:21"})
    assert ok.status_code == 200 and ok.json()["source_position"] == {"orders": {"0": 21}}
    assert client.get("/views/order-status/o1", params={"min_position": "orders:0:22", "wait_ms": 0}).status_code == 503


def test_healthz_metrics_and_docs(store: RocksStore) -> None:
    """Scenario: a replica loop that stopped with an error. We expect /healthz 503 with the reason; metrics and docs served."""
    status = ReplicaStatus(running=False, error="KafkaException: boom", records=3, malformed=0, last_malformed=None, assigned={})
    client = TestClient(create_app(QueryService(ReadOnlyStoreView(store)), replica_status=lambda: status))
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["replica"]["error"] == "KafkaException: boom"
    client.get("/views/order-status/o1")
    metrics = client.get("/metrics").text
    assert 'rewind_query_requests_total{route="/views/{view}/{key}",status="200"} 1.0' in metrics
    assert f'rewind_replica_next_offset{{partition="0",topic="{ORDER_TOPIC}"}} 3.0' in metrics
    assert 'rewind_replica_updates_total{outcome="applied"}' in metrics
    assert client.get("/docs").status_code == 200
    assert "/views/{view}/{key}" in client.get("/openapi.json").json()["paths"]
    static = TestClient(create_app(QueryService(ReadOnlyStoreView(store))))
    assert static.get("/healthz").json()["status"] == "ok"
