"""The redrive plan (pipelines/dlq_redrive.py, steps 1-2), on letters built by hand: no broker."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.dlq import DeadLetter
from pipelines.dlq_reader import Letter, LetterId, letter_from_record
from pipelines.dlq_redrive import plan_redrive
from pipelines.partitioning import partition_for
from schemas.fast_decode import FastDecoder
from tests.unit.pipelines.test_kernel_bad_events import CODEC, T0, event

PARTITIONS = 4
DECODE = FastDecoder(CODEC).decode
_ids = iter(range(10_000))


def letter(order_id: str, seq: int | None, offset: int, reason_class: str, *, pipeline: str = "order-status",
           copy_of: int | None = None, partition: int | None = None, topic: str = "orders") -> Letter:
    """A DLQ letter of ``order_id``'s record at ``offset`` (seq None: garbage bytes), as a pipeline writes it."""
    key = order_id.encode()
    value = b"\xc3\x01garbage" if seq is None else CODEC.encode(event("OrderShipped", seq, order_id=order_id))
    p = partition_for(key, PARTITIONS) if partition is None else partition
    dead = DeadLetter(key, value, reason_class, "why", topic, p, offset, pipeline, T0,
                      redrive_of=None if copy_of is None else f"{topic}/{p}@{copy_of}")
    return letter_from_record(LetterId(0, next(_ids)), key, value, dead.headers(now_ms=0), timestamp_ms=T0, decode=DECODE)


def planned(letters: list[Letter], **selection: Any) -> list[tuple[str, int | None, int]]:
    plan = plan_redrive(letters, orders_topic="orders", partition_count=PARTITIONS, **selection)
    return [(r.order_id, r.seq, r.offset) for r in plan.records]


def test_one_record_per_original_whoever_wrote_letters_of_it_in_seq_order() -> None:
    """Scenario: two pipelines' letters of o-1's records (an unread seq at offset 3, Parked 5 and 4 out of log order),
    letters of a first redrive's copies, a LateEvent, and another order's letter. We expect o-1's three originals
    once each, the unread one where it was, the decoded ones by seq; nothing of the LateEvent or of o-2."""
    letters = [
        letter("o-1", None, 3, "UnknownSchemaError"), letter("o-1", None, 3, "UnknownSchemaError", pipeline="revenue-hourly"),
        letter("o-1", 5, 4, "Parked"), letter("o-1", 4, 5, "Parked"), letter("o-1", 4, 5, "Parked", pipeline="revenue-hourly"),
        letter("o-1", None, 9, "UnknownSchemaError", copy_of=3), letter("o-1", 5, 10, "Parked", copy_of=4),
        letter("o-1", 2, 1, "LateEvent"), letter("o-2", 3, 2, "ImpossibleTransition"),
    ]
    assert planned(letters, order="o-1") == [("o-1", None, 3), ("o-1", 4, 5), ("o-1", 5, 4)]
    plan = plan_redrive(letters, orders_topic="orders", partition_count=PARTITIONS, order="o-1")
    p = partition_for(b"o-1", PARTITIONS)
    assert [r.origin for r in plan.records] == [f"orders/{p}@3", f"orders/{p}@5", f"orders/{p}@4"]
    assert plan.records[0].reasons == ("UnknownSchemaError",) and plan.letters_read == len(letters)


def test_a_reason_selects_every_letter_of_the_orders_that_have_one() -> None:
    """Scenario: o-1 has an UnknownSchemaError and Parked letters, o-2 only an ImpossibleTransition. We expect
    --reason UnknownSchemaError to redrive all of o-1 (its Parked ones too) and nothing of o-2; an unknown reason, nothing."""
    letters = [letter("o-1", None, 3, "UnknownSchemaError"), letter("o-1", 5, 4, "Parked"), letter("o-2", 3, 2, "ImpossibleTransition")]
    assert planned(letters, reason="UnknownSchemaError") == [("o-1", None, 3), ("o-1", 5, 4)]
    assert planned(letters, reason="NoSuchReason") == []


def test_records_that_are_not_the_orders_where_they_are_are_never_redriven() -> None:
    """Scenario: letters of o-1 that are KeyMismatch, WrongPartition (on another partition than its key's), of another
    topic, or LateEvent. We expect nothing to redrive."""
    other = (partition_for(b"o-1", PARTITIONS) + 1) % PARTITIONS
    letters = [letter("o-1", 4, 1, "KeyMismatch"), letter("o-1", 4, 2, "SequenceGap", partition=other),
               letter("o-1", 4, 3, "SequenceGap", topic="other"), letter("o-1", 4, 4, "LateEvent")]
    assert planned(letters, order="o-1") == []


def test_exactly_one_selection() -> None:
    with pytest.raises(ValueError):
        plan_redrive([], orders_topic="orders", partition_count=PARTITIONS)
    with pytest.raises(ValueError):
        plan_redrive([], orders_topic="orders", partition_count=PARTITIONS, order="o-1", reason="X")
