"""End-to-end latency of a live engine: from producing an order event to its view record being committed.

A producer sends a generated workload at a steady rate to a fresh topic and notes when it
sent each record (by partition and offset, from the delivery reports). The engine runs in
a child process (stopped with SIGTERM); a read_committed consumer of the view topic sees a view record
only once the engine's transaction committed, and the record names its source (partition,
offset), so latency = seen - sent. Only events that publish a view record are measured
(duplicates and dead letters publish none).

    .venv/bin/python scripts/bench_latency.py --engine batch --rate 2000 --seconds 20
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import orjson
import typer
from confluent_kafka import Consumer, Producer

from pipelines.live.supervisor import group_members_with_partitions
from pipelines.settings import RewindSettings
from pipelines.topics import ORDERS_TOPIC_CONFIG, VIEW_TOPIC_CONFIG, ensure_topic, view_topic
from scripts.workload import WorkloadConfig, generate

Engine = Literal["batch", "quix"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(settings: RewindSettings, engine: Engine, *, rate: int, seconds: float, view: str = "order-status") -> dict[str, float]:
    """p50/p99/max latency in ms (and how many records were measured) for ``engine`` at ``rate`` events/s."""
    ensure_topic(settings.bootstrap(), settings.orders_topic, partitions=settings.orders_partitions, config=ORDERS_TOPIC_CONFIG)
    # Before the reader subscribes: a topic created later is only noticed at the next metadata refresh (minutes).
    ensure_topic(settings.bootstrap(), view_topic(view, prefix=settings.view_topic_prefix), partitions=settings.orders_partitions,
                 config=VIEW_TOPIC_CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        group = f"latency-{uuid.uuid4().hex[:8]}"
        runner = multiprocessing.get_context("spawn").Process(target=_run_engine, args=(settings, engine, view, Path(tmp), group))
        runner.start()
        # Latency of a running engine, not of its start: produce once the group has handed out the partitions.
        deadline = time.monotonic() + 120
        while group_members_with_partitions(settings.bootstrap(), group) == 0:
            if time.monotonic() > deadline or not runner.is_alive():
                raise RuntimeError(f"the {engine} engine did not join its group within 120 s")
            time.sleep(0.5)
        sent: dict[tuple[int, int], float] = {}
        seen: dict[tuple[int, int], float] = {}
        reader = Consumer({"bootstrap.servers": settings.bootstrap(), "group.id": f"latency-{uuid.uuid4().hex[:8]}",
                           "isolation.level": "read_committed", "auto.offset.reset": "earliest", "log_level": 0})
        reader.subscribe([view_topic(view, prefix=settings.view_topic_prefix)])
        try:
            _produce_paced(settings, rate=rate, seconds=seconds, sent=sent, on_idle=lambda: _read(reader, seen, 0.0))
            # The tail: every record applies and publishes one view record (no poison), so read until each was seen.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(seen.keys() & sent.keys()) < len(sent):
                _read(reader, seen, 0.5)
        finally:
            reader.close()
            if runner.pid is not None:
                os.kill(runner.pid, signal.SIGTERM)
            runner.join(timeout=60)
    latencies = [(seen[k] - sent[k]) * 1000 for k in seen if k in sent]
    if not latencies:
        raise RuntimeError(f"no view record of {view} was seen; is the {engine} engine running?")
    return {"measured": len(latencies), "p50_ms": _percentile(latencies, 0.50), "p99_ms": _percentile(latencies, 0.99),
            "max_ms": max(latencies)}


def _run_engine(settings: RewindSettings, engine: Engine, view: str, state_dir: Path, group: str) -> None:
    """The engine until SIGTERM (in a child process: Quix handles signals in its main thread)."""
    if engine == "batch":
        from pipelines.batch.engine import BatchEngine

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        BatchEngine(settings, view, state_dir=state_dir, instance_id="latency", group_id=group,
                    commit_interval_s=settings.commit_interval_s).run(stop)
        return
    from pipelines.live import build_pipeline, run_pipeline

    run_pipeline(build_pipeline(settings, view, group_id=group, state_dir=state_dir, commit_interval_s=settings.commit_interval_s))


def _produce_paced(settings: RewindSettings, *, rate: int, seconds: float, sent: dict[tuple[int, int], float],
                   on_idle: Callable[[], object]) -> None:
    """Send workload records at ``rate``/s for ``seconds``; ``sent[(partition, offset)]`` = when each was produced."""
    records = generate(WorkloadConfig(seed=3, orders=max(100, int(rate * seconds / 9)), days=1.0, poison_rate=0.0)).records
    # murmur2, as the Java client and the workload producer place keys (the kernel dead-letters any other placement).
    producer = Producer({"bootstrap.servers": settings.bootstrap(), "linger.ms": 1, "enable.idempotence": True,
                         "partitioner": "murmur2_random", "log_level": 0})
    started = time.monotonic()
    total = min(len(records), int(rate * seconds))
    for i, record in enumerate(records[:total]):
        due = started + i / rate
        while (now := time.monotonic()) < due:
            on_idle()  # read view records while waiting
            time.sleep(min(0.002, max(0.0, due - time.monotonic())))
        at = now

        def delivered(err: object, msg: object, at: float = at) -> None:
            if err is None:
                sent[(msg.partition(), msg.offset())] = at  # type: ignore[attr-defined]  # a confluent Message

        producer.produce(settings.orders_topic, record.value, record.key, timestamp=record.timestamp_ms, on_delivery=delivered)
        producer.poll(0)
    producer.flush(30)


def _read(reader: Consumer, seen: dict[tuple[int, int], float], timeout_s: float) -> int:
    """Note when each view record's source was first seen committed; returns how many records were read."""
    messages = reader.consume(1000, timeout=timeout_s)
    now = time.monotonic()
    for message in messages:
        if message.error() is not None:
            continue
        source = orjson.loads(message.value()).get("source") or {}
        key = (source.get("partition"), source.get("offset"))
        seen.setdefault(key, now)  # type: ignore[arg-type]  # view records name their source position
    return len(messages)


def main(
    engine: str = typer.Option("batch", help="batch or quix."),
    rate: int = typer.Option(2000, min=1, max=100_000, help="Events per second to produce."),
    seconds: float = typer.Option(20.0, min=1.0, max=3600.0, help="How long to produce."),
    commit_interval_s: float = typer.Option(0.5, min=0.05, max=60.0, help="The engine's checkpoint interval."),
) -> None:
    """Print p50/p99/max latency from produce to committed view record."""
    if engine not in ("batch", "quix"):
        raise typer.BadParameter(f"--engine {engine!r}: use batch or quix")
    logging.basicConfig(level=logging.WARNING)
    name = f"latency-{uuid.uuid4().hex[:8]}"
    settings = RewindSettings(orders_topic=f"{name}.orders", dlq_topic=f"{name}.dlq", view_topic_prefix=f"{name}.",
                              commit_interval_s=commit_interval_s)
    result = measure(settings, engine, rate=rate, seconds=seconds)  # type: ignore[arg-type]  # checked above
    typer.echo(f"{engine} engine, {rate}/s for {seconds:g}s, checkpoint every {commit_interval_s:g}s: "
               f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms "
               f"({result['measured']:,.0f} view records)")


if __name__ == "__main__":
    typer.run(main)
