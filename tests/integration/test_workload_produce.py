"""The workload producer against the real broker: every record lands where the Java client would put it, in order."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from pipelines.settings import RewindSettings
from scripts.workload import WorkloadConfig, generate, produce_workload

pytestmark = pytest.mark.integration


def java_murmur2_partition(key: bytes, partitions: int) -> int:
    """Kafka's ``Utils.toPositive(Utils.murmur2(key)) % partitions``, transcribed."""
    m, h = 0x5BD1E995, (0x9747B28C ^ len(key)) & 0xFFFFFFFF
    for i in range(len(key) // 4):
        k = (int.from_bytes(key[4 * i : 4 * i + 4], "little") * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = key[len(key) - len(key) % 4 :]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h = ((h ^ tail[0]) * m) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * m) & 0xFFFFFFFF
    return ((h ^ (h >> 15)) & 0x7FFFFFFF) % partitions


def test_produced_partitions_hold_the_emission_order(kafka_bootstrap: str, unique_name: str) -> None:
    """Scenario: produce a poisoned workload, read the topic back. We expect each partition to hold exactly the
    records whose key the Java partitioner sends there, in emission order, stamped with their occurredAt."""
    settings = RewindSettings(kafka_bootstrap_servers=kafka_bootstrap, orders_partitions=6)
    workload = generate(WorkloadConfig(seed=4, orders=400, poison_rate=0.02))
    report = produce_workload(settings, workload, topic=unique_name, progress=False)
    assert report.delivered == len(workload.records) and report.topic_created

    expected: dict[int, list[tuple[bytes, bytes, int]]] = {}
    for r in workload.records:
        expected.setdefault(java_murmur2_partition(r.key, 6), []).append((r.key, r.value, r.timestamp_ms))
    consumer = Consumer({
        "bootstrap.servers": kafka_bootstrap, "group.id": unique_name,
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    got: dict[int, list[tuple[bytes, bytes, int]]] = {}
    try:
        consumer.subscribe([unique_name])
        seen, idle = 0, 0
        while seen < len(workload.records) and idle < 10:
            messages = consumer.consume(1000, timeout=2)
            idle = 0 if messages else idle + 1
            for m in messages:
                assert m.error() is None
                got.setdefault(m.partition(), []).append((m.key(), m.value(), m.timestamp()[1]))
                seen += 1
    finally:
        consumer.close()
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.delete_topics([unique_name])[unique_name].result(30)
    assert got == expected
