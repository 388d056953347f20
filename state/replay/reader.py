"""Bounded reading of some partitions of one topic: every offset in ``[start, stop)``, in batches.

A partition is done when its ``next_offset`` reaches ``stop``. Three things make that
less simple than "last offset == stop - 1", and each is handled here:

* transaction markers and aborted records occupy offsets but are never delivered, so
  the last offset below ``stop`` may never arrive: on an idle poll or a partition-EOF
  event the reader asks the consumer for its position, which skips them;
* a consumer assigned several partitions keeps fetching a done one: it is unassigned
  (incremental_unassign) and any record at or past ``stop`` is dropped;
* librdkafka reports the end of a partition as an error event (_PARTITION_EOF), which
  is not a failure; any other error is raised as :class:`ReplayError`.

The reader never commits: a replay has no consumer-group offsets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from state.errors import ReplayError
from state.replay.plan import consumer_config

__all__ = ["PartitionRange", "BoundedReader"]


@dataclass(frozen=True, slots=True)
class PartitionRange:
    """Offsets ``[start, stop)`` of one partition; both are next_offsets."""

    partition: int
    start: int
    stop: int


class BoundedReader:
    """Reads ``ranges`` of ``topic`` and yields batches of Kafka messages until every range is done.

    ``next_offsets`` is, per partition, the next offset the reader would return: after a
    batch has been yielded, every record below it has been handed out.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        ranges: list[PartitionRange],
        *,
        batch_size: int = 20_000,
        poll_timeout_s: float = 0.5,
        consumer_overrides: Mapping[str, object] | None = None,
    ) -> None:
        self.topic = topic
        self._bootstrap = bootstrap
        self._ranges = {r.partition: r for r in ranges}
        self.next_offsets: dict[int, int] = {r.partition: r.start for r in ranges}
        #: Per partition, the greatest record timestamp (CreateTime = occurredAt) handed out so far.
        self.max_timestamp_ms: dict[int, int] = {}
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._overrides = dict(consumer_overrides or {})

    def _pending(self) -> list[int]:
        return [p for p, r in self._ranges.items() if self.next_offsets[p] < r.stop]

    def _refresh_positions(self, consumer: Consumer, partitions: list[int]) -> None:
        """Advance next_offsets past never-delivered offsets (markers, aborted records)."""
        try:
            positions = consumer.position([TopicPartition(self.topic, p) for p in partitions])
        except KafkaException as exc:
            raise ReplayError(f"could not read positions on {self.topic}: {exc}") from exc
        for tp in positions:
            if tp.offset >= 0 and tp.offset > self.next_offsets[tp.partition]:
                self.next_offsets[tp.partition] = min(tp.offset, self._ranges[tp.partition].stop)

    def batches(self, *, should_stop: Callable[[], bool] = lambda: False) -> Iterator[list[Message]]:
        """Yield non-empty batches of Kafka messages (data only, below their stop) until every
        range is done, or ``should_stop()`` turns true."""
        pending = self._pending()
        if not pending:
            return
        consumer = Consumer(consumer_config(self._bootstrap, **self._overrides))
        try:
            consumer.assign([TopicPartition(self.topic, p, self.next_offsets[p]) for p in pending])
            assigned = set(pending)
            while assigned and not should_stop():
                # Never ask for more than is left: consume() waits for num_messages or the
                # timeout, so asking for a full batch at the tail would wait out the timeout.
                left = sum(self._ranges[p].stop - self.next_offsets[p] for p in assigned)
                try:
                    messages = consumer.consume(num_messages=max(1, min(self._batch_size, left)), timeout=self._poll_timeout_s)
                except KafkaException as exc:
                    raise ReplayError(f"consuming {self.topic} failed: {exc}") from exc
                batch, saw_eof = self._take(messages)
                if batch:
                    yield batch
                if saw_eof or not messages:
                    self._refresh_positions(consumer, sorted(assigned))
                done = [p for p in assigned if self.next_offsets[p] >= self._ranges[p].stop]
                if done:
                    # Step away from finished partitions so their records stop filling the fetch queue.
                    consumer.incremental_unassign([TopicPartition(self.topic, p) for p in done])
                    assigned.difference_update(done)
        finally:
            consumer.close()

    def _take(self, messages: list[Message]) -> tuple[list[Message], bool]:
        """Keep the records below their partition's stop, in order; note partition-EOF events."""
        ranges = self._ranges
        next_offsets = self.next_offsets
        max_ts = self.max_timestamp_ms
        batch: list[Message] = []
        append = batch.append
        saw_eof = False
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    saw_eof = True
                    continue
                raise ReplayError(f"reading {self.topic}[{message.partition()}] failed: {error}")
            partition = message.partition()
            offset = message.offset()
            if offset >= ranges[partition].stop or offset < next_offsets[partition]:
                continue  # past the bound, or a redelivery after unassign: not this replay's
            append(message)
            next_offsets[partition] = offset + 1
            timestamp_ms = message.timestamp()[1]
            if timestamp_ms > max_ts.get(partition, -1):
                max_ts[partition] = timestamp_ms
        return batch, saw_eof
