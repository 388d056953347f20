"""The batch engine counts a transaction's records when it commits, once: records redone after an abort
(a rebalance mid-batch, a broker outage) are not counted twice in its stats or its metrics."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from pipelines.batch.engine import BatchEngine
from pipelines.live.stats import DEAD_LETTERS, PendingCounts, PipelineStats


class Producer:
    """A transactional producer whose commit succeeds, or fails abortably ``abortable_failures`` times."""

    def __init__(self, *, abortable_failures: int = 0) -> None:
        self.abortable_failures = abortable_failures
        self.aborted = 0

    def send_offsets_to_transaction(self, *_: Any) -> None:
        return None

    def commit_transaction(self, *_: Any) -> None:
        if self.abortable_failures:
            self.abortable_failures -= 1
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "commit timed out", txn_requires_abort=True))

    def abort_transaction(self, *_: Any) -> None:
        self.aborted += 1


class Consumer:
    def consumer_group_metadata(self) -> object:
        return object()

    def seek(self, *_: Any) -> None:
        return None


def _engine(producer: Producer, view: str) -> BatchEngine:
    """An engine mid-transaction with 3 events folded (2 applied, 1 dead-lettered), no store or client behind it."""
    engine = BatchEngine.__new__(BatchEngine)
    engine.view = view
    engine._identity = "counts-0"
    engine._producer = producer
    engine._consumer = Consumer()
    engine._fenced = False
    engine._fatal_reason = None
    engine._in_transaction = True
    engine._positions = {("orders", 0): 3}
    engine._stores = {}
    engine._snapshots = None
    engine._last_commit = engine._last_snapshot = time.monotonic()
    engine._snapshot_interval_s = 60.0
    engine.stats = PipelineStats(view)
    engine._pending = PendingCounts(view)
    pending = engine._pending
    pending.events_in, pending.applied, pending.dead_lettered, pending.view_updates = 3, 2, 1, 2
    pending.count_dead_letter("SequenceGap")
    return engine


def _dead_letters(view: str, reason: str) -> float:
    return DEAD_LETTERS.labels(view, reason)._value.get()


def test_a_committed_transaction_adds_its_counts_once() -> None:
    engine = _engine(Producer(), view="counts-commit")
    engine._checkpoint()
    engine._checkpoint()  # a second checkpoint with nothing new folded adds nothing
    assert engine.stats.as_dict() == {"pipeline": "counts-commit", "events_in": 3, "applied": 2, "duplicates": 0,
                                      "dead_lettered": 1, "rekey_duplicates": 0, "late": 0, "view_updates": 2}
    assert _dead_letters("counts-commit", "SequenceGap") == 1


def test_an_aborted_transaction_counts_nothing() -> None:
    """Scenario: the commit fails abortably; the engine aborts and will fold the same records again."""
    producer = Producer(abortable_failures=1)
    engine = _engine(producer, view="counts-abort")
    engine._checkpoint()
    assert producer.aborted == 1
    assert engine.stats.events_in == 0 and engine.stats.dead_lettered == 0
    assert _dead_letters("counts-abort", "SequenceGap") == 0
    assert engine._pending.events_in == 0 and engine._pending.dead_letters == {}
