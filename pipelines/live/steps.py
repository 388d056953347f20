"""The two processing steps of a live pipeline, as plain callables over Quix's (value, key, ts, headers, state).

Step 1 runs keyed by orderId and calls the kernel (:mod:`pipelines.kernel`): decode,
fold the order (duplicates skipped, bad events dead-lettered), the view's keyed
changes, late window changes dead-lettered. Step 2 runs keyed by the view's partition
key after Quix's repartitioning (re-keyed views only): skip a change whose (orderId,
seq) this key already counted, fold the change into the row.

Each step returns its output items, typed: a :class:`~pipelines.dlq.DeadLetter` (for the
DLQ), a :class:`~state.contracts.ViewUpdate` (for ``view.<name>``), or a
:class:`RekeyedChange` (the repartition hop of a re-keyed view; Quix carries it as JSON,
so it crosses as ``RekeyedChange.to_json()``). The steps touch no topic: the application
runs each one inside :class:`~pipelines.live.outputs.ProducingStep`, which produces the
dead letters and view updates within the same Quix step and forwards only the changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from quixstreams import State, message_context
from quixstreams.state.base.state import TransactionState

from pipelines.dlq import DeadLetter, redrive_of
from pipelines.kernel import Park, Verdict, process_record
from pipelines.live.row_cache import MISSING, RowCache
from pipelines.live.stats import PipelineStats
from pipelines.projections import Change, Projection, Row
from schemas.codec import Event
from schemas.fast_decode import event_decoder
from state.contracts import SourcePosition, ViewUpdate

__all__ = ["OrderStep", "RekeyedStep", "RekeyedChange", "view_update", "LiveItem"]

#: What step 1 hands downstream (see the module docstring).
LiveItem = DeadLetter | ViewUpdate | dict[str, Any]

ORDER_STATE_KEY = "order"
#: The same store key as Quix's JSON serialisation of ORDER_STATE_KEY (so older state dirs and
#: changelogs stay readable), passed as bytes to skip that serialisation on every event.
ORDER_STATE_KEY_BYTES = orjson.dumps(ORDER_STATE_KEY)
#: The order's park (:class:`~pipelines.kernel.Park` as JSON) in its per-key state, next to the row, never in it.
PARK_STATE_KEY = "park"
SEEN_PREFIX = "seen:"
ROW_PREFIX = "row:"
STREAM_TIME_KEY = "streamTime"
#: Prefix of partition-wide state in step 1's store (message keys are orderIds, never this).
PARTITION_STATE_PREFIX = b"\x00rewind:partition"


def view_update(view: str, change: Change, row: Row, source: SourcePosition, *, rekeyed: bool) -> ViewUpdate:
    """The update published to ``view.<name>`` for ``change``, which made ``row``.

    ``row_valid_from_ms`` is when the row became valid (its max event time);
    ``change_valid_from_ms`` when the delta becomes visible (a read replica uses it to answer
    as-of reads of counter views even when changes arrive out of event-time order); the
    delta is None for a per-order view (the row is the version); ``source`` is the orders
    record the change came from.
    """
    # Positional (view, key, row, row_valid_from_ms, change_valid_from_ms, delta, order_id, seq,
    # source): one per published record, and keyword arguments cost a NamedTuple ~0.3 µs more.
    valid_from_ms = change.valid_from_ms
    return ViewUpdate(view, change.key, row, row.get("validFrom", valid_from_ms), valid_from_ms,
                      change.delta if rekeyed else None, change.order_id, change.seq, source)


@dataclass(frozen=True, slots=True)
class RekeyedChange:
    """A change on its way to the re-keyed step: the change, the key Quix partitions it by
    (``partition_key``) and the orders record it came from."""

    change: Change
    partition_key: str
    source: SourcePosition

    def to_json(self) -> dict[str, Any]:
        """The JSON-friendly form Quix's repartition topic carries."""
        src = self.source
        return {**self.change.to_dict(), "pk": self.partition_key, "src": [src.topic, src.partition, src.offset]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RekeyedChange:
        """Inverse of :meth:`to_json`."""
        topic, partition, offset = data["src"]
        return cls(Change.from_dict(data), data["pk"], SourcePosition(topic, partition, offset))


class OrderStep:
    """Step 1 (stateful, keyed by orderId): the kernel (:func:`pipelines.kernel.process_record`)
    over Quix's state. This adapter only reads and writes state and shapes the outputs.

    The partition's stream time lives in the same state store partition as the order rows,
    under a prefix no message key has, so it is checkpointed and restored with them (and
    with the consumer offset, under exactly-once).
    """

    def __init__(
        self, projection: Projection, stats: PipelineStats, *, rekeyed: bool, rows: RowCache | None = None,
        decode: Callable[[bytes], Event] | None = None, partition_count: int | None = None,
    ) -> None:
        self._projection = projection
        #: The orders topic's partition count, for the kernel's placement check (a record on another
        #: partition than its key's is a ``WrongPartition`` dead letter); None skips it (unit tests).
        self._partition_count = partition_count
        self._stats = stats
        self._rekeyed = rekeyed
        #: bytes -> the event in the newest shape (:func:`schemas.fast_decode.event_decoder`).
        self._decode = decode or event_decoder()
        #: Order rows this process wrote; the application clears it when partitions move.
        self.rows = rows if rows is not None else RowCache()
        #: Stream time per source partition as this process last wrote it (cleared with ``rows``).
        self.stream_times: dict[int, int | None] = {}
        #: Only the late rule reads stream time, so only windowed views keep it (a state write
        #: per event that advances it: measured ~10% of an order-status event).
        self._keeps_stream_time = getattr(projection, "late_by_ms", None) is not None

    def partitions_moved(self) -> None:
        """Forget what is only valid while this process owns its partitions."""
        self.rows.clear()
        self.stream_times.clear()

    def _dead_letter(self, value: bytes, key: bytes | None, timestamp: int, verdict: Verdict, ctx: Any,
                     redrive: str | None) -> DeadLetter:
        return DeadLetter(
            key=key, value=value, reason_class=verdict.reason_class or "Rejected", reason=verdict.reason or "",
            source_topic=ctx.topic, source_partition=ctx.partition, source_offset=ctx.offset,
            pipeline=self._projection.name, timestamp_ms=timestamp,
            parked_behind=None if verdict.parked_behind is None else verdict.parked_behind.where(ctx.topic),
            redrive_of=redrive,
        )

    def __call__(self, value: bytes, key: bytes | None, timestamp: int, headers: Any, state: State[Any, Any]) -> list[LiveItem]:
        stats = self._stats
        stats.last_event_at = now = time.monotonic()
        if stats.first_event_at is None:
            stats.first_event_at = now
        stats.events_in += 1
        ctx = message_context()
        partition = ctx.partition
        stream_times = self.stream_times
        keeps_stream_time = self._keeps_stream_time
        if not keeps_stream_time:
            stream_time = None
        elif partition in stream_times:
            stream_time = stream_times[partition]
        else:
            stream_time = _partition_state(state).get(STREAM_TIME_KEY)

        def row_of(_order_id: str) -> Row | None:
            # The state is scoped to the message key, which the kernel has checked is the orderId and
            # belongs on this partition, so the cache (keyed by key alone) holds this partition's row.
            row = self.rows.get(key)  # type: ignore[arg-type]  # the kernel checked key == orderId, so not None
            if row is MISSING:
                stored = state.get_bytes(ORDER_STATE_KEY_BYTES)
                row = None if stored is None else orjson.loads(stored)
            return row  # type: ignore[no-any-return]  # orjson/RowCache give Any; rows are JSON objects

        def park_of(_order_id: str) -> Park | None:
            # Per-key state, like the row: the kernel asks only for the record key's order.
            return Park.from_json(state.get(PARK_STATE_KEY))

        redrive = redrive_of(headers)
        verdict = process_record(self._projection, key, value, decode=self._decode, row_of=row_of, stream_time_ms=stream_time,
                                 partition=partition, partition_count=self._partition_count, offset=ctx.offset,
                                 park_of=park_of, redriven=redrive is not None)
        if keeps_stream_time:
            if verdict.stream_time_ms != stream_time:
                _partition_state(state).set(STREAM_TIME_KEY, verdict.stream_time_ms)
            stream_times[partition] = verdict.stream_time_ms
        after = verdict.after
        if after is None:
            if verdict.outcome == "duplicate":
                stats.duplicates += 1
                return []
            stats.dead_lettered += 1
            if verdict.new_park is not None:
                state.set(PARK_STATE_KEY, verdict.new_park.to_json())
            return [self._dead_letter(value, key, timestamp, verdict, ctx, redrive)]
        state.set_bytes(ORDER_STATE_KEY_BYTES, orjson.dumps(after))
        self.rows.put(key, after)  # type: ignore[arg-type]  # applied: key was checked == orderId
        stats.applied += 1
        out: list[LiveItem] = []
        if verdict.late:
            stats.late += 1
            out.append(self._dead_letter(value, key, timestamp, verdict, ctx, redrive))
        source = SourcePosition(ctx.topic, partition, ctx.offset)
        changes = verdict.changes()
        if self._rekeyed:
            out.extend(RekeyedChange(c, _partition_key(self._projection, c), source).to_json() for c in changes)
            return out
        for change in changes:
            stats.view_updates += 1
            out.append(view_update(self._projection.name, change, self._projection.apply(None, change), source, rekeyed=False))
        return out


def _partition_state(state: State[Any, Any]) -> TransactionState:
    """Partition-wide state next to the per-key state Quix hands a step (same transaction)."""
    return TransactionState(prefix=PARTITION_STATE_PREFIX, transaction=state._transaction)  # type: ignore[attr-defined]  # Quix gives no public partition-wide state


def _partition_key(projection: Projection, change: Change) -> str:
    partition_key = getattr(projection, "partition_key", None)
    return partition_key(change) if partition_key else change.key


class RekeyedStep:
    """Step 2 (stateful, keyed by the view's partition key: customerId, sku or currency).

    Only folds: skip a change whose (orderId, seq) this key already counted (a redelivery),
    fold the rest into the row. Whether a change is late was decided in step 1 by the
    kernel, against its source partition's stream time, so it does not depend on the
    order in which the repartition topic interleaves partitions.
    """

    def __init__(self, projection: Projection, stats: PipelineStats) -> None:
        self._projection = projection
        self._stats = stats

    def __call__(self, value: dict[str, Any], key: Any, timestamp: int, headers: Any, state: State[Any, Any]) -> list[ViewUpdate]:
        # The run's events/s span ends at its last folded record of either step, as the batch engine's
        # does: a re-keyed view is done when step 2 is (step 1 alone made Quix look twice as fast).
        self._stats.last_event_at = time.monotonic()
        routed = RekeyedChange.from_json(value)
        change = routed.change
        seen_key = SEEN_PREFIX + change.order_id
        # Changes of one order reach this key in seq order (one source partition, one
        # repartition partition), so "seq <= last counted" recognises a redelivery.
        if state.get(seen_key, 0) >= change.seq:
            self._stats.rekey_duplicates += 1
            return []
        state.set(seen_key, change.seq)
        row_key = ROW_PREFIX + change.key
        row = self._projection.apply(state.get(row_key), change)
        state.set(row_key, row)
        self._stats.view_updates += 1
        return [view_update(self._projection.name, change, row, routed.source, rekeyed=True)]
