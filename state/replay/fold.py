"""The batch fold: the live pipeline's two steps, driven over records read in offset order.

Live and replay run the same kernel (:func:`pipelines.kernel.process_record`), so they
make the same decisions: a record that does not decode, or whose key is not its orderId,
is a dead letter; a seq already applied is a duplicate (counted, skipped); an impossible
transition or a gap is a dead letter and leaves the order unchanged; a window change
past its grace is a late dead letter. Only the as-of cut below is replay's own.

The as-of contract (../shared/DESIGN.md "Time, precisely")
-----------------------------------------------------------
With ``as_of_ms = T`` the state of an order is the longest prefix of its *accepted*
events, in seq order, whose occurredAt are all <= T (inclusive). The fold sees an
order's events in seq order (one partition, offset order), so the rule is applied
as it goes: an accepted transition whose ``after["validFrom"]`` (the running max of
occurredAt) is > T is not applied and *cuts* the order: none of its later records
count, whatever they are (they are counted as ``beyond_as_of``). Duplicates and dead
letters never count and never cut: they change nothing in the order. Re-keyed views
get exactly the changes of the applied transitions, whose ``valid_from_ms`` are all
<= T, so their rows are the fold of the changes visible at T.

Parking (:mod:`pipelines.kernel`, "Per-order parking") is the kernel's too: this adapter
keeps each order's park in :attr:`OrderFolder.parks` (few: one per parked order), and a
replay saves them with its counters (``parks``), so a replay seeded from its output
continues with them. The ``rewind.redrive.of`` header is read here as live reads it.

Records that cannot be read (undecodable, an envelope outside its domain, key mismatch,
wrong partition) are dead letters in every mode,
because that verdict does not depend on the order's state; records of a cut order are
not folded at all, because a verdict against the as-of state could differ from live's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from pipelines.dlq import DeadLetter, redrive_of
from pipelines.kernel import CUT, PARKED, Park, process_record
from pipelines.projections import Change, Projection, Row, view_spec
from schemas.codec import Event
from state.replay.orderrows import OrderRows

__all__ = [
    "Record",
    "RawRecord",
    "FoldedChange",
    "FoldCounters",
    "OrderFolder",
    "ViewFolder",
    "is_rekeyed",
    "replay_pipeline_name",
]


def is_rekeyed(view: str) -> bool:
    """True when the view's key is not the orderId, so its rows merge changes from every partition."""
    return view_spec(view).rekeyed


def replay_pipeline_name(view: str) -> str:
    """The ``rewind.pipeline`` header of dead letters a replay writes (live writes the bare view name)."""
    return f"replay:{view}"


class Record(Protocol):
    """One orders-topic record as read: confluent-kafka's ``Message`` has exactly these methods.

    The fold takes Kafka messages as they come (copying a million of them into tuples
    would cost more than decoding them); :class:`RawRecord` is the same shape for tests.
    """

    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...


class RawRecord:
    """A :class:`Record` built by hand (tests, or any source that is not a Kafka consumer)."""

    __slots__ = ("_partition", "_offset", "_key", "_value", "_timestamp_ms", "_headers")

    def __init__(self, partition: int, offset: int, key: bytes | None, value: bytes | None, timestamp_ms: int,
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        self._partition, self._offset, self._key, self._value, self._timestamp_ms = partition, offset, key, value, timestamp_ms
        self._headers = headers

    def partition(self) -> int:
        """Partition of the record."""
        return self._partition

    def offset(self) -> int:
        """The record's own offset."""
        return self._offset

    def key(self) -> bytes | None:
        """Record key (the orderId, UTF-8)."""
        return self._key

    def value(self) -> bytes | None:
        """Record value (single-object Avro bytes)."""
        return self._value

    def timestamp(self) -> tuple[int, int]:
        """(1 = CreateTime, epoch ms), as confluent-kafka returns it."""
        return 1, self._timestamp_ms

    def headers(self) -> list[tuple[str, bytes]] | None:
        """Record headers (None: none), as confluent-kafka returns them."""
        return self._headers

    def error(self) -> None:
        """Never an error (the shape of a Kafka message that carries data)."""
        return None


class FoldedChange(NamedTuple):
    """One change to one view key, produced by an applied transition.

    :meth:`OrderFolder.fold` emits *plain tuples* in this field order (a NamedTuple costs
    ~0.4 µs to build and more to pickle, per change); ``FoldedChange._make(t)`` names one.

    ``payload`` is the new row for a view keyed by orderId (the worker can fold it: the
    key is partition-local) and the delta for a re-keyed view (folded by :class:`ViewFolder`
    in the parent, where every partition's changes meet). ``offset`` is the source
    record's own offset (not a next_offset).
    """

    key: str
    payload: Row
    order_id: str
    seq: int
    valid_from_ms: int
    partition: int
    offset: int


@dataclass
class FoldCounters:
    """Counts of one fold (a mutable accumulator; merged across workers with :meth:`add`).

    Invariant: ``events_in == applied + duplicates + dead_lettered + beyond_as_of``.
    """

    events_in: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    beyond_as_of: int = 0
    changes: int = 0
    late: int = 0
    max_valid_from_ms: int | None = None
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    #: Stream time per partition at the end of the fold (the kernel's step 2).
    stream_time_ms: dict[int, int] = field(default_factory=dict)
    #: The parks at the end of the fold: orderId -> :meth:`pipelines.kernel.Park.to_json` (one per parked order).
    parks: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, other: FoldCounters | Mapping[str, Any]) -> None:
        """Add another worker's counts into these."""
        data = other if isinstance(other, Mapping) else other.as_dict()
        for name in ("events_in", "applied", "duplicates", "dead_lettered", "beyond_as_of", "changes", "late"):
            setattr(self, name, getattr(self, name) + data[name])
        theirs = data["max_valid_from_ms"]
        if theirs is not None and (self.max_valid_from_ms is None or theirs > self.max_valid_from_ms):
            self.max_valid_from_ms = theirs
        for reason, n in data["dead_letter_reasons"].items():
            self.dead_letter_reasons[reason] = self.dead_letter_reasons.get(reason, 0) + n
        for partition, t in data["stream_time_ms"].items():
            p = int(partition)
            self.stream_time_ms[p] = max(t, self.stream_time_ms.get(p, t))
        # Workers own disjoint orders: a worker's park of an order replaces the seed's.
        self.parks.update(data.get("parks", {}))

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (crosses process boundaries, goes into the manifest)."""
        return {
            "events_in": self.events_in, "applied": self.applied, "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered, "beyond_as_of": self.beyond_as_of, "changes": self.changes,
            "max_valid_from_ms": self.max_valid_from_ms, "dead_letter_reasons": dict(self.dead_letter_reasons),
            "late": self.late, "stream_time_ms": dict(self.stream_time_ms), "parks": dict(self.parks),
        }


class OrderFolder:
    """Step 1 for the partitions one worker owns: decode, fold each order, emit changes.

    ``rows`` is the fold state (:class:`~state.replay.orderrows.OrderRows`: orderId -> order
    row; reads a snapshot's rows when seeded from one; default: in memory, empty).
    ``cut`` holds the orders whose as-of prefix has ended. ``on_dead_letter`` receives every dead letter (the DLQ producer, when asked for).
    ``partition_count`` is the topic's partition count, for the kernel's placement check
    (a record on another partition than its key's is a ``WrongPartition`` dead letter);
    a replay always passes it, None skips the check (tests of hand-placed records).
    """

    def __init__(
        self,
        projection: Projection,
        *,
        topic: str,
        decode: Callable[[bytes], Event],
        as_of_ms: int | None = None,
        rows: OrderRows | None = None,
        on_dead_letter: Callable[[DeadLetter], None] | None = None,
        stream_time_ms: Mapping[int, int] | None = None,
        partition_count: int | None = None,
        parks: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        self.projection = projection
        self.partition_count = partition_count
        self.rekeyed = is_rekeyed(projection.name)
        self.topic = topic
        self.as_of_ms = as_of_ms
        self.rows = rows if rows is not None else OrderRows()
        self.cut: set[str] = set()
        #: Stream time per partition (the kernel's step 2), seeded from a snapshot's manifest.
        self.stream_time_ms: dict[int, int] = dict(stream_time_ms or {})
        #: orderId -> its park (the kernel's "Per-order parking"), seeded from a snapshot's counters.
        self.parks: dict[str, Park] = {order_id: Park(*park) for order_id, park in (parks or {}).items()}
        self.counters = FoldCounters()
        self._decode = decode
        self._on_dead_letter = on_dead_letter
        self._pipeline = replay_pipeline_name(projection.name)

    def _reject(self, record: Record, reason_class: str, reason: str, *, count: bool = True,
                parked_behind: Park | None = None, redrive: str | None = None) -> None:
        """Dead-letter ``record``; ``count``: False for an applied event with late changes (counted as applied)."""
        counters = self.counters
        if count:
            counters.dead_lettered += 1
        counters.dead_letter_reasons[reason_class] = counters.dead_letter_reasons.get(reason_class, 0) + 1
        if self._on_dead_letter is not None:
            self._on_dead_letter(DeadLetter(
                key=record.key(), value=record.value(), reason_class=reason_class, reason=reason,
                source_topic=self.topic, source_partition=record.partition(), source_offset=record.offset(),
                pipeline=self._pipeline, timestamp_ms=record.timestamp()[1],
                parked_behind=None if parked_behind is None else parked_behind.where(self.topic), redrive_of=redrive,
            ))

    def fold(self, records: Iterable[Record], out: list[tuple[Any, ...]], *, rows_before: dict[str, Row | None] | None = None) -> None:
        """Fold ``records`` (offset order per partition) and append their changes to ``out``
        (plain tuples in :class:`FoldedChange` field order). Every verdict is the kernel's
        (:func:`pipelines.kernel.process_record`); this adapter keeps the rows, the cut
        orders and the stream times, and counts. ``rows_before``, when given, receives the
        row each order looked up had before these records (None: the order had none).

        The hot loop of a replay: names are bound to locals on purpose.
        """
        decode = self._decode
        cut = self.cut
        as_of_ms = self.as_of_ms
        counters = self.counters
        projection = self.projection
        get_row, put_row = self.rows.get, self.rows.put
        stream_times = self.stream_time_ms
        partition_count = self.partition_count
        append = out.append
        applied = duplicates = beyond = n_in = emitted = late = 0
        max_valid_from = counters.max_valid_from_ms if counters.max_valid_from_ms is not None else -(2**63)
        partition = -1
        parks = self.parks
        park_of = parks.get

        def row_of(order_id: str) -> Row | None:
            return CUT if order_id in cut else get_row(order_id, partition)

        if rows_before is not None:
            plain_row_of = row_of

            def row_of(order_id: str) -> Row | None:
                row = plain_row_of(order_id)
                if order_id not in rows_before and row is not CUT:
                    rows_before[order_id] = row
                return row

        for record in records:
            n_in += 1
            partition = record.partition()
            redrive = redrive_of(record.headers())
            verdict = process_record(projection, record.key(), record.value(), decode=decode, row_of=row_of,
                                     stream_time_ms=stream_times.get(partition), as_of_ms=as_of_ms,
                                     partition=partition, partition_count=partition_count, offset=record.offset(),
                                     park_of=park_of, redriven=redrive is not None)
            if verdict.stream_time_ms is not None:
                stream_times[partition] = verdict.stream_time_ms
            outcome = verdict.outcome
            if outcome == "dead":
                if verdict.new_park is not None:
                    # The record key's order (the kernel parks no other): for an unread record it is all we know.
                    parks[record.key().decode()] = verdict.new_park  # type: ignore[union-attr]  # a park implies a key
                reason_class = verdict.reason_class or "Rejected"
                self._reject(record, reason_class, verdict.reason or "",
                             parked_behind=verdict.parked_behind if reason_class == PARKED else None, redrive=redrive)
                continue
            if outcome == "duplicate":
                duplicates += 1
                continue
            order_id: str = verdict.order_id  # type: ignore[assignment]  # None only for a dead letter, handled above
            if outcome == "beyond":
                # The prefix ends here: this event is not visible at T, so no later one of this order is.
                cut.add(order_id)
                beyond += 1
                continue
            after: Row = verdict.after  # type: ignore[assignment]  # set for every applied event (Verdict's contract)
            put_row(order_id, partition, after)
            if verdict.late:
                late += 1
                self._reject(record, verdict.reason_class or "LateEvent", verdict.reason or "", count=False, redrive=redrive)
            offset = record.offset()
            applied += 1
            valid_from = after["validFrom"]
            if valid_from > max_valid_from:
                max_valid_from = valid_from
            seq = after["lastSeq"]
            # A change's (orderId, seq, valid_from) are the order row's (projections.changes_of).
            # Order-status's apply(None, change) is a copy of the row; order_step builds a new
            # row per event and never mutates one, so the row itself is the payload.
            for view_key, delta in verdict.deltas:
                append((view_key, delta, order_id, seq, valid_from, partition, offset))
                emitted += 1
        counters.events_in += n_in
        counters.applied += applied
        counters.duplicates += duplicates
        counters.beyond_as_of += beyond
        counters.changes += emitted
        counters.late += late
        for p, t in stream_times.items():
            counters.stream_time_ms[p] = t
        if applied:
            counters.max_valid_from_ms = max_valid_from


    def settle_parks(self) -> None:
        """Drop the spent parks (their order has applied an event since) and put the rest in the counters
        (``parks``), for a replay seeded from this one. Once, at the end of the fold: it reads every
        parked order's row."""
        parks = self.parks
        for order_id, park in list(parks.items()):
            row = self.rows.get(order_id, park.partition if park.partition is not None else -1)
            if not park.holds(0 if row is None else row["lastSeq"]):
                del parks[order_id]
        self.counters.parks = {order_id: park.to_json() for order_id, park in parks.items()}


class ViewFolder:
    """Step 2 of a re-keyed view: fold changes from every partition into rows keyed by the view key.

    Runs in one place (the replay's parent) because a customer's or SKU's changes come from
    many partitions. Counters are sums, so the order in which partitions' changes meet does
    not change any row's final value; each change keeps its own ``valid_from_ms``, which is
    what an as-of read uses (see :mod:`state.contracts`).
    """

    def __init__(self, projection: Projection, *, rows: dict[str, Row] | None = None) -> None:
        self.projection = projection
        self.rows: dict[str, Row] = rows if rows is not None else {}

    def apply(self, key: str, delta: Row, order_id: str, seq: int, valid_from_ms: int) -> Row:
        """Fold one change into its key's row and return the new row."""
        row = self.projection.apply(self.rows.get(key), Change(key, delta, order_id, seq, valid_from_ms))
        self.rows[key] = row
        return row
