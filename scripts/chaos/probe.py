"""What Kafka says about the pipelines' progress: committed offsets, end offsets, and records not yet read.

Used by the monitor (every few seconds, through one long-lived admin client) and by the final
catch-up. Nothing here is product code: it asks the broker directly.

"Caught up" is decided by :func:`unread_records`, not by ``high watermark - committed``: a
transactional topic (a pipeline's repartition topic) ends with a commit marker, and an
aborted transaction (a pipeline killed mid-checkpoint) leaves records no reader will ever
return, so the difference of offsets stays above 0 for good. A read_committed consumer
placed at the committed offsets says whether any record is still to be read.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from pipelines.batch.engine import repartition_topic

__all__ = ["Probe", "Position", "unread_records", "total"]

#: ``{topic: {partition: next_offset}}``
Position = dict[str, dict[int, int]]


def total(position: Mapping[str, Mapping[int, int]]) -> int:
    """The sum of every offset in ``position``."""
    return sum(sum(parts.values()) for parts in position.values())


class Probe:
    """Look-ups through one admin client; every call raises :class:`KafkaException` when the broker does not answer."""

    def __init__(self, bootstrap: str, *, timeout_s: float = 5.0) -> None:
        self.bootstrap = bootstrap
        self._timeout_s = timeout_s
        self._admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 3000, "log_level": 0})

    def partitions(self, topic: str) -> list[int]:
        """The partitions of ``topic`` ([] while it does not exist)."""
        found = self._admin.list_topics(topic, timeout=self._timeout_s).topics.get(topic)
        return [] if found is None or found.error is not None else sorted(found.partitions)

    def topics_starting(self, prefix: str) -> list[str]:
        """Every topic whose name starts with ``prefix`` (a pipeline's internal repartition topics)."""
        return sorted(t for t in self._admin.list_topics(timeout=self._timeout_s).topics if t.startswith(prefix))

    def pipeline_topics(self, group: str, orders_topic: str) -> list[str]:
        """The topics pipeline group ``group`` consumes: the orders topic and, for a re-keyed view, its second hop
        (the Quix engine's ``repartition__<group>--...`` topics, or the batch engine's one)."""
        batch = repartition_topic(group, orders_topic)
        return [orders_topic, *self.topics_starting(f"repartition__{group}--"), *(t for t in self.topics_starting(batch) if t == batch)]

    def committed(self, group: str, topics: Iterable[str]) -> Position:
        """``group``'s committed next_offset on every partition of ``topics`` (0 where it committed none)."""
        wanted = [TopicPartition(t, p) for t in topics for p in self.partitions(t)]
        out: Position = {tp.topic: {} for tp in wanted}
        if not wanted:
            return out
        request = [ConsumerGroupTopicPartitions(group, wanted)]
        answer = self._admin.list_consumer_group_offsets(request, request_timeout=self._timeout_s)[group].result(timeout=self._timeout_s * 2)
        for tp in answer.topic_partitions:
            if tp.error is not None:
                raise KafkaException(tp.error)
            out[tp.topic][tp.partition] = max(tp.offset, 0)
        return out

    def ends(self, topic: str) -> dict[int, int]:
        """The high watermark of every partition of ``topic``."""
        futures = self._admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in self.partitions(topic)},
                                           request_timeout=self._timeout_s)
        return {tp.partition: future.result(timeout=self._timeout_s * 2).offset for tp, future in futures.items()}


def unread_records(bootstrap: str, position: Mapping[str, Mapping[int, int]], *, timeout_s: float = 60.0) -> int | None:
    """Committed records at or after ``position`` (read_committed), counted up to the first batch; None if unknown.

    0 means a reader at ``position`` is caught up: every partition reached its end (the last
    stable offset) without one data record, however many transaction markers or aborted
    records lie past ``position``. None: the broker did not let us read to the end in time.
    """
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"rewind-soak-probe-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "isolation.level": "read_committed", "enable.partition.eof": True, "log_level": 0,
    })
    try:
        todo: set[tuple[str, int]] = set()
        assign = []
        for topic, parts in position.items():
            for partition, offset in parts.items():
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                if offset < high:
                    todo.add((topic, partition))
                    assign.append(TopicPartition(topic, partition, offset))
        if not assign:
            return 0
        consumer.assign(assign)
        deadline = time.monotonic() + timeout_s
        found = 0
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                error = msg.error()
                if error is None:
                    found += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    todo.discard((msg.topic(), msg.partition()))
                elif not error.retriable():
                    raise KafkaException(error)
            if found:
                return found
        return None if todo else 0
    except KafkaException:
        return None
    finally:
        consumer.close()
