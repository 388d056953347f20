"""The read replica against the real broker: view records in the live pipeline's exact format (state.view_records), restart, read-your-writes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from fastapi.testclient import TestClient

from pipelines.live.steps import view_update
from pipelines.projections import Change, get_projection, view_spec
from pipelines.topics import VIEW_TOPIC_CONFIG, ensure_topic
from state.contracts import SourcePosition
from state.http_api import create_app
from state.query import QueryService
from state.replica import Replica, view_topics
from state.rocks_store import ReadOnlyStoreView, RocksStore, open_store
from state.view_records import encode_view_update

pytestmark = pytest.mark.integration

VIEWS = ("order-status", "customer-summary")
T0 = 1795273200000


def wait_until(condition: Callable[[], bool], *, timeout_s: float = 30.0, what: str) -> None:
    """Poll ``condition`` until true; fail after ``timeout_s`` (a deadline, not a sleep used as synchronisation)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class ViewProducer:
    """Publishes records exactly as the live pipeline does: value = encode_view_update(view_update(...)), key = view key (the topic stamps the append time)."""

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        self._topic_of = {view: topic for topic, view in topics.items()}
        self.end: dict[str, dict[int, int]] = {}
        self._rows: dict[tuple[str, str], dict[str, Any]] = {}

    def _delivered(self, err: Any, msg: Any) -> None:
        assert err is None, err
        parts = self.end.setdefault(msg.topic(), {})
        parts[msg.partition()] = max(parts.get(msg.partition(), 0), msg.offset() + 1)

    def send(self, view: str, change: Change, *, source_offset: int) -> None:
        projection = get_projection(view)
        row = projection.apply(self._rows.get((view, change.key)), change)  # the live fold, in arrival order
        self._rows[(view, change.key)] = row
        update = view_update(view, change, row, SourcePosition("orders", 0, source_offset), rekeyed=view_spec(view).rekeyed)
        self._producer.produce(self._topic_of[view], key=change.key.encode(), value=encode_view_update(update), timestamp=update.row_valid_from_ms,
                               on_delivery=self._delivered)

    def send_raw(self, view: str, value: bytes) -> None:
        self._producer.produce(self._topic_of[view], key=b"junk", value=value, on_delivery=self._delivered)

    def flush(self) -> None:
        assert self._producer.flush(30) == 0


def order(key: str, seq: int, valid_from_ms: int, status: str) -> Change:
    row = {"orderId": key, "customerId": "c1", "status": status, "lastSeq": seq, "validFrom": valid_from_ms}
    return Change(key, row, key, seq, valid_from_ms)


def ltv(key: str, order_id: str, seq: int, valid_from_ms: int, amount: int) -> Change:
    return Change(key, {"lifetimeValueMinor": amount, "ordersDelivered": 1}, order_id, seq, valid_from_ms)


def caught_up(store: RocksStore, end: dict[str, dict[int, int]]) -> Callable[[], bool]:
    return lambda: all(store.position().get(t, {}).get(p, 0) >= o for t, parts in end.items() for p, o in parts.items())


def test_replica_applies_view_records_and_resumes_after_restart_without_double_counting(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    """Scenario: view records (one counter change late in event time) reach the replica, which is stopped and
    restarted while more records arrive. We expect rows, versions and position right, and nothing applied twice."""
    topics = view_topics(prefix=f"{unique_name}.", views=VIEWS)
    for topic in topics:
        ensure_topic(kafka_bootstrap, topic, partitions=2, config=VIEW_TOPIC_CONFIG)
    producer = ViewProducer(kafka_bootstrap, topics)
    producer.send("order-status", order("o1", 1, T0, "PLACED"), source_offset=0)
    producer.send("order-status", order("o1", 2, T0 + 1000, "PAYMENT_AUTHORIZED"), source_offset=1)
    producer.send("order-status", order("o2", 1, T0 + 500, "PLACED"), source_offset=2)
    producer.send("customer-summary", ltv("c1", "o1", 6, T0 + 3000, 100), source_offset=3)
    producer.send("customer-summary", ltv("c1", "o2", 6, T0 + 1000, 10), source_offset=4)  # late in event time
    producer.send_raw("customer-summary", b"not a view record")
    producer.flush()

    store = open_store(tmp_path / "replica")
    replica = Replica(store, bootstrap=kafka_bootstrap, topics=topics, metadata_refresh_s=0.5)
    replica.start()
    wait_until(caught_up(store, producer.end), what="the first records")
    replica.stop()
    assert replica.status().error is None and replica.status().malformed == 1

    assert store.position() == producer.end
    assert [v.row["status"] for v in store.history("order-status", "o1")] == ["PLACED", "PAYMENT_AUTHORIZED"]
    as_of = store.get_as_of("order-status", "o1", T0 + 999)
    assert as_of is not None and as_of.row["status"] == "PLACED"
    versions = [(v.valid_from_ms, v.row["lifetimeValueMinor"]) for v in store.history("customer-summary", "c1")]
    assert versions == [(T0 + 1000, 10), (T0 + 3000, 110)]
    assert store.counts.applied == 5 and store.counts.corrections == 0
    store.close()

    # Restart: more records arrive while it is down; it resumes at its stored position.
    producer.send("order-status", order("o1", 3, T0 + 2000, "INVENTORY_RESERVED"), source_offset=5)
    producer.send("customer-summary", ltv("c1", "o3", 6, T0 + 2000, 1000), source_offset=6)
    producer.flush()
    store = open_store(tmp_path / "replica")
    replica = Replica(store, bootstrap=kafka_bootstrap, topics=topics, metadata_refresh_s=0.5)
    replica.start()
    try:
        wait_until(caught_up(store, producer.end), what="the records sent while it was down")
        assert store.counts.applied == 2, "only the new records are applied"
        assert store.counts.skipped_position == 0 and store.counts.skipped_duplicate == 0
        assert len(store.history("order-status", "o1")) == 3
        versions = [(v.valid_from_ms, v.row["lifetimeValueMinor"]) for v in store.history("customer-summary", "c1")]
        assert versions == [(T0 + 1000, 10), (T0 + 2000, 1010), (T0 + 3000, 1110)]
        assert store.source_position("customer-summary") == {"orders": {0: 7}}

        # Read-your-writes over HTTP: a query naming the next offset waits for the replica, then answers.
        client = TestClient(create_app(QueryService(ReadOnlyStoreView(store)), replica_status=replica.status))
        producer.send("order-status", order("o3", 1, T0 + 4000, "PLACED"), source_offset=7)
        producer.flush()
        needed = ",".join(f"{t}:{p}:{o}" for t, parts in producer.end.items() for p, o in parts.items())
        response = client.get("/views/order-status/o3", params={"min_position": needed, "wait_ms": 20_000})
        assert response.status_code == 200, response.text
        assert response.json()["row"]["row"]["status"] == "PLACED"
        assert client.get("/healthz").status_code == 200
    finally:
        replica.stop()
        store.close()


def test_rewind_serve_answers_and_stops_cleanly_on_sigterm(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """Scenario: `rewind serve` runs as a process, a record arrives, SIGTERM. We expect the row served over
    HTTP, exit code 0, and the store closed with its position (it reopens at once)."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    import httpx

    topics = view_topics(prefix=f"{unique_name}.", views=VIEWS)
    for topic in topics:
        ensure_topic(kafka_bootstrap, topic, partitions=1, config=VIEW_TOPIC_CONFIG)
    producer = ViewProducer(kafka_bootstrap, topics)
    producer.send("order-status", order("o1", 1, T0, "PLACED"), source_offset=0)
    producer.flush()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = "import typer; from scripts.cli_query import register; app = typer.Typer(); register(app); app()"
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, "serve", "--port", str(port), "--view-topic-prefix", f"{unique_name}.",
         "--replica-dir", str(tmp_path / "replica"), "--kafka-bootstrap-servers", kafka_bootstrap],
        cwd=Path(__file__).resolve().parents[2], env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/views/order-status/o1"

        def served() -> bool:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(served, what="rewind serve to answer")
        assert httpx.get(url).json()["row"]["row"]["status"] == "PLACED"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, process.stdout.read() if process.stdout else ""
    finally:
        if process.poll() is None:
            process.kill()
    store = open_store(tmp_path / "replica")  # the lock was released: the process closed it
    try:
        assert store.position() == producer.end
    finally:
        store.close()
