"""What a projection is: a pure fold plus how it is keyed. No I/O, no Quix Streams.

Every view is derived in two steps, and both live and replay drivers run them:

1. The *order fold* (:mod:`pipelines.projections.order_lifecycle`) validates an event
   against its order's state: it skips a seq already applied (duplicate), rejects an
   impossible transition or a gap (dead letter), and otherwise yields an
   :class:`OrderTransition` (the order row before and after).
2. Each projection turns a transition into zero or more :class:`Change` records
   keyed by its view key (``changes``), and folds each change into the view row
   for that key (``apply``).

Re-keyed views (customer, sku, currency) therefore never see an invalid or
duplicate event: step 1 runs per order, where seq order is known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["Row", "OrderTransition", "Change", "Projection", "FoldOutcome", "changes_of"]

#: A view row: a JSON-serialisable dict (it is stored in RocksDB and published to a view topic).
Row = dict[str, Any]

FoldOutcome = Literal["applied", "duplicate", "rejected"]


@dataclass(frozen=True, slots=True)
class OrderTransition:
    """One accepted event and the order's row before (None for OrderPlaced) and after it."""

    event: Mapping[str, Any]
    before: Row | None
    after: Row

    @property
    def order_id(self) -> str:
        """The aggregate id."""
        return self.after["orderId"]

    @property
    def seq(self) -> int:
        """The accepted event's per-order sequence number."""
        return self.after["lastSeq"]

    @property
    def event_type(self) -> str:
        """The accepted event's type."""
        return self.event["envelope"]["eventType"]

    @property
    def occurred_at_ms(self) -> int:
        """The accepted event's own event time (may step back within an order)."""
        return self.event["envelope"]["occurredAt"]


@dataclass(frozen=True, slots=True)
class Change:
    """A delta for one view key, tagged with the (orderId, seq) it came from so a re-keyed
    driver can recognise a change it already counted, and with the event time it became valid."""

    key: str
    delta: Row
    order_id: str
    seq: int
    valid_from_ms: int

    def to_dict(self) -> Row:
        """A JSON-friendly form (for repartition topics)."""
        return {"key": self.key, "delta": self.delta, "orderId": self.order_id, "seq": self.seq, "validFrom": self.valid_from_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Change":
        """Inverse of :meth:`to_dict`."""
        return cls(data["key"], data["delta"], data["orderId"], data["seq"], data["validFrom"])


def changes_of(deltas: Sequence[tuple[str, Row]], after: Row) -> tuple[Change, ...]:
    """The :class:`Change` of each (key, delta), tagged with the order row's (orderId, lastSeq, validFrom)."""
    return tuple(Change(key, delta, after["orderId"], after["lastSeq"], after["validFrom"]) for key, delta in deltas)


class Projection(Protocol):
    """A view: a name, how transitions map to keyed changes, and a pure fold per key."""

    name: str
    #: What the view is keyed by, for docs and the CLI ("orderId", "customerId", ...).
    key_field: str

    def changes(self, transition: OrderTransition) -> Iterable[Change]:
        """The keyed changes one accepted order transition makes to this view (often none).

        Exactly :meth:`deltas`, each tagged with the order row's (orderId, lastSeq, validFrom).
        """
        ...

    def deltas(self, event: Mapping[str, Any], after: Row) -> Sequence[tuple[str, Row]]:
        """(view key, delta) of each change the transition to ``after`` by ``event`` makes:
        :meth:`changes` without the objects (replay's hot loop calls this)."""
        ...

    def apply(self, row: Row | None, change: Change) -> Row:
        """Fold ``change`` into ``row`` (None: the key has no row yet) and return the new row.

        Must not mutate ``row``; must not do I/O. ``row["validFrom"]`` is the largest
        event time folded into the row so far, so it never decreases per key.
        """
        ...
