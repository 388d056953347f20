"""Store writes of a per-order view (order-status), encoded in the replay worker that folded the orders.

A per-order view's row is keyed by orderId, so one worker folds every version of it, and
the row the store holds as its latest version is the row the worker's fold had before
(a snapshot's store and fold state hold the same rows). The worker can therefore encode
the store's writes without reading the database, and the parent, the single writer,
only copies finished operations into a WriteBatch. That moves most of the store's
Python work from the one parent process onto the workers, and the rows cross the pipe
as small byte strings instead of pickled dicts.

The database ends up exactly as :meth:`state.rocks_store.RocksStore.apply` of the same
updates leaves it (:func:`state.rocks_apply.append_row_versions`; the tests compare the
two byte for byte).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from pipelines.projections import Row
from state.records import encode_version_fields
from state.rocks_apply import append_row_versions

__all__ = ["EncodedWrites", "RecordingBatch", "encode_order_rows"]

#: One write: (key, value) puts, (key, None) deletes.
Op = tuple[bytes, bytes | None]


class EncodedWrites(NamedTuple):
    """What one worker batch makes the store write (besides the position).

    ``source_ends``: per orders partition, the highest source offset among the updates
    (the store's source position becomes one past it). ``updates``: how many updates
    the operations apply (the count :meth:`RocksStore.apply` would return).
    """

    ops: list[Op]
    source_ends: dict[int, int]
    updates: int


class RecordingBatch:
    """A WriteBatch stand-in that records puts and deletes in order."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def put(self, key: bytes, value: bytes) -> None:
        """Record a put."""
        self.ops.append((key, value))

    def delete(self, key: bytes) -> None:
        """Record a delete."""
        self.ops.append((key, None))


def encode_order_rows(
    topic: str, changes: Iterable[tuple[Any, ...]], rows_before: Mapping[str, Row | None], *, view: str
) -> EncodedWrites:
    """The store writes of one worker batch of per-order ``view``'s ``changes``
    (:class:`~state.replay.fold.FoldedChange` tuples; the payload is the new order row).

    ``rows_before``: each changed order's row before the batch (None: new), which is the
    latest version the store holds for it once the earlier batches are written.
    """
    # Per order, its new versions in order: a later seq at the same validFrom replaces the
    # version (the state as of T is the longest seq prefix with every event time <= T).
    versions: dict[str, list[tuple[int, Row, bytes]]] = {}
    source_ends: dict[int, int] = {}
    updates = 0
    for key, row, _order_id, seq, _valid_from_ms, partition, offset in changes:
        version = (row["validFrom"], row, encode_version_fields(row, topic, partition, offset, seq))
        found = versions.get(key)
        if found is None:
            versions[key] = [version]
        elif found[-1][0] == version[0]:
            found[-1] = version
        else:
            found.append(version)
        if offset > source_ends.get(partition, -1):
            source_ends[partition] = offset
        updates += 1
    batch = RecordingBatch()
    for key, new in versions.items():
        before = rows_before[key]
        append_row_versions(batch, view, key, None if before is None else (before["validFrom"], before), new)
    return EncodedWrites(batch.ops, source_ends, updates)
