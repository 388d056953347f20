"""`rewind dlq redrive`: the dead-lettered records of parked orders, appended again to the orders topic once the cause is fixed.

A redrive decides nothing: it hands the records back to the log, and every pipeline (and any
later replay) judges them with the same kernel as any record (:mod:`pipelines.kernel`,
"Per-order parking" and "Redrive"). So the views end as the log decides, in every pipeline
alike, and a redrive is safe to repeat:

- a copy whose seq its order has applied already is a counted duplicate: running redrive
  twice, or again after a run that crashed half-way, applies nothing twice;
- a copy that still fails is dead-lettered again, with its new reason and the header
  ``rewind.redrive.of``, and its order stays parked behind it.

Protocol:

1. **Select.** Read every committed letter of the DLQ topic (every pipeline's, replays'
   included). The selected orders are ``--order X``, or every order (record key) that has a
   letter of reason class ``--reason R``. Their letters that can be redriven are those about
   the orders topic, keyed by the order, whose reason is not ``LateEvent`` (the event was
   applied), ``KeyMismatch`` or ``WrongPartition`` (the record is not this order's, where it
   is).
2. **Plan.** One record per *origin*, the orders record a letter is about: its
   ``rewind.redrive.of`` header when the letter is of a redriven copy, else its source
   position. So the letters several pipelines wrote of one record, and the letters of its
   copies, give one record. Per order, in seq order: records in their original log order,
   those that decode (with this process's decoder, the fixed build) sorted by seq among
   themselves; those that still do not decode keep their place.
3. **Append.** Each record's original key, bytes and timestamp (its event time), to its
   original partition (the key's: checked against murmur2), with ``rewind.redrive.of`` =
   its origin, through an idempotent producer (per partition, in plan order, none twice by
   a retry). The call returns once every record is acknowledged, or raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, Producer

from pipelines.dlq import REDRIVE_OF_HEADER
from pipelines.dlq_reader import Decode, Letter, read_letters
from pipelines.kernel import KEY_MISMATCH, LATE_EVENT, WRONG_PARTITION
from pipelines.partitioning import partition_for
from pipelines.topics import check_reachable, orders_partition_count
from schemas.errors import RewindError

__all__ = ["NOT_REDRIVEN", "RedriveRecord", "RedrivePlan", "RedriveError", "plan_redrive", "append_plan", "redrive"]

#: Reason classes whose letters are never redriven (step 1).
NOT_REDRIVEN = frozenset({LATE_EVENT, KEY_MISMATCH, WRONG_PARTITION})


class RedriveError(RewindError):
    """Some redriven records were not acknowledged by the broker. Nothing is applied twice by running the
    same redrive again (the kernel skips a seq already applied): fix the broker problem and rerun it."""


@dataclass(frozen=True, slots=True)
class RedriveRecord:
    """One record to append: the order, where the original is (``origin``: ``topic/partition@offset``), its seq
    (None: it does not decode with this build), key, bytes and timestamp, and the reason classes of its letters."""

    order_id: str
    origin: str
    partition: int
    offset: int
    seq: int | None
    key: bytes
    value: bytes
    timestamp_ms: int
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RedrivePlan:
    """The records to append, per order in seq order (step 2), and what was read."""

    orders_topic: str
    records: list[RedriveRecord] = field(default_factory=list)
    #: The selected orders that have something to redrive, in the order first met.
    orders: list[str] = field(default_factory=list)
    letters_read: int = 0


def _origin(letter: Letter, orders_topic: str) -> tuple[str, int, int] | None:
    """(topic, partition, offset) of the orders record ``letter`` is about (None: not an orders record, or headers unreadable)."""
    headers = letter.headers
    copy_of = headers.get(REDRIVE_OF_HEADER)
    try:
        if copy_of:
            where, _, offset = copy_of.rpartition("@")
            topic, _, partition = where.rpartition("/")
            origin = (topic, int(partition), int(offset))
        else:
            origin = (headers.get("rewind.source.topic") or "", int(headers.get("rewind.source.partition") or ""),
                      int(headers.get("rewind.source.offset") or ""))
    except ValueError:
        return None
    return origin if origin[0] == orders_topic else None


def plan_redrive(letters: Iterable[Letter], *, orders_topic: str, partition_count: int, order: str | None = None,
                 reason: str | None = None) -> RedrivePlan:
    """Steps 1-2 over ``letters`` (pure: no broker). Exactly one of ``order`` and ``reason`` is given."""
    if (order is None) == (reason is None):
        raise ValueError("give exactly one of order and reason")
    read = 0
    chosen: set[str] = set() if order is None else {order}
    # origin -> record, per order, in the order first met (a DLQ partition's letters are in log order).
    by_order: dict[str, dict[tuple[str, int, int], RedriveRecord]] = {}
    reasons: dict[tuple[str, int, int], list[str]] = {}
    for letter in letters:
        read += 1
        reason_class = letter.reason_class or ""
        key = letter.key
        if key is None or reason_class in NOT_REDRIVEN:
            continue
        try:
            order_id = key.decode()
        except UnicodeDecodeError:
            continue
        if reason is not None and reason_class == reason:
            chosen.add(order_id)
        origin = _origin(letter, orders_topic)
        if origin is None or partition_for(key, partition_count) != origin[1]:
            continue
        reasons.setdefault(origin, []).append(reason_class)
        mine = by_order.setdefault(order_id, {})
        if origin not in mine:
            mine[origin] = RedriveRecord(order_id, f"{origin[0]}/{origin[1]}@{origin[2]}", origin[1], origin[2], letter.seq,
                                         key, letter.value or b"", letter.timestamp_ms or 0, ())
    plan = RedrivePlan(orders_topic, letters_read=read)
    for order_id, records in by_order.items():
        if order_id not in chosen:
            continue
        in_log = [records[o] for o in sorted(records)]
        # Seq order: the slots of the records that decode take their records sorted by seq; the rest stay put.
        decoded = iter(sorted((r for r in in_log if r.seq is not None), key=lambda r: (r.seq, r.offset)))
        ordered = [r if r.seq is None else next(decoded) for r in in_log]
        plan.orders.append(order_id)
        for r in ordered:
            origin = (orders_topic, r.partition, r.offset)
            plan.records.append(RedriveRecord(r.order_id, r.origin, r.partition, r.offset, r.seq, r.key, r.value, r.timestamp_ms,
                                              tuple(sorted(set(reasons[origin])))))
    return plan


def append_plan(plan: RedrivePlan, bootstrap: str, *, timeout_s: float = 60.0) -> int:
    """Step 3: append every record of ``plan``; returns how many were acknowledged. Raises
    :class:`RedriveError` when any was not (the run can be repeated safely)."""
    if not plan.records:
        return 0
    failed: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                         "log_level": 3})
    try:
        for r in plan.records:
            while True:
                try:
                    producer.produce(plan.orders_topic, r.value, r.key, partition=r.partition, timestamp=r.timestamp_ms,
                                     headers=[(REDRIVE_OF_HEADER, r.origin.encode())], on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        left = producer.flush(timeout_s)
    except KafkaException as exc:
        raise RedriveError(f"redriving to {plan.orders_topic}: {exc.args[0].str()}") from exc
    if left or failed:
        raise RedriveError(f"{left + len(failed)} of {len(plan.records)} redriven records were not acknowledged by "
                           f"{plan.orders_topic}: {failed[0] if failed else 'flush timed out'}; rerunning the redrive is safe")
    return len(plan.records)


def redrive(bootstrap: str, *, orders_topic: str, dlq_topic: str, decode: Decode, order: str | None = None,
            reason: str | None = None, dry_run: bool = False, timeout_s: float = 60.0, connect_timeout_s: float = 5.0) -> RedrivePlan:
    """Steps 1-3 (``dry_run``: 1-2 only). Raises BrokerUnreachableError, TopicError (a topic missing),
    DlqReadError and RedriveError, each one line."""
    check_reachable(bootstrap, timeout_s=connect_timeout_s)
    partitions = orders_partition_count(bootstrap, orders_topic, timeout_s=connect_timeout_s)
    letters = read_letters(bootstrap, dlq_topic, decode=decode, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s)
    plan = plan_redrive(letters, orders_topic=orders_topic, partition_count=partitions, order=order, reason=reason)
    if not dry_run:
        append_plan(plan, bootstrap, timeout_s=timeout_s)
    return plan
