"""Writing a replay into a view store: every version, with the position it reaches.

Each folded change becomes one :class:`~state.contracts.ViewUpdate` (so the replayed
store answers as-of reads, not only "now"); ``source`` and ``record_position`` are the
orders record it came from. Updates are written in batches; each
``store.apply(updates, position=...)`` is one atomic write of the updates *and* the
orders-topic next_offsets they reach, so a store is never ahead of or behind its position.

Re-keyed views: changes are released in event-time order
-------------------------------------------------------
A customer's changes come from every partition, and the workers' batches interleave
arbitrarily, so arriving changes step back in time (by up to a batch's worth of event
time). The store accepts that but must then re-derive every later version of the key
(:mod:`state.rocks_apply`), which for a busy customer costs O(its versions) per batch.
So the sink holds changes (:class:`~state.replay.held.HeldChanges`) and releases them in
``valid_from_ms`` order (ties in arrival order), up to a watermark no future change can precede:

    a record read later in partition p arrived no earlier than any record read before it,
    hence no earlier than max_ts(p), the greatest record timestamp read so far; it occurred
    at most max_lateness_ms before it arrived; a change's valid_from is at least its own
    event's occurredAt. So every future change from p has valid_from >= max_ts(p) - L.

The watermark is the minimum of ``max_ts(p) - L`` over partitions not yet finished.
Counters are sums, so the order changes fold in changes no row's final value; it only
decides how much the store re-derives. If the lateness bound is broken by the data,
the store still gets every change and stays exact, only slower.

A position must never pass a change still held back (the store would skip it as already
applied): the position written with a batch is, per partition, the smallest of the
offsets read and the offsets of changes still held.

The sink writes through :meth:`~state.contracts.WritableProjectionStore.apply`, or, for a
per-order view whose workers encoded the writes themselves (:mod:`state.encoded_writes`),
through the RocksDB store's :meth:`~state.rocks_store.RocksStore.apply_encoded`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from state.contracts import SourcePosition, ViewUpdate, WritableProjectionStore
from state.encoded_writes import EncodedWrites
from state.replay.fold import ViewFolder
from state.replay.held import HeldChanges

__all__ = ["StoreSink", "per_order_updates"]

_NO_WATERMARK = -(2**63)
_ALL = 2**63


def per_order_updates(view: str, topic: str, changes: Iterable[tuple[Any, ...]]) -> list[ViewUpdate]:
    """The ViewUpdates of a per-order view's folded changes (:class:`~state.replay.fold.FoldedChange`
    tuples, whose payload is the order's new row): the row is the version, ``source`` and
    ``record_position`` the orders record it came from."""
    out: list[ViewUpdate] = []
    append = out.append
    for key, row, order_id, seq, valid_from_ms, partition, offset in changes:
        source = SourcePosition(topic, partition, offset)
        append(ViewUpdate(view, key, row, row.get("validFrom", valid_from_ms), valid_from_ms, None, order_id, seq, source, source))
    return out


class StoreSink:
    """Buffers updates and applies them with the position reached, ``batch_updates`` at a time.

    ``view_folder`` is set for re-keyed views: their changes are folded into rows here,
    where every partition's changes meet, in event-time order (module docstring).
    ``stop_offsets`` (next_offsets) tell when a partition is finished.
    """

    def __init__(
        self,
        store: WritableProjectionStore,
        *,
        view: str,
        topic: str,
        start_offsets: Mapping[int, int],
        stop_offsets: Mapping[int, int] | None = None,
        view_folder: ViewFolder | None,
        max_lateness_ms: int = 0,
        batch_updates: int = 20_000,
        max_held: int = 500_000,
    ) -> None:
        self._store = store
        self._view = view
        self._topic = topic
        self._folder = view_folder
        self._batch_updates = batch_updates
        self._lateness_ms = max_lateness_ms
        self._max_held = max_held
        #: next_offset per partition of everything handed to :meth:`add` (written or held).
        self.next_offsets: dict[int, int] = dict(start_offsets)
        self._stop = dict(stop_offsets if stop_offsets is not None else start_offsets)
        self._max_ts: dict[int, int] = {}
        self._held = HeldChanges()
        self._pending: list[ViewUpdate] = []
        self._encoded: list[EncodedWrites] = []
        self._encoded_updates = 0
        self.updates_written = 0

    def _advance(self, next_offsets: Mapping[int, int], max_timestamp_ms: Mapping[int, int]) -> None:
        for partition, next_offset in next_offsets.items():
            if next_offset > self.next_offsets.get(partition, 0):
                self.next_offsets[partition] = next_offset
        for partition, ts in max_timestamp_ms.items():
            if ts > self._max_ts.get(partition, _NO_WATERMARK):
                self._max_ts[partition] = ts

    def add(self, changes: Iterable[tuple[Any, ...]], next_offsets: Mapping[int, int], max_timestamp_ms: Mapping[int, int]) -> None:
        """Take one worker batch: its changes (:class:`~state.replay.fold.FoldedChange` tuples), the
        next_offsets its partitions reached, and the greatest record timestamp read in each."""
        self._advance(next_offsets, max_timestamp_ms)
        if self._folder is None:
            self._rows_to_updates(changes)
        else:
            held = self._held
            held.add(changes)
            self._release(held.release(self._watermark_ms()))
            if len(held) > self._max_held:
                # One partition far behind the others would hold everything else back: bound
                # the memory, and let the store re-derive what then arrives out of order.
                self._release(held.release_first(len(held) - self._max_held // 2))
        if len(self._pending) >= self._batch_updates:
            self.flush()

    def _rows_to_updates(self, changes: Iterable[tuple[Any, ...]]) -> None:
        self._pending += per_order_updates(self._view, self._topic, changes)

    def add_encoded(self, writes: EncodedWrites, next_offsets: Mapping[int, int], max_timestamp_ms: Mapping[int, int]) -> None:
        """Take one worker batch of a per-order view whose store writes the worker encoded
        (:mod:`state.encoded_writes`); committed in arrival order, which per worker is the
        order they were encoded in (a worker's batches only touch its own orders)."""
        self._advance(next_offsets, max_timestamp_ms)
        self._encoded.append(writes)
        self._encoded_updates += writes.applied + writes.skipped_position + writes.skipped_duplicate
        if self._encoded_updates >= self._batch_updates:
            self.flush()

    def _watermark_ms(self) -> int:
        """No change still to come from any unfinished partition has a valid_from below this."""
        marks = [
            self._max_ts.get(p, _NO_WATERMARK + self._lateness_ms) - self._lateness_ms
            for p, stop in self._stop.items()
            if self.next_offsets.get(p, 0) < stop
        ]
        return min(marks) if marks else _ALL

    def _release(self, released: list[tuple[Any, ...]]) -> None:
        """Fold and queue ``released`` (changes let go by :class:`HeldChanges`, in valid_from order)."""
        assert self._folder is not None
        fold = self._folder.apply
        view, topic = self._view, self._topic
        append = self._pending.append
        for key, delta, order_id, seq, valid_from_ms, partition, offset in released:
            row = fold(key, delta, order_id, seq, valid_from_ms)
            source = SourcePosition(topic, partition, offset)
            append(ViewUpdate(view, key, row, row["validFrom"], valid_from_ms, delta, order_id, seq, source, source))

    def _safe_position(self) -> dict[int, int]:
        """Per partition, the next_offset reached, lowered below any change still held back."""
        position = dict(self.next_offsets)
        for change in self._held:
            partition, offset = change[5], change[6]
            if offset < position.get(partition, _ALL):
                position[partition] = offset
        return position

    def flush(self, *, final: bool = False) -> None:
        """Apply what is queued (with ``final``: everything held too), with the position reached,
        in one store batch; also when empty, since records that changed nothing still advance it."""
        if final and self._folder is not None:
            self._release(self._held.release(_ALL))
        if self._encoded:
            assert not self._pending, "a sink takes updates or encoded writes, not both"
            encoded, self._encoded = self._encoded, []
            self._store.apply_encoded(encoded, position={self._topic: self._safe_position()})  # type: ignore[attr-defined]  # add_encoded is only used with such a store (engine)
            self.updates_written += self._encoded_updates
            self._encoded_updates = 0
            return
        pending, self._pending = self._pending, []
        self._store.apply(pending, position={self._topic: self._safe_position()})
        self.updates_written += len(pending)
