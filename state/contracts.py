"""Store contracts: what the read side promises, written before any backend.

Three roles, smallest first (the query side only ever receives :class:`ReadOnlyView`):

* :class:`ReadOnlyView` – latest row, row as of a time, history, secondary-index scans, position.
* :class:`VersionedStore` – the as-of contract in one place (a ReadOnlyView is one).
* :class:`WritableProjectionStore` – applies view updates and the position they came
  from in one atomic batch. Every writer implements it, and nothing writes a store any
  other way: :class:`state.rocks_store.RocksStore` (the replica, and a replay's build,
  without WAL) and :class:`state.memory_store.MemoryStore` (the reference). One test suite
  (tests/unit/state/store_contract.py) runs against each.

Time and versions
-----------------
Every row version has ``valid_from_ms``: the largest event time (``occurredAt``,
epoch ms) folded into that row, so per key it never decreases. ``valid_to_ms`` is the
next version's ``valid_from_ms`` (exclusive), or None for the current version.

The as-of bound is **inclusive**: ``get_as_of(view, key, T)`` returns the version with
the greatest ``valid_from_ms <= T`` (an event at exactly T is visible at T). Before
the key's first version it returns None, which means "no row as of T" – the same
answer as for a key that never existed. Versions are never expired; retention of the
replica is unbounded (history is the product).

For counter views (customer-summary, product-sales, revenue-hourly, payments-daily)
changes may reach the replica out of event-time order; the store then places each change
at its own ``change_valid_from_ms`` and re-derives the later versions, so the as-of answer
is the fold of exactly the changes visible at T: one version per distinct change time.
When the row published with a call's last change differs from that fold (its history was
compacted away before the store saw it), the difference is stored as a correction change
at the call's first change time, so the latest row equals the published one.

Positions
---------
A position is a map ``{topic: {partition: next_offset}}`` using Kafka's committed-offset
convention: ``next_offset`` is the next record to read, i.e. last applied offset + 1.
Convert once, here: :func:`next_offset_after`. A record whose offset is below the
stored ``next_offset`` for its partition has been applied already and is a counted no-op.

A store's :meth:`ReadOnlyView.position` is over the topics it consumes (the replica: the
``view.<name>`` topics; a replayed store: the orders topic). :meth:`ReadOnlyView.source_position`
is per view, over the orders topic: for each orders partition, one past the highest
orders offset whose change the view has applied (a lower bound for read-your-writes on
the orders log; see :mod:`state.query_args`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "Position",
    "SourcePosition",
    "VersionedRow",
    "ViewUpdate",
    "ReadOnlyView",
    "VersionedStore",
    "WritableProjectionStore",
    "ApplyWatch",
    "next_offset_after",
]

#: ``{topic: {partition: next_offset}}``.
Position = Mapping[str, Mapping[int, int]]


def next_offset_after(last_applied_offset: int) -> int:
    """Kafka's committed-offset convention: the next record to read after ``last_applied_offset``."""
    return last_applied_offset + 1


class SourcePosition(NamedTuple):
    """Where an event came from in the orders log (the record's own offset, not next_offset).

    A NamedTuple rather than a frozen dataclass: one is built per event on the replay's
    single writer, where a frozen dataclass's ``__init__`` cost 4x a tuple's (measured)."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class VersionedRow:
    """One version of one view row.

    ``row`` is the view row (a dict); ``valid_from_ms`` inclusive, ``valid_to_ms``
    exclusive or None when this is the current version; ``source`` the orders-topic
    record that produced it (None when unknown, e.g. a re-derived counter version).
    """

    view: str
    key: str
    row: Mapping[str, Any]
    valid_from_ms: int
    valid_to_ms: int | None
    source: SourcePosition | None


class ViewUpdate(NamedTuple):
    """One change to one view key, as published on ``view.<name>`` or produced by replay.

    Immutable; a NamedTuple for the reason given at :class:`SourcePosition` (use
    ``update._replace(...)`` for a changed copy).

    ``row`` is the new full row (valid from ``row_valid_from_ms``). For counter views,
    ``delta`` is the change that made it and ``change_valid_from_ms`` the event time at
    which that change becomes visible; for order-status ``delta`` is None (the row is
    the version). ``order_id``/``seq`` identify the event that caused it.
    ``record_position`` is where this update itself was read from (a view topic
    partition/offset for the replica, the orders topic for replay).
    """

    view: str
    key: str
    row: Mapping[str, Any]
    row_valid_from_ms: int
    change_valid_from_ms: int
    delta: Mapping[str, int] | None
    order_id: str
    seq: int
    source: SourcePosition | None
    record_position: SourcePosition | None = None


@runtime_checkable
class ReadOnlyView(Protocol):
    """Read access to every view in a store. Never mutates anything."""

    def views(self) -> list[str]:
        """Names of the views this store holds."""
        ...

    def get(self, view: str, key: str) -> VersionedRow | None:
        """The current version of ``key`` (None: no such row)."""
        ...

    def get_as_of(self, view: str, key: str, as_of_ms: int) -> VersionedRow | None:
        """The version with the greatest valid_from_ms <= as_of_ms (inclusive); None before the first."""
        ...

    def history(self, view: str, key: str, *, limit: int | None = None) -> list[VersionedRow]:
        """Every version of ``key``, oldest first."""
        ...

    def scan_index(
        self, view: str, index: str, value: str | None = None, *, as_of_ms: int | None = None, limit: int = 100
    ) -> list[VersionedRow]:
        """Rows by secondary index, as of a time (None: now).

        Equality indexes (``status`` of order-status) return rows whose field equals
        ``value``; ranking indexes (``lifetimeValue``, ``revenue``) return the top
        ``limit`` rows in descending order and ignore ``value``.
        """
        ...

    def position(self) -> dict[str, dict[int, int]]:
        """How far this store has applied its inputs: ``{topic: {partition: next_offset}}``."""
        ...

    def source_position(self, view: str) -> dict[str, dict[int, int]]:
        """Per orders-topic partition, one past the highest source offset of any change ``view`` applied.

        Added for read-your-writes on the orders log. Empty for a view with no rows yet.
        """
        ...


@runtime_checkable
class ApplyWatch(Protocol):
    """A store that can wake a reader when an apply completed (used to wait for a min position)."""

    def wait_for_apply(self, *, timeout_s: float) -> None:
        """Return after the next completed apply, or after ``timeout_s``; spurious wake-ups are allowed."""
        ...


class VersionedStore(ReadOnlyView, Protocol):
    """A ReadOnlyView whose every answer follows the as-of contract in this module's docstring."""


class WritableProjectionStore(VersionedStore, Protocol):
    """A store that applies view updates."""

    def apply(self, updates: Sequence[ViewUpdate], *, position: Position) -> int:
        """Apply ``updates`` and advance the stored position to ``position`` in ONE atomic batch.

        Updates whose ``record_position`` is below the stored next_offset of its
        topic-partition are skipped (already applied). Returns how many were applied.

        The check uses the position stored *before* this call, so several updates made
        by one source record (same ``record_position``) must arrive in the same call.
        A change already stored (same view, key, orderId and seq; for order-status a seq
        at or below the row's) is also a counted no-op. An order-status row valid from
        before the row's latest version is stored at the latest's valid_from (it never
        decreases), replacing it. The stored position only moves forward: per partition it
        becomes max(stored, ``position``); the view's source position likewise, to one past
        the highest ``source`` offset of the updates not skipped by position.

        All or nothing: an update the store refuses (an unknown view, a counter update
        without delta) raises, and nothing of the call is written.
        """
        ...

    def close(self) -> None:
        """Flush and release the store."""
        ...
