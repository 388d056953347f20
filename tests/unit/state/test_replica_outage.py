"""The replica and /healthz while the broker is unreachable (no broker: the address is a closed port)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from state.http_api import create_app
from state.query import QueryService
from state.replica import Replica, ReplicaStatus, view_topics
from state.rocks_store import ReadOnlyStoreView, RocksStore, open_store
from tests.unit.state.state_builders import ORDER_TOPIC, order_update

T0 = 1795273200000
CLOSED = "127.0.0.1:1"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RocksStore]:
    store = open_store(tmp_path / "replica")
    store.apply([order_update("o1", 1, T0, "PLACED", offset=0)], position={ORDER_TOPIC: {0: 1}})
    yield store
    store.close()


def _status(**changes: object) -> ReplicaStatus:
    base: dict[str, object] = {"running": True, "error": None, "records": 1, "malformed": 0, "last_malformed": None,
                               "assigned": {ORDER_TOPIC: [0]}, "bootstrap": "10.0.0.7:9092"}
    return ReplicaStatus(**{**base, **changes})  # type: ignore[arg-type]  # the fields are typed by ReplicaStatus itself


def test_healthz_ok_degraded_unavailable(store: RocksStore) -> None:
    """Scenario: the replica's three states. We expect ok (200, no reason); degraded (200, the broker and for how long),
    answers still served from the store; unavailable (503, the loop's error)."""
    def health(status: ReplicaStatus) -> tuple[int, dict[str, Any]]:
        response = TestClient(create_app(QueryService(ReadOnlyStoreView(store)), replica_status=lambda: status)).get("/healthz")
        return response.status_code, response.json()

    code, body = health(_status())
    assert (code, body["status"], body["reason"]) == (200, "ok", None)
    code, body = health(_status(broker_unreachable_s=42.4))
    assert (code, body["status"]) == (200, "degraded")
    assert body["reason"] == "broker 10.0.0.7:9092 unreachable for 42 s; answering from the store as of its position"
    assert body["replica"]["broker_unreachable_s"] == 42.4
    code, body = health(_status(running=False, error="KafkaException: boom"))
    assert (code, body["status"], body["reason"]) == (503, "unavailable", "replica loop stopped: KafkaException: boom")

    degraded = TestClient(create_app(QueryService(ReadOnlyStoreView(store)), replica_status=lambda: _status(broker_unreachable_s=5.0)))
    assert degraded.get("/views/order-status/o1").json()["row"]["row"]["status"] == "PLACED"
    assert "rewind_replica_broker_unreachable_seconds 5.0" in degraded.get("/metrics").text


def test_replica_without_a_broker_keeps_running_and_says_so_once_per_interval(store: RocksStore, caplog: pytest.LogCaptureFixture) -> None:
    """Scenario: the replica starts with no broker behind its address. We expect the loop to keep running, its status
    to say for how long the broker has been unreachable, and about one line per report interval."""
    caplog.set_level(logging.INFO, logger="state.replica")
    replica = Replica(store, bootstrap=CLOSED, topics=view_topics(prefix="t."), metadata_refresh_s=0.2, outage_report_s=2.0)
    replica.start()
    try:
        deadline = time.monotonic() + 60
        while (down := replica.status().broker_unreachable_s) is None or down < 12:
            assert replica.status().error is None and time.monotonic() < deadline, replica.status()
            time.sleep(0.1)
        status = replica.status()
        assert status.running and status.error is None and status.bootstrap == CLOSED
        lines = [r.getMessage() for r in caplog.records if r.name == "state.replica" and "unreachable for" in r.getMessage()]
        assert 2 <= len(lines) <= down / 2.0 + 2, lines
        assert not [r for r in caplog.records if r.name == "state.replica.kafka" and "Connection refused" in r.getMessage()]
    finally:
        started = time.monotonic()
        replica.stop()
        assert time.monotonic() - started < 10, "slow to stop"
    assert not replica.status().running
