"""A per-order view's store writes, encoded where its orders are folded (a replay worker).

:meth:`state.rocks_store.RocksStore.apply` does two things in its one process: it turns
updates into RocksDB operations (:class:`~state.rocks_apply.KeyApplier`, which reads
each row's latest version) and it commits them with the position. A replay has one
writer and several folding workers, and on a per-order view (keyed by orderId) the
worker that folds an order knows the row's latest version without reading the store:
it is the order's row before the batch (versions are the order rows; a snapshot's
store and fold state hold the same rows). So the worker runs the same KeyApplier over
the same :class:`~state.contracts.ViewUpdate` values, with that knowledge for its
reads and a :class:`RecordingBatch` for its writes (:func:`encode_row_writes`), and the
store's writer only commits the operations (:meth:`RocksStore.apply_encoded`). The
encoding moves off the single writer onto the workers, and what crosses the pipe is
small byte strings instead of row dicts.

The store ends up byte-identical to ``apply`` of the same updates in the same order
(tests/unit/state/test_encoded_writes.py; the store contract suite also runs against a
writer that applies through here). Batches must be committed in the order they were
encoded: each one's reads assume every earlier one is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from pipelines.projections import Row, view_spec
from state.contracts import ViewUpdate
from state.errors import InvalidUpdateError
from state.records import StoredVersion
from state.rocks_apply import ApplyCounts, KeyApplier, group_updates

__all__ = ["EncodedWrites", "EncodedWritesStore", "RecordingBatch", "encode_row_writes", "latest_from_order_row"]


class RecordingBatch:
    """A WriteBatch stand-in: records puts and deletes, in order, as one flat list
    ``[key, value, key, value, ...]`` with ``value`` None for a delete (flat: cheaper to
    pickle and to replay than a list of pairs)."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[bytes | None] = []

    def put(self, key: bytes, value: bytes) -> None:
        """Record a put."""
        self.ops += (key, value)

    def delete(self, key: bytes) -> None:
        """Record a delete."""
        self.ops += (key, None)


class EncodedWrites(NamedTuple):
    """What one :func:`encode_row_writes` call makes the store write, besides the position.

    ``ops``: :class:`RecordingBatch` operations; ``source_ends``: (view, source topic,
    source partition) -> the highest source offset among the updates kept (the store's
    source position becomes one past it); the rest are the apply's counts.
    """

    ops: list[bytes | None]
    source_ends: dict[tuple[str, str, int], int]
    applied: int
    skipped_position: int
    skipped_duplicate: int
    clamped_valid_from: int


@runtime_checkable
class EncodedWritesStore(Protocol):
    """A store that commits writes encoded apart (:class:`state.rocks_store.RocksStore`)."""

    def apply_encoded(self, writes: Sequence[EncodedWrites], *, position: Mapping[str, Mapping[int, int]]) -> int:
        """Commit ``writes`` (in the order they were encoded) and the position, in one batch."""
        ...


def encode_row_writes(
    updates: Sequence[ViewUpdate],
    *,
    stored_position: Mapping[str, Mapping[int, int]],
    latest_of: Callable[[str], StoredVersion | None],
) -> EncodedWrites:
    """Steps 1-3 of :meth:`RocksStore.apply` for updates of per-order views, without the store.

    ``stored_position``: the store's position as the batch will find it (a replay worker:
    where its partitions started); ``latest_of``: orderId -> the row's latest version once
    every earlier batch is committed (None: the store has no row). Raises
    :class:`InvalidUpdateError` for an update of a re-keyed view (those may re-derive from
    the store, which only its writer can read) and UnknownViewError for an unknown view.
    """
    for view in dict.fromkeys([update.view for update in updates]):
        if view_spec(view).rekeyed:  # UnknownViewError for an unknown view
            raise InvalidUpdateError(f"{view} is re-keyed: its updates are applied by the store, not encoded apart")
    groups, source_ends, skipped = group_updates(updates, stored_position)
    batch = RecordingBatch()
    counts = ApplyCounts()
    applier = KeyApplier(None, batch, counts, latest_of=latest_of)
    applied = sum(applier.apply_group(view, key, group) for (view, key), group in groups.items())
    return EncodedWrites(batch.ops, source_ends, applied, skipped, counts.skipped_duplicate, counts.clamped_valid_from)


def latest_from_order_row(row: Row | None) -> StoredVersion | None:
    """The store's latest version of a per-order view row, from the order row the fold holds
    (None: no row). Valid from the row's ``validFrom`` with its ``lastSeq``: the order fold
    never lowers validFrom, so the store never moved a version of it. Its source is left
    out: encoding later versions never needs it."""
    if row is None:
        return None
    return StoredVersion(row["validFrom"], row, None, row["lastSeq"])
