"""The relay's loop (pipelines.orders.relay) with a fake producer: order, marking, a broker that does not answer,
a row the broker refuses, a database that fails, a stop with a batch in flight. The outbox queries and the lag too.

No broker: the producer is a fake that acknowledges on flush (or never, while "down"); the topic check is stubbed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError
from sqlalchemy import Engine, event, insert, select, update
from sqlalchemy.exc import OperationalError

from pipelines.orders import relay as relay_module
from pipelines.orders.database import migrate, open_database
from pipelines.orders.relay import OutboxRelay, RelayConfig, RelayStats
from pipelines.orders.relay_leases import lease_holders
from pipelines.orders.relay_outbox import mark_published, outbox_lag, unpublished_rows
from pipelines.orders.tables import outbox, outbox_shard

TOPIC = "orders-test"


class FakeProducer:
    """Acknowledges every queued record on flush/poll while ``up``; refuses the keys in ``refuse`` with MSG_SIZE_TOO_LARGE."""

    def __init__(self, config: dict[str, Any], *, up: threading.Event, refuse: frozenset[bytes] = frozenset()) -> None:
        self.config = config
        self.up = up
        self.refuse = refuse
        self.queue: list[tuple[bytes, bytes, int, Callable[[Any, Any], None]]] = []
        self.log: list[tuple[bytes, bytes, int]] = []  # what the "broker" acknowledged, in order
        self.lock = threading.Lock()

    def produce(self, topic: str, value: bytes, key: bytes, *, timestamp: int, on_delivery: Callable[[Any, Any], None]) -> None:
        assert topic == TOPIC
        self.queue.append((key, value, timestamp, on_delivery))

    def flush(self, timeout: float) -> int:
        if not self.up.is_set():
            time.sleep(min(timeout, 0.02))
            return len(self.queue)
        queue, self.queue = self.queue, []
        for key, value, timestamp, callback in queue:
            if key in self.refuse:
                callback(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
            else:
                self.log.append((key, value, timestamp))
                callback(None, None)
        return 0

    def poll(self, timeout: float) -> int:
        return 0

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        queue, self.queue = self.queue, []
        for *_, callback in queue:
            callback(KafkaError(KafkaError._PURGE_QUEUE), None)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'orders.sqlite'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = open_database(url, pool_size=4)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_module, "ensure_topic", lambda *args, **kwargs: False)


def insert_rows(engine: Engine, orders: int, events: int, *, first_order: int = 0, created_at: int | None = None) -> list[tuple[str, int]]:
    """Rows of ``orders`` orders x ``events`` seqs, inserted seq by seq (as commands would commit them); their (order, seq)."""
    now = created_at if created_at is not None else time.time_ns() // 1_000_000
    rows: list[dict[str, Any]] = [
        {"order_id": f"o-{o}", "seq": s, "shard": outbox_shard(f"o-{o}"), "payload": f"o-{o}/{s}".encode(),
         "timestamp_ms": 1_700_000_000_000 + s, "created_at": now}
        for s in range(1, events + 1) for o in range(first_order, first_order + orders)
    ]
    with engine.begin() as conn:
        conn.execute(insert(outbox), rows)
    return [(r["order_id"], r["seq"]) for r in rows]


def config(**overrides: Any) -> RelayConfig:
    base = {"bootstrap": "fake:9092", "topic": TOPIC, "partitions": 12, "relay_id": "r1", "batch_size": 50,
            "progress_interval_s": 0.2, "report_interval_s": 0.3, "stop_grace_s": 0.3}
    return RelayConfig(**{**base, **overrides})


class Running:
    """An OutboxRelay in a thread, with its fake producers."""

    def __init__(self, engine: Engine, cfg: RelayConfig, *, up: bool = True, refuse: frozenset[bytes] = frozenset()) -> None:
        self.up = threading.Event()
        if up:
            self.up.set()
        self.producers: list[FakeProducer] = []

        def factory(conf: dict[str, Any]) -> FakeProducer:
            producer = FakeProducer(conf, up=self.up, refuse=refuse)
            self.producers.append(producer)
            return producer

        self.relay = OutboxRelay(engine, cfg, producer_factory=factory)
        self.stop = threading.Event()
        self.stats: RelayStats | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.stats = self.relay.run(self.stop)
        except BaseException as exc:
            self.error = exc

    def published(self) -> list[tuple[bytes, bytes, int]]:
        return [record for p in self.producers for record in p.log]

    def finish(self, *, timeout_s: float = 10.0) -> RelayStats:
        self.stop.set()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the relay did not stop"
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats


def poll(condition: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g}s waiting for {what}"
        time.sleep(0.02)
    return result


def unpublished(engine: Engine) -> int:
    return outbox_lag(engine).rows


# ------------------------------------------------------------------------------------------ queries


def test_unpublished_rows_are_each_orders_lowest_in_id_order(engine: Engine) -> None:
    """Scenario: 5 orders x 4 events, a limit of 8 over all shards. We expect each order's rows to be its lowest seqs, ids ascending."""
    insert_rows(engine, 5, 4)
    with engine.begin() as conn:
        rows = unpublished_rows(conn, list(range(64)), limit=8)
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    by_order: dict[str, list[int]] = {}
    for r in rows:
        by_order.setdefault(r.order_id, []).append(r.seq)
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in by_order.values())


def test_unpublished_rows_skip_published_other_shards_and_parked_orders(engine: Engine) -> None:
    """Scenario: some rows published, a parked order, one shard asked for. We expect only that shard's unpublished, unparked rows."""
    insert_rows(engine, 20, 2)
    with engine.begin() as conn:
        everything = unpublished_rows(conn, list(range(64)), limit=1000)
        mark_published(conn, [r.id for r in everything if r.seq == 1], published_at_ms=1)
        shard = outbox_shard("o-3")
        rows = unpublished_rows(conn, [shard], limit=1000, skip_orders={"o-3"})
    assert all(r.seq == 2 and outbox_shard(r.order_id) == shard and r.order_id != "o-3" for r in rows)
    assert len(rows) == sum(1 for o in range(20) if outbox_shard(f"o-{o}") == shard and o != 3)


def test_outbox_lag_counts_unpublished_rows_and_the_oldest_age(engine: Engine) -> None:
    """Scenario: an empty outbox, then rows created 5 s ago. We expect (0, None), then (rows, about 5000 ms)."""
    assert outbox_lag(engine) == (0, None)
    insert_rows(engine, 3, 2, created_at=time.time_ns() // 1_000_000 - 5000)
    rows, age_ms = outbox_lag(engine)
    assert rows == 6 and age_ms is not None and 5000 <= age_ms < 60_000


# ------------------------------------------------------------------------------------------- the loop


def test_every_row_is_published_once_in_id_order_and_marked(engine: Engine) -> None:
    """Scenario: 30 orders x 5 events, batches of 50. We expect each row once, each order's in seq order,
    key/value/timestamp as stored, every row marked, the lag back to zero and the leases released at stop."""
    expected = insert_rows(engine, 30, 5)
    run = Running(engine, config())
    poll(lambda: unpublished(engine) == 0, timeout_s=20, what="the outbox to drain")
    stats = run.finish()
    records = run.published()
    assert sorted((k.decode(), int(v.decode().split("/")[1])) for k, v, _ in records) == sorted(expected)
    for key, value, timestamp in records:
        assert value == f"{key.decode()}/{timestamp - 1_700_000_000_000}".encode()
    seqs: dict[bytes, list[int]] = {}
    for key, value, _ in records:
        seqs.setdefault(key, []).append(int(value.split(b"/")[1]))
    assert all(s == sorted(s) for s in seqs.values())
    assert stats.published == 150 and stats.abandoned == 0
    assert lease_holders(engine).shards_by_relay == {} and lease_holders(engine).unheld == 64
    with engine.connect() as conn:
        assert conn.execute(select(outbox.c.id).where(outbox.c.published_at.is_(None))).first() is None


def test_a_broker_that_does_not_answer_delays_but_loses_nothing(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Scenario: the broker is down, rows keep arriving, then it answers. We expect nothing marked while down, the
    lag reported growing and a line saying rows wait for acknowledgement, then every row published and marked."""
    caplog.set_level(logging.INFO, logger="rewind.outbox")
    insert_rows(engine, 10, 2)
    run = Running(engine, config(), up=False)
    poll(lambda: "unacknowledged for" in caplog.text, timeout_s=10, what="a line about the unacknowledged batch")
    insert_rows(engine, 10, 2, first_order=100)
    poll(lambda: "lag 40 rows" in caplog.text, timeout_s=10, what="the progress line to report the grown lag")
    assert unpublished(engine) == 40 and run.thread.is_alive()
    run.up.set()
    poll(lambda: unpublished(engine) == 0, timeout_s=20, what="the outbox to drain once the broker answers")
    stats = run.finish()
    assert stats.published == 40 and stats.broker_waits >= 1
    assert len(run.published()) == 40


def test_a_stop_with_a_batch_in_flight_abandons_it_and_releases_the_leases(engine: Engine) -> None:
    """Scenario: the broker never answers and the relay is told to stop. We expect it to stop within its grace, nothing marked,
    the batch counted abandoned, the leases free; a second relay then publishes everything."""
    insert_rows(engine, 10, 3)
    run = Running(engine, config(), up=False)
    poll(lambda: run.producers and run.producers[0].queue, timeout_s=10, what="a batch in flight")
    started = time.monotonic()
    stats = run.finish()
    assert time.monotonic() - started < 3
    assert stats.published == 0 and stats.abandoned > 0 and unpublished(engine) == 30
    assert lease_holders(engine).unheld == 64
    second = Running(engine, config(relay_id="r2"))
    poll(lambda: unpublished(engine) == 0, timeout_s=20, what="the second relay to publish everything")
    assert second.finish().published == 30


def test_a_row_the_broker_refuses_parks_its_order_and_the_rest_goes_on(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Scenario: the broker refuses every record of order o-4. We expect the other orders published, o-4's rows left in the
    outbox (none of its later seqs published ahead of the refused one) and a warning naming it."""
    caplog.set_level(logging.INFO, logger="rewind.outbox")
    insert_rows(engine, 10, 3)
    run = Running(engine, config(), refuse=frozenset({b"o-4"}))
    poll(lambda: unpublished(engine) == 3, timeout_s=20, what="everything but o-4 to be published")
    stats = run.finish()
    assert stats.parked_orders == 1 and "order o-4" in caplog.text and "parked" in caplog.text
    assert not any(key == b"o-4" for key, _, _ in run.published())
    with engine.connect() as conn:
        left = {str(row[0]) for row in conn.execute(select(outbox.c.order_id).where(outbox.c.published_at.is_(None)))}
    assert left == {"o-4"}


def test_a_database_outage_is_retried_and_reported(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Scenario: every statement fails (as with a database that is down) for a while, mid-stream. We expect the relay to keep
    running, say the database is unreachable, and publish every row once it answers (a row may go out twice: its mark failed)."""
    caplog.set_level(logging.INFO, logger="rewind.outbox")
    down = threading.Event()

    def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if down.is_set():
            raise OperationalError(statement, {}, Exception("connection refused (simulated)"))

    event.listen(engine, "before_cursor_execute", fail)
    expected = insert_rows(engine, 20, 3)
    run = Running(engine, config(batch_size=10))
    poll(lambda: 0 < len(run.published()), timeout_s=10, what="a first batch")
    down.set()
    poll(lambda: "database unreachable" in caplog.text, timeout_s=10, what="the database outage to be reported")
    assert run.thread.is_alive()
    down.clear()
    poll(lambda: unpublished(engine) == 0, timeout_s=30, what="the outbox to drain once the database answers")
    stats = run.finish()
    event.remove(engine, "before_cursor_execute", fail)
    assert stats.database_failures > 0
    published = {(k.decode(), int(v.split(b"/")[1])) for k, v, _ in run.published()}
    assert published == set(expected)
    assert "database answers again" in caplog.text


def test_idle_timeout_stops_a_relay_with_nothing_to_publish(engine: Engine) -> None:
    """Scenario: an empty outbox and --idle-timeout-s 0.3. We expect the relay to return by itself, leases released."""
    run = Running(engine, config(idle_timeout_s=0.3))
    run.thread.join(10)
    assert not run.thread.is_alive() and run.error is None and run.stats is not None and run.stats.published == 0
    assert lease_holders(engine).unheld == 64


def test_rows_marked_by_someone_else_meanwhile_are_not_a_problem(engine: Engine) -> None:
    """Scenario: an operator marks some rows published by hand while the relay runs. We expect the relay to publish the rest."""
    insert_rows(engine, 10, 2)
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.seq == 1).values(published_at=1))
    run = Running(engine, config())
    poll(lambda: unpublished(engine) == 0, timeout_s=20, what="the outbox to drain")
    assert run.finish().published == 10
