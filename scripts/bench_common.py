"""Shared pieces of the benchmarks: a fresh topic with a workload, and the raw consume+decode ceiling."""

from __future__ import annotations

import resource
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from pipelines.settings import RewindSettings
from schemas import CodecError, EventCodec
from scripts.workload import Workload, WorkloadConfig, generate, produce_workload

__all__ = ["BenchTopic", "make_topic", "raw_consume_decode", "peak_rss_mb"]


@dataclass(frozen=True)
class BenchTopic:
    """A topic filled with a workload, and how long each step took."""

    settings: RewindSettings
    records: int
    generate_s: float
    produce_s: float


def make_topic(*, events: int, seed: int = 1, prefix: str = "bench") -> tuple[BenchTopic, Workload]:
    """Generate about ``events`` records (≈4.6 per order) and produce them to a fresh topic."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    settings = RewindSettings(orders_topic=f"{name}.orders", dlq_topic=f"{name}.orders.dlq", view_topic_prefix=f"{name}.")
    started = time.perf_counter()
    workload = generate(WorkloadConfig(seed=seed, orders=max(1, int(events / 4.6)), days=7, poison_rate=0.0))
    generated = time.perf_counter()
    report = produce_workload(settings, workload, progress=False)
    return BenchTopic(settings, report.delivered, generated - started, report.elapsed_s), workload


def raw_consume_decode(settings: RewindSettings, *, expected: int, batch: int = 5000) -> float:
    """Read the whole orders topic with batched consume() and decode every value; return events/s."""
    codec = EventCodec()
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap(), "group.id": f"bench-raw-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "fetch.max.bytes": 64 * 1024 * 1024, "log_level": 0,
    })
    topic = settings.orders_topic
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    seen = 0
    started = None
    decode = codec.decode
    while seen < expected:
        messages = consumer.consume(batch, timeout=1.0)
        if started is None and messages:
            started = time.perf_counter()
        for msg in messages:
            try:
                decode(msg.value())
            except CodecError:
                pass
        seen += len(messages)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return seen / elapsed


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
