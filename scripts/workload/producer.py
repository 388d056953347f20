"""Sends a generated workload to Kafka, in emission order, as fast as the broker takes it (or at a set rate).

Placement is the Java client's (``murmur2_random``), so Java clients, Kafka
Streams and Quix Streams all agree on which partition an order lives in. The
producer is idempotent with ``acks=all``: a retry never duplicates or reorders
an order's records. Each record's timestamp is its occurredAt (CreateTime), so
``offsets_for_times`` finds event-time positions.

Deliveries are counted without a Python callback per record (that alone
costs a tenth of the send rate): librdkafka reports failures only, and
``delivered = sent - failed`` once ``flush`` has drained the queue.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from pipelines.settings import RewindSettings
from pipelines.topics import ORDERS_TOPIC_CONFIG, ensure_topic
from schemas.errors import ConfigError, RewindError
from scripts.workload.events import Emitted
from scripts.workload.generator import Workload

__all__ = ["ProduceError", "ProduceReport", "producer_config", "produce_workload"]

# Records between two poll() / progress updates: often enough to keep the bar live and
# the failure reports drained, rare enough to cost nothing per record.
_POLL_EVERY = 4096


class ProduceError(RewindError):
    """Some records were not delivered (broker down, topic deleted, timeout).

    The topic may now hold part of the workload: produce again into a fresh topic.
    """


@dataclass(frozen=True)
class ProduceReport:
    """What :func:`produce_workload` sent."""

    topic: str
    sent: int
    delivered: int
    poison: int
    elapsed_s: float
    topic_created: bool

    @property
    def events_per_s(self) -> float:
        """Delivered records per second, flush included."""
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0


def producer_config(bootstrap: str) -> dict[str, Any]:
    """The producer settings: idempotent, Java-compatible placement, big lz4 batches."""
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "batch.num.messages": 10_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "delivery.report.only.error": True,
    }


class _RateColumn(ProgressColumn):
    """Events per second, as rich measures the task's speed."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} ev/s" if speed else "- ev/s", style="progress.data.speed")


class _Failures:
    """Collects failed deliveries (the only ones librdkafka reports with ``delivery.report.only.error``)."""

    def __init__(self) -> None:
        self.count = 0
        self.first: KafkaError | None = None

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.count += 1
            if self.first is None:
                self.first = err


def produce_workload(
    settings: RewindSettings,
    workload: Workload | Sequence[Emitted],
    *,
    topic: str | None = None,
    rate: float | None = None,
    progress: bool = True,
    flush_timeout_s: float = 120.0,
) -> ProduceReport:
    """Send every record of ``workload`` to ``topic`` (default: the settings' orders topic), in order.

    ``rate`` caps the send rate in records per second (None: as fast as possible).
    Raises :class:`ProduceError` if any record was not delivered, and the
    topic errors of :func:`~pipelines.topics.ensure_topic`.

    1. Ensure the topic exists with the configured partition count.
    2. Send each record (key = orderId, value = its bytes, timestamp = occurredAt).
    3. Flush, and fail unless every record was delivered.
    """
    if rate is not None and rate <= 0:
        raise ConfigError(f"rate must be > 0 events/s, got {rate}")
    records = workload.records if isinstance(workload, Workload) else workload
    topic = topic or settings.orders_topic
    bootstrap = settings.bootstrap()
    # Step 1
    created = ensure_topic(bootstrap, topic, partitions=settings.orders_partitions, config=ORDERS_TOPIC_CONFIG)
    failures = _Failures()
    producer = Producer({**producer_config(bootstrap), "on_delivery": failures})
    poison = sum(1 for r in records if r.poison is not None)

    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), transient=False, disable=not progress,
    )
    started = time.perf_counter()
    with bar:
        task = bar.add_task(f"producing to {topic}", total=len(records))
        # Step 2
        _send(producer, records, topic=topic, rate=rate, on_batch=lambda n: bar.update(task, completed=n))
        # Step 3
        bar.update(task, description=f"flushing {topic}")
        remaining = producer.flush(flush_timeout_s)
        bar.update(task, completed=len(records), description=f"produced to {topic}")
    elapsed = time.perf_counter() - started
    if remaining:
        raise ProduceError(f"{remaining} of {len(records)} records still undelivered after {flush_timeout_s:g}s")
    if failures.count:
        raise ProduceError(f"{failures.count} of {len(records)} records were not delivered; first error: {failures.first}")
    return ProduceReport(topic, len(records), len(records) - failures.count, poison, elapsed, created)


def _send(producer: Producer, records: Sequence[Emitted], *, topic: str, rate: float | None, on_batch: Any) -> None:
    produce, poll = producer.produce, producer.poll
    # Rate limit against an absolute schedule (record i is due at start + i/rate), checked in
    # chunks of ~5 ms worth of records: sleeps never accumulate drift, and no busy-waiting.
    chunk = _POLL_EVERY if rate is None else max(1, min(_POLL_EVERY, int(rate / 200)))
    start = time.perf_counter()
    for i, r in enumerate(records):
        try:
            produce(topic, r.value, r.key, timestamp=r.timestamp_ms)
        except BufferError:
            # The local queue is full: serve delivery reports until there is room again.
            while True:
                poll(0.05)
                try:
                    produce(topic, r.value, r.key, timestamp=r.timestamp_ms)
                    break
                except BufferError:
                    continue
        except KafkaException as exc:
            raise ProduceError(f"cannot produce record {i} (order {r.order_id}) to {topic}: {exc}") from exc
        if (i + 1) % chunk == 0:
            poll(0)
            on_batch(i + 1)
            if rate is not None:
                ahead_s = start + (i + 1) / rate - time.perf_counter()
                if ahead_s > 0:
                    time.sleep(ahead_s)
