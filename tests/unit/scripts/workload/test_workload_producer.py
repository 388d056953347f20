"""The producer's behaviour around librdkafka, with a stand-in Producer (the real broker is for integration tests)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pipelines.settings import RewindSettings
from pipelines.topics import ORDERS_TOPIC_CONFIG
from scripts.workload import ProduceError, Workload, WorkloadConfig, generate, produce_workload, producer_config
from scripts.workload import producer as producer_module


class FakeProducer:
    """Records what is produced; full after every ``full_every`` records; fails the records listed in ``fail``."""

    instances: list[FakeProducer] = []

    def __init__(self, config: dict[str, Any], *, full_every: int = 0, fail: tuple[int, ...] = (), stuck: int = 0):
        self.config = config
        self.sent: list[tuple[str, bytes, bytes, int]] = []
        self.full_every, self.fail, self.stuck = full_every, fail, stuck
        self.buffer_errors = 0
        self._full = False
        FakeProducer.instances.append(self)

    def produce(self, topic: str, value: bytes, key: bytes, *, timestamp: int) -> None:
        if self._full:
            self.buffer_errors += 1
            raise BufferError("queue full")
        self.sent.append((topic, value, key, timestamp))
        if self.full_every and len(self.sent) % self.full_every == 0:
            self._full = True

    def poll(self, timeout: float = 0) -> int:
        self._full = False
        return 0

    def flush(self, timeout: float = 0) -> int:
        report = self.config["on_delivery"]
        for i in self.fail:
            report(f"error on record {i}", None)
        return self.stuck


@pytest.fixture(scope="module")
def small() -> Workload:
    return generate(WorkloadConfig(seed=2, orders=200, poison_rate=0.05))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    ensured: list[tuple[str, str, int, dict]] = []

    def ensure_topic(bootstrap: str, name: str, *, partitions: int, config: dict) -> bool:
        ensured.append((bootstrap, name, partitions, config))
        return True

    monkeypatch.setattr(producer_module, "ensure_topic", ensure_topic)
    FakeProducer.instances.clear()

    def install(**kwargs: Any) -> list[tuple[str, str, int, dict]]:
        monkeypatch.setattr(producer_module, "Producer", lambda config: FakeProducer(config, **kwargs))
        return ensured

    return install


SETTINGS = RewindSettings(kafka_bootstrap_servers="broker:9092", orders_partitions=6)


def test_config_places_records_like_the_java_client() -> None:
    config = producer_config("b:9092")
    assert config["partitioner"] == "murmur2_random"
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert config["compression.type"] == "lz4" and config["linger.ms"] >= 5


def test_sends_every_record_in_order_with_key_and_event_time(fake, small: Workload) -> None:
    """Scenario: a workload with poison, a queue that fills up now and then. We expect every record, in emission
    order, key = orderId, timestamp = occurredAt, and the topic ensured with the settings' partitions."""
    ensured = fake(full_every=97)
    report = produce_workload(SETTINGS, small, topic="orders-x", progress=False)
    producer = FakeProducer.instances[0]
    assert producer.sent == [("orders-x", r.value, r.key, r.timestamp_ms) for r in small.records]
    assert producer.buffer_errors > 0
    assert ensured == [("broker:9092", "orders-x", 6, ORDERS_TOPIC_CONFIG)]
    assert (report.sent, report.delivered, report.poison) == (len(small.records), len(small.records), small.poison_count)
    assert report.topic_created and report.events_per_s > 0


def test_failed_deliveries_raise(fake, small: Workload) -> None:
    fake(fail=(3, 9))
    with pytest.raises(ProduceError, match="2 of"):
        produce_workload(SETTINGS, small, topic="orders-x", progress=False)


def test_undelivered_after_flush_raises(fake, small: Workload) -> None:
    fake(stuck=5)
    with pytest.raises(ProduceError, match="5 of .* still undelivered"):
        produce_workload(SETTINGS, small, topic="orders-x", progress=False)


def test_rate_limit_holds_the_pace(fake, small: Workload) -> None:
    """Scenario: 4000 records/s asked. We expect the send to take at least records/rate (minus one chunk)."""
    fake()
    records = list(small.records)[:600]
    started = time.perf_counter()
    produce_workload(SETTINGS, records, topic="orders-x", rate=4000, progress=True)
    elapsed = time.perf_counter() - started
    assert elapsed >= (600 - 20) / 4000
    assert len(FakeProducer.instances[0].sent) == 600


def test_rate_must_be_positive(fake, small: Workload) -> None:
    from schemas.errors import ConfigError

    fake()
    with pytest.raises(ConfigError):
        produce_workload(SETTINGS, small, rate=0, progress=False)
