"""The view kernel: one pure function from a raw orders record to what it does to a view.

Live (:mod:`pipelines.live.steps`) and replay (:mod:`state.replay.fold`) are adapters
around :func:`process_record`: they do the I/O, batching and state access, and decide
nothing themselves. Every verdict below is a function of the log alone (the record, its
partition and the topic's partition count, the order's fold state, and its partition's
stream time, all of which are determined by the records before it in its partition), so
live and replay cannot disagree.

No record raises: each one is applied, a counted duplicate, ``beyond`` (replay as of T),
or a dead letter with a reason class. For one record, in this order:

1. **Read.** The value must decode (else a dead letter named after the codec error) and
   its envelope must be in its domain: orderId not empty, seq >= 1, occurredAt within
   :data:`~pipelines.projections.domain.MIN_EVENT_MS`..``MAX_EVENT_MS`` (else
   ``InvalidValue``).
2. **Stream time.** The partition's stream time becomes
   ``max(stream time before, event occurredAt)``: the largest event time of any record
   that passed step 1 at an offset at or below this one in this partition (None before
   the first). It advances even when a later step rejects the event, because it is a fact
   about the log, not about one order.
3. **Placement.** The record key must be the event's orderId, byte for byte (else
   ``KeyMismatch``), and the record must be on the key's partition,
   ``murmur2(key) % partition count`` (:mod:`pipelines.partitioning`; else
   ``WrongPartition``), before any order row is looked up: a row of this orderId
   belongs to the key's partition only, and an adapter's cache may hold it.
4. **As-of cut** (replay as of T only): a record of an order whose as-of prefix has
   ended is ``beyond`` (see :mod:`state.replay.fold` for the as-of contract).
5. **Order fold** (:func:`pipelines.projections.order_step`): a seq already applied is
   a ``duplicate``; a gap, an impossible transition, or a payload outside its domain or
   at odds with the order (:mod:`pipelines.projections.domain`) is a dead letter;
   otherwise the order row moves on (``applied``). As of T, an applied transition whose
   row becomes valid after T is ``beyond`` instead and cuts the order.
6. **View changes and the late rule.** The view's deltas for the transition; for a
   windowed view (one with ``late_by_ms``), a delta whose window closed at or before
   the partition's stream time (step 2) is *late*: it is left out of ``deltas`` and the
   record is also dead-lettered as ``LateEvent``. The order row still moves on, so the
   order's later events are judged against the truth.

**Per-order parking** (adapters that pass ``park_of``; DESIGN "Rules the design keeps"). An
order's *park* (:class:`Park`) is its first unresolved dead letter: where it is (partition,
offset), why (reason class), its seq (None: unread), and the order's ``lastSeq`` when it was
written. A park *holds* while the order's lastSeq is still that value: once an event of the
order applies, the park is spent without any write (so the applied path reads and writes
no park). A dead letter parks its order (``Verdict.new_park``, which the adapter stores
next to the order row, never in it) when the order has no holding park and the letter is
about an unapplied seq of this partition's order:

* an unread record (a codec error, or an envelope outside its domain: step 1's
  ``InvalidValue``) whose key is UTF-8 and on its partition: the key is the orderId, the
  seq is unknown (and an invalid envelope's is not trusted);
* a decoded event rejected by steps 5-6 (``SequenceGap``, an impossible transition, a payload
  refusal, ``FoldError``): its seq is above lastSeq by construction.

Never: ``KeyMismatch``/``WrongPartition`` (the record is not this partition's order), a
duplicate, a ``LateEvent`` (applied). While a park holds, an event with seq == lastSeq + 1
is folded as usual (the workload's junk comes next to real events: an impossible transition
right before the real event of its seq, an unreadable record right after one; the real one
applies and spends the park); an event with seq > lastSeq + 1 is a ``Parked`` dead letter
naming the park (``Verdict.parked_behind``), instead of a ``SequenceGap`` of its own. So one
poison event leaves one letter of its own, and the order's later events behind it.

**Redrive** (``rewind dlq redrive``, :mod:`pipelines.dlq_redrive`) appends a parked order's
dead-lettered records again, original key and bytes, with the header ``rewind.redrive.of``
(``redriven=True`` here). They are judged like any record (a seq already applied is a
duplicate, so a redrive run twice applies nothing twice), with two differences, both read
from the log: a redriven record that is dead-lettered again at the order's next slot
(unread, or seq == lastSeq + 1) re-points a holding park at itself (the order stays parked,
with its new reason), and a redriven record is exempt from the late rule of step 6: its
window changes are on time, because the event was on its way when first written and the
operator's redrive is the decision to let it in late (a windowed view then equals the one
the log would have given without the poison, for events that were on time where first
written).

Last line: an exception out of steps 5-6 (a bug in a fold meeting an event no rule
foresaw) is a ``FoldError`` dead letter naming the exception, never a crash: a record
that raised would raise again on every restart, and the committed offset would never
move. Exceptions from ``decode`` that are not a :class:`~schemas.errors.CodecError`
(the registry is down) and from ``row_of`` and ``park_of`` (the state store) are not about
the record, so they propagate.

Outcomes are counted once each: ``events_in == applied + duplicates + dead + beyond``
(a late change is counted in ``late``, on top of ``applied``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from pipelines.partitioning import partition_for
from pipelines.projections import OrderFoldResult, Projection, Row, order_step
from pipelines.projections.base import Change
from pipelines.projections.domain import INVALID_VALUE, MAX_EVENT_MS, MIN_EVENT_MS, envelope_problem
from schemas.errors import CodecError

__all__ = [
    "Outcome",
    "Verdict",
    "process_record",
    "LATE_EVENT",
    "KEY_MISMATCH",
    "WRONG_PARTITION",
    "FOLD_ERROR",
    "CUT",
    "PARKED",
    "Park",
]

Outcome = Literal["applied", "duplicate", "dead", "beyond"]

#: Reason classes the kernel itself names (others come from the codec and the order fold).
LATE_EVENT = "LateEvent"
KEY_MISMATCH = "KeyMismatch"
WRONG_PARTITION = "WrongPartition"
FOLD_ERROR = "FoldError"
PARKED = "Parked"

#: What a replay's row lookup returns for an order whose as-of prefix has ended.
CUT: Any = object()

_NO_DELTAS: tuple[tuple[str, Row], ...] = ()


class Park(NamedTuple):
    """An order's first unresolved dead letter (module docstring, "Per-order parking").

    ``last_seq``: the order's lastSeq when it was parked (0: no event applied); the park
    holds while lastSeq is still this. ``partition``/``offset``: where the letter's record
    is in the orders topic (offset None: not known, a unit test). ``reason_class``: why it
    was dead-lettered. ``seq``: its seq (None: the record was not read). Stored by the
    adapters as :meth:`to_json` (a JSON list).
    """

    last_seq: int
    partition: int | None
    offset: int | None
    reason_class: str
    seq: int | None

    def holds(self, last_seq: int) -> bool:
        """True while the order's lastSeq is still the one it was parked at."""
        return self.last_seq == last_seq

    def where(self, topic: str) -> str:
        """``topic/partition@offset``: the value of the ``rewind.parked.behind`` header."""
        return f"{topic}/{self.partition}@{self.offset}"

    def to_json(self) -> list[Any]:
        return list(self)

    @classmethod
    def from_json(cls, data: Sequence[Any] | None) -> Park | None:
        """Inverse of :meth:`to_json` (None: no park stored)."""
        return None if data is None else cls(*data)


class Verdict:
    """What one record does (a slots class, not a dataclass, built with positional arguments
    in the kernel: one is built per record in replay's hot loop, and keyword arguments cost
    0.6 µs more each time).

    * ``outcome``: "applied", "duplicate", "dead" (dead-lettered; ``reason_class`` and
      ``reason`` say why) or "beyond" (replay as of T: not visible at T).
    * ``order_id``: the event's orderId (None when the value did not decode).
    * ``event``, ``before``, ``after``: the decoded event and the order row before and
      after it (``after`` only when applied).
    * ``deltas``: the on-time (view key, delta) pairs of an applied event.
    * ``late``: the late (view key, delta) pairs; when not empty, ``reason_class`` is
      ``LateEvent`` and the record is dead-lettered *as well as* applied.
    * ``stream_time_ms``: the partition's stream time after this record (None: no record
      of the partition has decoded yet).
    * ``new_park``: the park the adapter must store for the record key's order (a dead
      letter that parks it); None: leave the stored park as it is.
    * ``parked_behind``: for a ``Parked`` dead letter, the holding park it is behind.
    """

    __slots__ = ("outcome", "order_id", "event", "before", "after", "deltas", "late", "reason_class", "reason", "stream_time_ms",
                 "new_park", "parked_behind")

    def __init__(
        self,
        outcome: Outcome,
        stream_time_ms: int | None,
        order_id: str | None = None,
        event: Mapping[str, Any] | None = None,
        before: Row | None = None,
        after: Row | None = None,
        deltas: Sequence[tuple[str, Row]] = _NO_DELTAS,
        late: Sequence[tuple[str, Row]] = _NO_DELTAS,
        reason_class: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.outcome = outcome
        self.stream_time_ms = stream_time_ms
        self.order_id = order_id
        self.event = event
        self.before = before
        self.after = after
        self.deltas = deltas
        self.late = late
        self.reason_class = reason_class
        self.reason = reason
        self.new_park: Park | None = None
        self.parked_behind: Park | None = None

    @property
    def dead_lettered(self) -> bool:
        """True when the record goes to the DLQ (a dead letter, or an applied event with late changes)."""
        return self.reason_class is not None

    def changes(self) -> tuple[Change, ...]:
        """The on-time deltas as :class:`Change` records, tagged with the order row's (orderId, lastSeq, validFrom)."""
        after = self.after
        if after is None:
            return ()
        return tuple(Change(key, delta, after["orderId"], after["lastSeq"], after["validFrom"]) for key, delta in self.deltas)


def process_record(
    projection: Projection,
    key: bytes | None,
    value: bytes | None,
    *,
    decode: Callable[[bytes], Mapping[str, Any]],
    row_of: Callable[[str], Row | None],
    stream_time_ms: int | None,
    as_of_ms: int | None = None,
    partition: int | None = None,
    partition_count: int | None = None,
    offset: int | None = None,
    park_of: Callable[[str], Park | None] | None = None,
    redriven: bool = False,
) -> Verdict:
    """The verdict on one orders record (module docstring: steps 1-6). Pure: reads state only
    through ``row_of`` and changes nothing. Never raises for a bad record (see "Last line").

    ``row_of(orderId)`` is the order's row before this record (None: no event applied yet;
    :data:`CUT`: replay as of T, the order's prefix has ended). ``stream_time_ms`` is the
    partition's stream time *before* this record (None: no record decoded yet);
    ``as_of_ms`` is T for a replay as of T (inclusive), else None. ``partition`` is the
    record's partition and ``partition_count`` the topic's: live and replay pass both;
    when either is None the placement is not checked (tests of a single record).

    ``park_of(orderId)`` is the order's stored park (None: none); when ``park_of`` is None,
    nothing parks (``Verdict.new_park`` stays None). ``offset`` is the record's own offset,
    for the park it may set; ``redriven`` is True for a record that carries the
    ``rewind.redrive.of`` header (module docstring, "Redrive").
    """
    # Step 1
    try:
        event = decode(value)  # type: ignore[arg-type]  # None (a tombstone) fails to decode: a dead letter
    except CodecError as exc:
        verdict = Verdict("dead", stream_time_ms, reason_class=type(exc).__name__, reason=str(exc))
        if park_of is not None:
            _park_unread(verdict, key, partition, partition_count, offset, row_of, park_of, redriven)
        return verdict
    envelope = event["envelope"]
    order_id = envelope["orderId"]
    occurred_at = envelope["occurredAt"]
    # One chained test on the hot path; envelope_problem explains only a failure.
    if not order_id or envelope["seq"] < 1 or not MIN_EVENT_MS <= occurred_at < MAX_EVENT_MS:
        verdict = Verdict("dead", stream_time_ms, order_id, event, None, None, _NO_DELTAS, _NO_DELTAS, INVALID_VALUE,
                          envelope_problem(envelope) or "envelope outside its domain")
        if park_of is not None:
            _park_unread(verdict, key, partition, partition_count, offset, row_of, park_of, redriven)
        return verdict
    # Step 2
    now_ms: int = occurred_at if stream_time_ms is None or occurred_at > stream_time_ms else stream_time_ms
    # Step 3: bytes, not a decoded key: two keys that decode alike (b"\xff" and the replacement
    # character) are two keys to Kafka's partitioner and to Quix's per-key state.
    if key is None or key != order_id.encode():
        return Verdict("dead", now_ms, order_id, event, None, None, _NO_DELTAS, _NO_DELTAS, KEY_MISMATCH,
                       f"record key {_short(repr(key))} is not the event's orderId {_short(repr(order_id))}")
    if partition_count is not None and partition is not None:
        expected = partition_for(key, partition_count)
        if expected != partition:
            return Verdict("dead", now_ms, order_id, event, None, None, _NO_DELTAS, _NO_DELTAS, WRONG_PARTITION,
                           f"record on partition {partition}, but key {_short(repr(key))} belongs on partition {expected} of "
                           f"{partition_count} (murmur2, the Java client's partitioner)")
    # Step 4
    before = row_of(order_id)
    if before is CUT:
        return Verdict("beyond", now_ms, order_id, event)
    # Steps 5-6 under the last line (module docstring): an exception is a dead letter, not a crash on every
    # restart. Inline, not a helper: a call per record costs more than the try (free until it raises).
    try:
        # Step 5
        after = order_step(before, event)
        if after.__class__ is OrderFoldResult:
            result: OrderFoldResult = after  # type: ignore[assignment]  # narrowed by the exact class test above
            if result.outcome == "duplicate":
                return Verdict("duplicate", now_ms, order_id, event, before)
            verdict = Verdict("dead", now_ms, order_id, event, before, None, _NO_DELTAS, _NO_DELTAS,
                              result.reason_class or "Rejected", result.reason or "")
            if park_of is not None:
                _park_rejected(verdict, order_id, envelope["seq"], before, partition, offset, park_of, redriven)
            return verdict
        row: Row = after  # type: ignore[assignment]  # not an OrderFoldResult: the new row
        if as_of_ms is not None and row["validFrom"] > as_of_ms:
            return Verdict("beyond", now_ms, order_id, event, before)
        # Step 6
        deltas = projection.deltas(event, row)
        late_by_of = getattr(projection, "late_by_ms", None)
        if late_by_of is None or not deltas or redriven:
            return Verdict("applied", now_ms, order_id, event, before, row, deltas)
        on_time: list[tuple[str, Row]] = []
        late: list[tuple[str, Row]] = []
        worst = 0
        for view_key, delta in deltas:
            late_by = late_by_of(view_key, stream_time_ms=now_ms)
            if late_by > 0:
                late.append((view_key, delta))
                worst = max(worst, late_by)
            else:
                on_time.append((view_key, delta))
        if not late:
            return Verdict("applied", now_ms, order_id, event, before, row, deltas)
        return Verdict(
            "applied", now_ms, order_id=order_id, event=event, before=before, after=row, deltas=tuple(on_time),
            late=tuple(late), reason_class=LATE_EVENT,
            reason=f"window {', '.join(k for k, _ in late)} closed {worst} ms before stream time {now_ms} "
                   f"of its source partition (end + grace <= stream time)",
        )
    except Exception as exc:
        verdict = Verdict("dead", now_ms, order_id, event, before, None, _NO_DELTAS, _NO_DELTAS, FOLD_ERROR,
                          f"{type(exc).__name__} folding {envelope['eventType']} seq {envelope['seq']} into "
                          f"{projection.name}: {_short(str(exc))}")
    # Only a FoldError gets here (every other path returned above): parked outside the try, so a
    # failing state read (park_of) propagates instead of becoming a dead letter.
    if park_of is not None:
        _park_rejected(verdict, order_id, envelope["seq"], before, partition, offset, park_of, redriven)
    return verdict


def _last_seq(row: Row | None) -> int:
    return 0 if row is None else row["lastSeq"]


def _park_unread(verdict: Verdict, key: bytes | None, partition: int | None, partition_count: int | None, offset: int | None,
                 row_of: Callable[[str], Row | None], park_of: Callable[[str], Park | None], redriven: bool) -> None:
    """Park the record key's order behind an unread record (module docstring, "Per-order parking"):
    only when the key is UTF-8 and on its partition, so it names this partition's order."""
    if key is None:
        return
    try:
        order_id = key.decode()
    except UnicodeDecodeError:
        return
    if not order_id or (partition_count is not None and partition is not None and partition_for(key, partition_count) != partition):
        return
    before = row_of(order_id)
    if before is CUT:  # replay as of T: the order's prefix has ended, nothing about it counts any more
        return
    last_seq = _last_seq(before)
    park = park_of(order_id)
    if park is None or redriven or not park.holds(last_seq):
        verdict.new_park = Park(last_seq, partition, offset, verdict.reason_class or "Rejected", None)


def _park_rejected(verdict: Verdict, order_id: str, seq: int, before: Row | None, partition: int | None, offset: int | None,
                   park_of: Callable[[str], Park | None], redriven: bool) -> None:
    """A decoded event of this order rejected at steps 5-6: ``Parked`` behind a holding park when
    it is past the order's next slot, else it parks the order (module docstring)."""
    last_seq = _last_seq(before)
    park = park_of(order_id)
    if park is not None and park.holds(last_seq):
        if seq > last_seq + 1:
            verdict.reason_class = PARKED
            verdict.reason = (f"order {_short(order_id, 80)} is parked behind its dead letter at partition {park.partition} "
                              f"offset {park.offset} ({park.reason_class}"
                              f"{'' if park.seq is None else f', seq {park.seq}'}): seq {seq} after {last_seq}")
            verdict.parked_behind = park
            return
        if not redriven:  # the next slot's own letter; the first letter stays the park
            return
    verdict.new_park = Park(last_seq, partition, offset, verdict.reason_class or "Rejected", seq)


def _short(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters (a reason travels in a Kafka header)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
