"""What a projection is: a pure fold plus how it is keyed. No I/O, no Quix Streams.

Every view is derived in two steps, and both live and replay drivers run them:

1. The *order fold* (:mod:`pipelines.projections.order_lifecycle`) validates an event
   against its order's state: it skips a seq already applied (duplicate), rejects an
   impossible transition or a gap (dead letter), and otherwise yields the order's
   new row.
2. Each projection turns the transition (event, new order row) into zero or more
   keyed deltas (``deltas``; the kernel tags them as :class:`Change` records), and
   folds each change into the view row for that key (``apply``).

Re-keyed views (customer, sku, currency) therefore never see an invalid or
duplicate event: step 1 runs per order, where seq order is known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

__all__ = ["Row", "Change", "Projection", "FoldOutcome", "ViewKind", "IndexKind", "IndexSpec", "ViewSpec"]

#: A view row: a JSON-serialisable dict (it is stored in RocksDB and published to a view topic).
Row = dict[str, Any]

FoldOutcome = Literal["applied", "duplicate", "rejected"]

#: ``per-order``: one row per order, keyed by orderId (the order fold's partitioning is the
#: view's). ``rekeyed``: rows keyed by another field, merging changes from every partition.
ViewKind = Literal["per-order", "rekeyed"]

#: ``equality``: rows whose field equals a value. ``ranking``: rows ordered by an integer field.
IndexKind = Literal["equality", "ranking"]


class Change(NamedTuple):
    """A delta for one view key, tagged with the (orderId, seq) it came from so a re-keyed
    driver can recognise a change it already counted, and with the event time it became valid.

    A NamedTuple, not a frozen dataclass: the replay parent builds two per counter change
    (fold, store), and a frozen dataclass's ``__init__`` costs four times a tuple's (measured).
    """

    key: str
    delta: Row
    order_id: str
    seq: int
    valid_from_ms: int

    def to_dict(self) -> Row:
        """A JSON-friendly form (for repartition topics)."""
        return {"key": self.key, "delta": self.delta, "orderId": self.order_id, "seq": self.seq, "validFrom": self.valid_from_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        """Inverse of :meth:`to_dict`."""
        return cls(data["key"], data["delta"], data["orderId"], data["seq"], data["validFrom"])


class Projection(Protocol):
    """A view's fold: how an accepted order transition maps to keyed deltas, and a pure fold per key."""

    name: str
    #: What the view is keyed by, for docs and the CLI ("orderId", "customerId", ...).
    key_field: str

    def deltas(self, event: Mapping[str, Any], after: Row) -> Sequence[tuple[str, Row]]:
        """(view key, delta) of each change the transition to order row ``after`` by ``event``
        makes (often none). Pure; the kernel tags each with the row's (orderId, lastSeq, validFrom)."""
        ...

    def apply(self, row: Row | None, change: Change) -> Row:
        """Fold ``change`` into ``row`` (None: the key has no row yet) and return the new row.

        Must not mutate ``row``; must not do I/O. ``row["validFrom"]`` is the largest
        event time folded into the row so far, so it never decreases per key.
        """
        ...


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """One secondary index: its view, public name, the row field it reads, and its kind."""

    view: str
    name: str
    field: str
    kind: IndexKind

    def value_of(self, row: Mapping[str, Any]) -> str | int | None:
        """The index value of ``row``, or None when the row has no (usable) value: then it is not indexed."""
        raw = row.get(self.field)
        if self.kind == "equality":
            return None if raw is None else str(raw)
        # bool is an int in Python; a flag is not a ranking.
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else None


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """A view, declared once: everything the live pipeline, the replay, the store and the
    query side need to know about it. Each projection module declares its ``SPEC``; the
    registry (:mod:`pipelines.projections`) lists them.

    ``build(grace_ms)`` makes the fold (``grace_ms`` is None for the view's default).
    ``window_ms``/``grace_ms`` (windowed views only, else None): the tumbling window and how
    long after its end a change is still on time (the late rule is :mod:`pipelines.kernel`'s).
    """

    name: str
    key_field: str
    kind: ViewKind
    build: Callable[[int | None], Projection]
    indexes: tuple[IndexSpec, ...] = ()
    window_ms: int | None = None
    grace_ms: int | None = None

    @property
    def rekeyed(self) -> bool:
        """True when rows merge changes from every partition (keyed by something else than orderId)."""
        return self.kind == "rekeyed"

    def projection(self, *, grace_ms: int | None = None) -> Projection:
        """A new fold object for this view."""
        return self.build(grace_ms)
