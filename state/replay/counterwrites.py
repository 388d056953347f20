"""Counter-view store writes, encoded from the rows the replay parent has already folded.

A re-keyed (counter) view's rows are folded in the replay parent (:class:`~state.replay.fold.ViewFolder`),
and the sink releases changes in event-time order. For a key whose changes of one store
batch never step back in time (each at or after the key's row validFrom when it arrives),
what :meth:`state.rocks_store.RocksStore.apply` would write is known without reading the
database or folding again:

* every change is stored under its change key (none is a duplicate: the worker fold
  applies each (orderId, seq) once and a product's deltas are merged per key);
* one version per distinct change time, whose row is the fold after the last change at
  that time and whose source is the time's greatest (orderId, seq) (``_fold_versions``
  sorts a time's changes that way); a change at the latest version's time rewrites it;
* the latest version before the batch is the row the folder held before the batch's
  first change of the key (the store was written up to that point).

A key with a change that steps back (the sink released it late: a broken lateness bound
or a memory-bounded release) keeps the store's own path: its updates are re-derived by
:class:`~state.rocks_apply.KeyApplier` in the same write batch. The tests compare both
paths byte for byte.
"""

from __future__ import annotations

from typing import Any

from pipelines.projections import Row
from state import keys as K
from state.contracts import SourcePosition, ViewUpdate
from state.records import encode_change_fields, encode_version_fields
from state.rocks_apply import append_row_versions

__all__ = ["CounterWrites"]

# Per pending change: (valid_from_ms, order_id, seq, delta, partition, offset, row after it).
_Pending = tuple[int, str, int, Row, int, int, Row]


class _KeyGroup:
    """One key's changes within the current store batch."""

    __slots__ = ("before", "changes", "stepped_back")

    def __init__(self, before: Row | None) -> None:
        self.before = before
        self.changes: list[_Pending] = []
        self.stepped_back = False


class CounterWrites:
    """Collects one store batch of folded counter changes; :meth:`take` encodes them."""

    def __init__(self, view: str, topic: str) -> None:
        self._view = view
        self._topic = topic
        self._groups: dict[str, _KeyGroup] = {}
        self._source_ends: dict[int, int] = {}
        self.updates = 0

    def add(self, key: str, before: Row | None, row: Row, delta: Row, order_id: str, seq: int, valid_from_ms: int,
            partition: int, offset: int) -> None:
        """Record one change of ``key``, folded from ``before`` (the key's row before it) into ``row``."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _KeyGroup(before)
        if before is not None and valid_from_ms < before["validFrom"]:
            group.stepped_back = True
        group.changes.append((valid_from_ms, order_id, seq, delta, partition, offset, row))
        ends = self._source_ends
        if offset > ends.get(partition, -1):
            ends[partition] = offset
        self.updates += 1

    def take(self, batch: Any) -> tuple[list[ViewUpdate], dict[int, int], int]:
        """Encode the batch's writes into ``batch`` (puts and deletes, e.g. a
        :class:`~state.replay.rowwrites.RecordingBatch`); return (updates the store must
        re-derive, source ends, updates in all), and reset."""
        view, topic = self._view, self._topic
        put = batch.put
        rederive: list[ViewUpdate] = []
        for key, group in self._groups.items():
            if group.stepped_back:
                for valid_from_ms, order_id, seq, delta, partition, offset, row in group.changes:
                    source = SourcePosition(topic, partition, offset)
                    rederive.append(ViewUpdate(view, key, row, row["validFrom"], valid_from_ms, delta, order_id, seq,
                                               source, source))
                continue
            change_prefix = K.change_prefix(view, key)
            # Per distinct time: [valid_from_ms, row, (order_id, seq) of the source, partition, offset].
            versions: list[list[Any]] = []
            for valid_from_ms, order_id, seq, delta, partition, offset, row in group.changes:
                put(change_prefix + K.change_suffix(valid_from_ms, order_id, seq),
                    encode_change_fields(delta, topic, partition, offset))
                if versions and versions[-1][0] == valid_from_ms:
                    last = versions[-1]
                    last[1] = row
                    if (order_id, seq) > last[2]:
                        last[2:] = [(order_id, seq), partition, offset]
                else:
                    versions.append([valid_from_ms, row, (order_id, seq), partition, offset])
            before = group.before
            append_row_versions(
                batch, view, key, None if before is None else (before["validFrom"], before),
                [(v[0], v[1], encode_version_fields(v[1], topic, v[3], v[4], None)) for v in versions],
            )
        out = (rederive, self._source_ends, self.updates)
        self._groups = {}
        self._source_ends = {}
        self.updates = 0
        return out
