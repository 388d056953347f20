"""The kernel through both of its adapters: the live step (Quix fakes) and the replay fold.

Expected verdicts are written out by hand from ../shared/DESIGN.md; the live and replay
outputs are compared with each other only on top of that.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.dlq import DLQ_HEADERS, DeadLetter, headers_to_dict
from pipelines.kernel import CUT, LATE_EVENT, process_record
from pipelines.live import steps as live_steps
from pipelines.live.stats import PipelineStats
from pipelines.projections import get_projection, view_spec
from pipelines.projections.revenue_hourly import HOUR_MS
from schemas.codec import HEADER_LEN, MAGIC
from schemas.fast_decode import FastDecoder
from state.replay.fold import OrderFolder, RawRecord
from tests.quix_fakes import FakeState, FakeTransaction, drive_live_step
from tests.unit.state.replay.test_replay_fold import CODEC, event

T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS  # an hour boundary
GRACE_MS = 600_000


def rec(partition: int, offset: int, item: dict[str, Any] | bytes, *, key: str | None = None) -> RawRecord:
    """A record; ``key`` defaults to the event's orderId (``o-1`` for raw bytes)."""
    if isinstance(item, bytes):
        return RawRecord(partition, offset, (key or "o-1").encode(), item, T0)
    order_id = key or item["envelope"]["orderId"]
    return RawRecord(partition, offset, order_id.encode(), CODEC.encode(item), item["envelope"]["occurredAt"])


def run_live(view: str, recs: list[RawRecord],
             transactions: dict[int, FakeTransaction] | None = None,
             states: dict[tuple[int, bytes | None], FakeState] | None = None) -> tuple[list[Any], PipelineStats]:
    """Every output item of the live step 1 for ``recs`` (one FakeState per key, one transaction per partition;
    pass the same ``transactions`` and ``states`` to a second call to model a restart with recovered state)."""
    stats = PipelineStats(view)
    step = live_steps.OrderStep(get_projection(view, grace_ms=GRACE_MS), stats, rekeyed=view_spec(view).rekeyed)
    out = list(drive_live_step(step, recs, transactions=transactions, states=states))
    return out, stats


def run_replay(view: str, recs: list[RawRecord]) -> tuple[list[DeadLetter], list[tuple[Any, ...]], OrderFolder]:
    """Dead letters and changes of the replay fold for ``recs``."""
    letters: list[DeadLetter] = []
    folder = OrderFolder(get_projection(view, grace_ms=GRACE_MS), topic="orders", decode=FastDecoder().decode,
                         on_dead_letter=letters.append)
    changes: list[tuple[Any, ...]] = []
    folder.fold(recs, changes)
    return letters, changes, folder


def live_letters(items: list[Any]) -> list[dict[str, Any]]:
    """The live dead letters' headers, with the raw value under ``value``."""
    out = []
    for item in items:
        if isinstance(item, DeadLetter):
            headers = item.headers()
            assert [name for name, _ in headers] == list(DLQ_HEADERS)
            out.append(headers_to_dict(headers) | {"value": item.value})
    return out


def bad_records() -> list[RawRecord]:
    """One record of every bad kind, each after a good start of its own order (one partition)."""
    unknown_schema = MAGIC + b"\xde\xad\xbe\xef\x00\x00\x00\x01" + CODEC.encode(event("OrderPlaced", 1, T0))[HEADER_LEN:]
    return [
        rec(0, 0, b"not avro at all"),                                                       # undecodable
        rec(0, 1, unknown_schema),                                                           # unknown schema
        rec(0, 2, event("OrderPlaced", 1, T0 + 1, order_id="o-2")),
        rec(0, 3, event("InventoryReserved", 3, T0 + 2, order_id="o-2")),                    # seq gap
        rec(0, 4, event("OrderPlaced", 1, T0 + 3, order_id="o-3"), key="o-4"),               # key mismatch
        rec(0, 5, event("OrderPlaced", 1, T0 + 4, order_id="o-5")),
        rec(0, 6, event("OrderShipped", 2, T0 + 5, order_id="o-5")),                         # impossible transition
    ]


@pytest.mark.parametrize("view", ["order-status", "customer-summary"])
def test_every_bad_kind_gets_the_same_dead_letter_live_and_in_replay(view: str) -> None:
    """Scenario: undecodable, unknown schema, seq gap, key mismatch, impossible transition.
    We expect one dead letter each, at the same offsets, with the same reason class, value and header names."""
    recs = bad_records()
    live, stats = run_live(view, recs)
    replayed, _, folder = run_replay(view, recs)
    got_live = live_letters(live)
    assert [int(h["rewind.source.offset"]) for h in got_live] == [0, 1, 3, 4, 6]
    classes = [h["rewind.reason.class"] for h in got_live]
    assert classes[2:] == ["SequenceGap", "KeyMismatch", "ImpossibleTransition"]
    assert classes[0] != classes[1] and "Schema" in classes[1]  # undecodable vs unknown schema: told apart
    assert [(h["rewind.source.partition"], h["rewind.source.offset"], h["rewind.reason.class"], h["rewind.reason.message"], h["value"])
            for h in got_live] == [(str(d.source_partition), str(d.source_offset), d.reason_class, d.reason, d.value) for d in replayed]
    assert stats.dead_lettered == folder.counters.dead_lettered == 5
    assert stats.applied == folder.counters.applied == 2


def delivered_order(order_id: str, t: int) -> list[dict[str, Any]]:
    """The events of an order placed at ``t`` and delivered at ``t + 5`` (ms)."""
    kinds = ["OrderPlaced", "PaymentAuthorized", "InventoryReserved", "OrderShipped", "OrderDelivered"]
    return [event(kind, seq, t + seq, order_id=order_id) for seq, kind in enumerate(kinds, start=1)]


def late_log() -> list[RawRecord]:
    """Partition 0: o-2 runs 3 h ahead, then o-1's delivery in the first hour arrives (late).
    Partition 1: o-3 delivers in the first hour with nothing ahead of it (on time)."""
    events = delivered_order("o-1", T0)[:4] + delivered_order("o-2", T0 + 3 * HOUR_MS) + delivered_order("o-1", T0)[4:]
    part0 = [rec(0, i, e) for i, e in enumerate(events)]
    part1 = [rec(1, i, e) for i, e in enumerate(delivered_order("o-3", T0 + 100))]
    return part0 + part1


def test_late_window_change_is_judged_by_its_source_partitions_stream_time() -> None:
    """Scenario: revenue-hourly, a delivery in hour 0 read after partition 0 reached hour 3; partition 1 never did.
    We expect exactly that delivery dead-lettered as LateEvent, live and replay alike, and hour 0 holding only o-3."""
    recs = late_log()
    live, stats = run_live("revenue-hourly", recs)
    letters, changes, folder = run_replay("revenue-hourly", recs)
    got_live = live_letters(live)
    assert [(h["rewind.source.partition"], h["rewind.source.offset"], h["rewind.reason.class"]) for h in got_live] == [("0", "9", LATE_EVENT)]
    assert [(d.source_partition, d.source_offset, d.reason_class, d.reason) for d in letters] == \
        [(0, 9, LATE_EVENT, got_live[0]["rewind.reason.message"])]
    live_keys = sorted((c["key"], c["orderId"]) for c in live if isinstance(c, dict))
    replay_keys = sorted((c[0], c[2]) for c in changes)
    assert live_keys == replay_keys == sorted([(f"EUR:{T0 + 3 * HOUR_MS}", "o-2"), (f"EUR:{T0}", "o-3")])
    assert stats.late == folder.counters.late == 1
    assert stats.applied == folder.counters.applied == 15  # the late delivery still moves its order on
    assert folder.stream_time_ms == {0: T0 + 3 * HOUR_MS + 5, 1: T0 + 105}


def test_stream_time_survives_a_restart_of_the_live_step() -> None:
    """Scenario: the live step restarts (new process, caches empty) between partition 0's hour-3 order and the late delivery.
    We expect the stream time read back from partition state: the delivery is still late."""
    recs = late_log()
    transactions: dict[int, FakeTransaction] = {}
    states: dict[tuple[int, bytes | None], FakeState] = {}
    first, _ = run_live("revenue-hourly", recs[:9], transactions, states)
    # A restarted process: new step, new per-key states, the same (recovered) partition stores.
    stored = {p: {k[1]: v for k, v in tx.data.items() if k[0] == live_steps.PARTITION_STATE_PREFIX} for p, tx in transactions.items()}
    assert stored == {0: {live_steps.STREAM_TIME_KEY: T0 + 3 * HOUR_MS + 5}}
    second, _ = run_live("revenue-hourly", recs[9:10], transactions, states)
    assert [h["rewind.reason.class"] for h in live_letters(second)] == [LATE_EVENT]
    assert not live_letters(first)


def test_kernel_is_pure_and_reads_state_only_through_row_of() -> None:
    """Scenario: the same record judged twice with the same inputs, then with the order cut.
    We expect equal verdicts, no change to the row passed in, and "beyond" for a cut order."""
    projection = get_projection("order-status")
    placed = CODEC.encode(event("OrderPlaced", 1, T0))
    paid = CODEC.encode(event("PaymentAuthorized", 2, T0 + 10))
    first = process_record(projection, b"o-1", placed, decode=FastDecoder().decode, row_of=lambda _: None, stream_time_ms=None)
    assert first.outcome == "applied" and first.stream_time_ms == T0 and first.after is not None
    row = dict(first.after)
    again = [process_record(projection, b"o-1", paid, decode=FastDecoder().decode, row_of=lambda _: first.after, stream_time_ms=T0 + 99)
             for _ in range(2)]
    assert [(v.outcome, v.after, v.stream_time_ms) for v in again] == [("applied", again[0].after, T0 + 99)] * 2
    assert first.after == row
    cut = process_record(projection, b"o-1", paid, decode=FastDecoder().decode, row_of=lambda _: CUT, stream_time_ms=None)
    assert (cut.outcome, cut.stream_time_ms) == ("beyond", T0 + 10)
    beyond = process_record(projection, b"o-1", paid, decode=FastDecoder().decode, row_of=lambda _: first.after,
                            stream_time_ms=None, as_of_ms=T0 + 9)
    assert beyond.outcome == "beyond"


def test_a_replay_seeded_mid_log_judges_lateness_like_one_from_zero() -> None:
    """Scenario: revenue-hourly folded from offset zero, and folded in two halves where the second starts from
    the first's rows and stream times (what a snapshot seed hands the workers). We expect the same late letters
    and the same changes."""
    recs = late_log()
    whole_letters, whole_changes, _ = run_replay("revenue-hourly", recs)
    letters: list[DeadLetter] = []
    first = OrderFolder(get_projection("revenue-hourly", grace_ms=GRACE_MS), topic="orders", decode=FastDecoder().decode,
                        on_dead_letter=letters.append)
    changes: list[tuple[Any, ...]] = []
    first.fold(recs[:7], changes)
    second = OrderFolder(get_projection("revenue-hourly", grace_ms=GRACE_MS), topic="orders", decode=FastDecoder().decode,
                         on_dead_letter=letters.append, rows=first.rows, stream_time_ms=first.counters.as_dict()["stream_time_ms"])
    second.fold(recs[7:], changes)
    assert [(d.source_partition, d.source_offset, d.reason_class) for d in letters] == \
        [(d.source_partition, d.source_offset, d.reason_class) for d in whole_letters] == [(0, 9, LATE_EVENT)]
    assert changes == whole_changes
