"""The batch engine's two stages: what one consumed record does to a partition store and to the outputs.

- :class:`OrderStage` reads the orders topic: the kernel (:func:`pipelines.kernel.process_record`)
  on each record, the order row staged in the store (key ``r`` + orderId), the order's
  park next to it (key ``p`` + orderId: :class:`~pipelines.kernel.Park` as JSON), dead letters
  out, and then either the view records (a per-order view) or each change to the
  repartition topic, keyed and partitioned by the view's partition key (a re-keyed view).
- :class:`RekeyStage` reads the repartition topic: skip a change whose (orderId, seq) the
  view key already counted (store key ``s`` + view key + NUL + orderId), fold the rest
  into the row (store key ``v`` + view key), and publish the row.

A stage reads and writes one partition's :class:`RowStore` (the engine's
:class:`~pipelines.batch.partition_store.PartitionStore`) and touches no Kafka client: it writes through :class:`Outputs`, which the engine
binds to its transactional producer, or mutes (a refold after a crash republishes nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson

from pipelines.dlq import DeadLetter, redrive_of
from pipelines.kernel import Park, process_record
from pipelines.live.stats import PipelineStats
from pipelines.live.steps import RekeyedChange
from pipelines.partitioning import partition_for
from pipelines.projections import Change, Projection
from schemas.codec import Event
from state.contracts import SourcePosition
from state.view_records import encode_view_record, source_json

__all__ = ["Outputs", "OrderStage", "RekeyStage", "Stage", "RowStore"]

ORDER_ROW = b"r"
PARK = b"p"
VIEW_ROW = b"v"
SEEN = b"s"


class RowStore(Protocol):
    """What a stage needs of its partition's store (:class:`PartitionStore`, or a dict in a unit test)."""

    stream_time_ms: int | None

    def get(self, key: bytes) -> Any: ...

    def put(self, key: bytes, value: Any) -> None: ...


class Outputs(Protocol):
    """Where a stage's records go: ``send(topic, key, value, headers, timestamp_ms, partition)``
    (partition None: the producer's partitioner). The engine's is transactional."""

    def __call__(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None,
                 timestamp_ms: int, partition: int | None) -> None: ...


class Stage(Protocol):
    def fold(self, message: Any, store: RowStore, send: Outputs | None) -> None:
        """One consumed record; ``send`` None: outputs muted (a refold), counters untouched."""


class OrderStage:
    """Stage 1, over the orders topic (partition store per orders partition)."""

    def __init__(self, projection: Projection, stats: PipelineStats, *, orders_topic: str, view_topic: str, dlq_topic: str,
                 partition_count: int, decode: Callable[[bytes], Event], repartition_topic: str | None,
                 repartition_partitions: int) -> None:
        self._projection = projection
        self._stats = stats
        self._orders_topic = orders_topic
        self._view_topic = view_topic
        self._dlq_topic = dlq_topic
        self._partition_count = partition_count
        self._decode = decode
        #: None: a per-order view, published here; else the re-keyed view's hop to stage 2.
        self._repartition_topic = repartition_topic
        self._repartition_partitions = repartition_partitions
        self._partition_key = getattr(projection, "partition_key", None)
        #: Only the late rule reads stream time, so only windowed views keep it.
        self._keeps_stream_time = getattr(projection, "late_by_ms", None) is not None

    def fold(self, message: Any, store: RowStore, send: Outputs | None) -> None:
        key, value, partition = message.key(), message.value(), message.partition()
        redrive = redrive_of(message.headers())
        verdict = process_record(
            self._projection, key, value, decode=self._decode,
            # The kernel asks only for the record key's order (it checked key == orderId, or for an
            # unread record, that the key is on this partition), so the key is the store key.
            row_of=lambda order_id: store.get(ORDER_ROW + key),
            stream_time_ms=store.stream_time_ms, partition=partition, partition_count=self._partition_count,
            offset=message.offset(), park_of=lambda order_id: Park.from_json(store.get(PARK + key)),
            redriven=redrive is not None,
        )
        if self._keeps_stream_time:
            store.stream_time_ms = verdict.stream_time_ms
        after = verdict.after
        if after is not None:
            store.put(ORDER_ROW + key, after)
        elif verdict.new_park is not None:
            store.put(PARK + key, verdict.new_park.to_json())
        if send is None:
            return
        stats = self._stats
        stats.events_in += 1
        timestamp = message.timestamp()[1]
        if after is None:
            if verdict.outcome == "duplicate":
                stats.duplicates += 1
                return
            stats.dead_lettered += 1
        else:
            stats.applied += 1
            if verdict.late:
                stats.late += 1
        if verdict.dead_lettered:
            letter = DeadLetter(
                key=key, value=value, reason_class=verdict.reason_class or "Rejected", reason=verdict.reason or "",
                source_topic=self._orders_topic, source_partition=partition, source_offset=message.offset(),
                pipeline=self._projection.name, timestamp_ms=timestamp,
                parked_behind=None if verdict.parked_behind is None else verdict.parked_behind.where(self._orders_topic),
                redrive_of=redrive,
            )
            send(self._dlq_topic, key, value or b"", letter.headers(), timestamp, None)
            stats.count_dead_letter(letter.reason_class)
        if after is None:
            return
        projection = self._projection
        if self._repartition_topic is None:
            # verdict.changes() and encode_view_update(view_update(...)) field by field, without the
            # intermediate objects: this runs once per applied record (tests/unit/pipelines/batch/test_stage_view_records.py pins the bytes).
            order_id, seq, valid_from_ms = after["orderId"], after["lastSeq"], after["validFrom"]
            record_source = source_json(self._orders_topic, partition, message.offset())
            for view_key, delta in verdict.deltas:
                row = projection.apply(None, Change(view_key, delta, order_id, seq, valid_from_ms))
                send(self._view_topic, view_key.encode(),
                     encode_view_record(projection.name, view_key, row, row.get("validFrom", valid_from_ms), valid_from_ms, None,
                                        order_id, seq, record_source),
                     None, timestamp, None)
                stats.view_updates += 1
            return
        source = SourcePosition(self._orders_topic, partition, message.offset())
        for change in verdict.changes():
            routing = (self._partition_key(change) if self._partition_key else change.key).encode()
            send(self._repartition_topic, routing, orjson.dumps(RekeyedChange(change, routing.decode(), source).to_json()), None,
                 timestamp, partition_for(routing, self._repartition_partitions))


class RekeyStage:
    """Stage 2 of a re-keyed view, over the repartition topic (partition store per repartition partition).

    Changes of one order reach a view key in seq order (one source partition, one
    repartition partition per key), so "seq <= the last counted" recognises a change
    counted already. Under exactly-once none arrives twice; the check keeps a refold or a
    hand-fed record harmless.
    """

    def __init__(self, projection: Projection, stats: PipelineStats, *, view_topic: str) -> None:
        self._projection = projection
        self._stats = stats
        self._view_topic = view_topic

    def fold(self, message: Any, store: RowStore, send: Outputs | None) -> None:
        routed = RekeyedChange.from_json(orjson.loads(message.value()))
        change = routed.change
        # Per (view key, orderId): one order's event may change several keys of one partition (two skus).
        seen_key = SEEN + change.key.encode() + b"\x00" + change.order_id.encode()
        if (store.get(seen_key) or 0) >= change.seq:
            if send is not None:
                self._stats.rekey_duplicates += 1
            return
        store.put(seen_key, change.seq)
        row_key = VIEW_ROW + change.key.encode()
        row = self._projection.apply(store.get(row_key), change)
        store.put(row_key, row)
        if send is None:
            return
        self._stats.view_updates += 1
        source = routed.source  # encode_view_update(view_update(..., rekeyed=True)), field by field
        send(self._view_topic, change.key.encode(),
             encode_view_record(self._projection.name, change.key, row, row.get("validFrom", change.valid_from_ms), change.valid_from_ms,
                                change.delta, change.order_id, change.seq, source_json(source.topic, source.partition, source.offset)),
             None, message.timestamp()[1], None)
