"""A fenced batch engine stops with InstanceFencedError, whatever its way out calls.

The integration test (test_batch_engine.py) starts a real second instance, but which client call
sees the fencing first is a race; these tests pin each path a fenced engine takes on its way out."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from pipelines.batch.engine import BatchEngine
from pipelines.errors import InstanceFencedError


class FencedProducer:
    """A transactional producer a newer instance has fenced: every transactional call fails fatally."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _refuse(self, name: str) -> None:
        self.calls.append(name)
        raise KafkaException(KafkaError(KafkaError._FENCED, "Failed to add partitions to transaction: fenced by a newer instance", fatal=True))

    def abort_transaction(self, *_: Any) -> None:
        self._refuse("abort_transaction")

    def send_offsets_to_transaction(self, *_: Any) -> None:
        self._refuse("send_offsets_to_transaction")

    def commit_transaction(self, *_: Any) -> None:
        self._refuse("commit_transaction")

    def poll(self, *_: Any) -> int:
        return 0


class ClosedStore:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _engine(*, fenced: bool) -> tuple[BatchEngine, FencedProducer]:
    """An engine mid-transaction, with no clients behind it but the fenced producer."""
    engine = BatchEngine.__new__(BatchEngine)
    producer = FencedProducer()
    engine._producer = producer
    engine._in_transaction = True
    engine._fenced = fenced
    engine._fatal_reason = None
    engine._positions = {("orders", 0): 10}
    engine._stores = {}
    engine._identity = "rewind-test-0"
    engine.view = "order-status"
    return engine, producer


def test_an_abort_refused_by_a_fenced_producer_is_instance_fenced_not_a_raw_kafka_error() -> None:
    engine, producer = _engine(fenced=False)
    with pytest.raises(InstanceFencedError, match="fenced"):
        engine._abort()
    assert producer.calls == ["abort_transaction"]


def test_a_revoke_after_fencing_commits_nothing_and_lets_the_partitions_go() -> None:
    """The consumer's close revokes through this callback: once fenced it must not try to commit."""
    engine, producer = _engine(fenced=True)
    store = ClosedStore()
    engine._stores = {("orders", 0): store}  # type: ignore[dict-item]  # a stand-in with only close(), all a revoke calls
    engine._on_revoke(None, [TopicPartition("orders", 0)])
    engine._on_lost(None, [])
    assert producer.calls == []
    assert store.closed and engine._stores == {}
