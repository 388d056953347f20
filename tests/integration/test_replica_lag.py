"""Replica lag against the real broker: view records written in transactions (as exactly-once pipelines write them)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from pipelines.live.steps import view_update
from pipelines.projections import Change
from pipelines.topics import VIEW_TOPIC_CONFIG, ensure_topic
from state.contracts import SourcePosition
from state.replica import Replica, view_topics
from state.rocks_store import open_store
from state.view_records import encode_view_update

pytestmark = pytest.mark.integration

T0 = 1795273200000


def test_lag_reaches_zero_after_transactional_records(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """Scenario: two transactions of order-status records on a 2-partition view topic (each ends with a commit
    marker), read by the replica. We expect every record applied and the lag 0 on both partitions (it stayed 1)."""
    topics = view_topics(prefix=f"{unique_name}.", views=("order-status",))
    (topic,) = topics
    ensure_topic(kafka_bootstrap, topic, partitions=2, config=VIEW_TOPIC_CONFIG)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": unique_name})
    producer.init_transactions(30)
    for batch in range(2):
        producer.begin_transaction()
        for partition in (0, 1):
            key = f"o{batch}{partition}"
            row = {"orderId": key, "customerId": "c1", "status": "PLACED", "lastSeq": 1, "validFrom": T0}
            update = view_update("order-status", Change(key, row, key, 1, T0), row, SourcePosition("orders", partition, batch), rekeyed=False)
            producer.produce(topic, key=key.encode(), value=encode_view_update(update), partition=partition)
        producer.commit_transaction(30)

    store = open_store(tmp_path / "replica")
    replica = Replica(store, bootstrap=kafka_bootstrap, topics=topics, metadata_refresh_s=0.2)
    replica.start()
    try:
        deadline = time.monotonic() + 30
        while replica.status().lag != {topic: {0: 0, 1: 0}}:
            assert replica.status().error is None, replica.status().error
            assert time.monotonic() < deadline, f"lag stayed {replica.status().lag}, position {store.position()}"
            time.sleep(0.05)
        # Records at 0 and 2 of each partition, markers at 1 and 3: the data ends one below the high watermark.
        assert store.position() == {topic: {0: 3, 1: 3}}
        assert store.counts.applied == 4
    finally:
        replica.stop()
        store.close()
