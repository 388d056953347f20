"""The two processing steps of a live pipeline, as plain callables over Quix's (value, key, ts, headers, state).

Step 1 runs keyed by orderId: decode, fold the order (duplicates skipped, bad events
dead-lettered), and turn the accepted transition into the view's keyed changes.
Step 2 runs keyed by the view's partition key after Quix's repartitioning (re-keyed
views only): skip a change whose (orderId, seq) this key already counted, drop late
window changes to the DLQ, fold the change into the row.

Items passed downstream are small dicts tagged by ``"t"``: "dlq" (a dead letter),
"chg" (a change to re-key) or "out" (a view record to publish).
"""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
from quixstreams import State, message_context

from pipelines.dlq import DeadLetter
from pipelines.live.row_cache import MISSING, RowCache
from pipelines.live.stats import PipelineStats
from pipelines.projections import Change, OrderFoldResult, Projection, order_step
from pipelines.projections.base import changes_of
from schemas.errors import CodecError
from schemas.fast_decode import FastDecoder

__all__ = ["OrderStep", "RekeyedStep", "view_record"]

ORDER_STATE_KEY = "order"
#: The same store key as Quix's JSON serialisation of ORDER_STATE_KEY (so older state dirs and
#: changelogs stay readable), passed as bytes to skip that serialisation on every event.
ORDER_STATE_KEY_BYTES = orjson.dumps(ORDER_STATE_KEY)
SEEN_PREFIX = "seen:"
ROW_PREFIX = "row:"
STREAM_TIME_KEY = "streamTime"


def view_record(view: str, change: Change, row: dict[str, Any], source: list[Any]) -> dict[str, Any]:
    """The value published to ``view.<name>``.

    ``row`` is the new row; ``validFrom`` when it became valid (the row's max event time);
    ``change`` the delta that made it, with the (orderId, seq) and the event time at which
    that delta becomes visible (a read replica uses it to answer as-of reads of counter
    views even when changes arrive out of event-time order); ``source`` the orders-topic
    position of the event.
    """
    return {
        "t": "out",
        "view": view,
        "key": change.key,
        "row": row,
        "validFrom": row.get("validFrom", change.valid_from_ms),
        "change": {"orderId": change.order_id, "seq": change.seq, "validFrom": change.valid_from_ms, "delta": change.delta if view != "order-status" else None},
        "source": {"topic": source[0], "partition": source[1], "offset": source[2]},
    }


def _dead_letter_item(letter: DeadLetter) -> dict[str, Any]:
    return {"t": "dlq", "key": letter.key, "raw": letter.value, "headers": letter.headers(), "validFrom": letter.timestamp_ms}


class OrderStep:
    """Step 1 (stateful, keyed by orderId)."""

    def __init__(self, projection: Projection, stats: PipelineStats, *, rekeyed: bool, rows: RowCache | None = None) -> None:
        self._projection = projection
        self._stats = stats
        self._rekeyed = rekeyed
        self._decode = FastDecoder().decode
        #: Order rows this process wrote; the application clears it when partitions move.
        self.rows = rows if rows is not None else RowCache()

    def _reject(self, value: bytes, key: bytes | None, timestamp: int, reason_class: str, reason: str) -> list[dict[str, Any]]:
        ctx = message_context()
        self._stats.dead_lettered += 1
        letter = DeadLetter(
            key=key, value=value, reason_class=reason_class, reason=reason, source_topic=ctx.topic,
            source_partition=ctx.partition, source_offset=ctx.offset, pipeline=self._projection.name, timestamp_ms=timestamp,
        )
        return [_dead_letter_item(letter)]

    def __call__(self, value: bytes, key: bytes | None, timestamp: int, headers: Any, state: State) -> list[dict[str, Any]]:
        stats = self._stats
        stats.last_event_at = now = time.monotonic()
        if stats.first_event_at is None:
            stats.first_event_at = now
        stats.events_in += 1
        try:
            event = self._decode(value)
        except CodecError as exc:
            return self._reject(value, key, timestamp, type(exc).__name__, str(exc))
        order_id = event["envelope"]["orderId"]
        if key is None or key.decode(errors="replace") != order_id:
            return self._reject(value, key, timestamp, "KeyMismatch", f"record key {key!r} is not the event's orderId {order_id!r}")
        row = self.rows.get(key)
        if row is MISSING:
            stored = state.get_bytes(ORDER_STATE_KEY_BYTES)
            row = None if stored is None else orjson.loads(stored)
        after = order_step(row, event)
        if type(after) is OrderFoldResult:  # not applied: the result says why
            if after.outcome == "duplicate":
                self._stats.duplicates += 1
                return []
            return self._reject(value, key, timestamp, after.reason_class or "Rejected", after.reason or "")
        state.set_bytes(ORDER_STATE_KEY_BYTES, orjson.dumps(after))
        self.rows.put(key, after)
        self._stats.applied += 1
        ctx = message_context()
        source = [ctx.topic, ctx.partition, ctx.offset]
        changes = changes_of(self._projection.deltas(event, after), after)
        if self._rekeyed:
            return [{"t": "chg", "pk": _partition_key(self._projection, c), "src": source, **c.to_dict()} for c in changes]
        out = []
        for change in changes:
            self._stats.view_updates += 1
            out.append(view_record(self._projection.name, change, self._projection.apply(None, change), source))
        return out


def _partition_key(projection: Projection, change: Change) -> str:
    partition_key = getattr(projection, "partition_key", None)
    return partition_key(change) if partition_key else change.key


class RekeyedStep:
    """Step 2 (stateful, keyed by the view's partition key: customerId, sku or currency).

    For windowed views, "late" is judged against a watermark: the minimum over every
    source partition of the largest event time seen from it for this key. A per-key
    maximum alone would call most events late during a catch-up, because the consumer
    hands over one partition's backlog in large chunks before the next's.
    """

    def __init__(self, projection: Projection, stats: PipelineStats, *, source_partitions: int) -> None:
        self._projection = projection
        self._stats = stats
        self._late_by = getattr(projection, "late_by_ms", None)
        self._source_partitions = source_partitions

    def _advance_watermark(self, state: State, *, partition: int, event_time_ms: int) -> int | None:
        """Record this event's time for its source partition; return the watermark (None until every partition was seen)."""
        seen: dict[str, int] = state.get(STREAM_TIME_KEY) or {}
        key = str(partition)
        if seen.get(key, -1) < event_time_ms:
            seen[key] = event_time_ms
            state.set(STREAM_TIME_KEY, seen)
        return min(seen.values()) if len(seen) >= self._source_partitions else None

    def _late_letter(self, value: dict[str, Any], change: Change, *, late_by: int, watermark: int) -> dict[str, Any]:
        src = value["src"]
        body = value["delta"] | {"key": change.key, "orderId": change.order_id, "seq": change.seq, "occurredAt": change.valid_from_ms}
        letter = DeadLetter(
            key=change.order_id.encode(), value=json.dumps(body).encode(), reason_class="LateEvent",
            reason=f"{late_by} ms past the window's end + grace (watermark {watermark})",
            source_topic=src[0], source_partition=src[1], source_offset=src[2], pipeline=self._projection.name,
            timestamp_ms=change.valid_from_ms,
        )
        return _dead_letter_item(letter)

    def __call__(self, value: dict[str, Any], key: Any, timestamp: int, headers: Any, state: State) -> list[dict[str, Any]]:
        change = Change.from_dict(value)
        seen_key = SEEN_PREFIX + change.order_id
        # Changes of one order reach this key in seq order (one source partition, one
        # repartition partition), so "seq <= last counted" recognises a redelivery.
        if state.get(seen_key, 0) >= change.seq:
            self._stats.rekey_duplicates += 1
            return []
        state.set(seen_key, change.seq)
        if self._late_by is not None:
            watermark = self._advance_watermark(state, partition=value["src"][1], event_time_ms=change.valid_from_ms)
            late_by = 0 if watermark is None else self._late_by(change, stream_time_ms=watermark)
            if late_by > 0:
                self._stats.late += 1
                return [self._late_letter(value, change, late_by=late_by, watermark=watermark)]
        row_key = ROW_PREFIX + change.key
        row = self._projection.apply(state.get(row_key), change)
        state.set(row_key, row)
        self._stats.view_updates += 1
        return [view_record(self._projection.name, change, row, value["src"])]
