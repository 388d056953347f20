"""Per-order parking and redrive in the kernel (pipelines/kernel.py, "Per-order parking" and "Redrive"),
through every adapter: the live step (Quix fakes), the batch engine's order stage, and the replay fold.

The poison here is realistic and fixable: an OrderShipped written by a newer build (v2, a schema this
build does not know: ``UnknownSchemaError``), read after the fix by the newer build's decoder
(tests/schema_builds.py). Expected letters are written out by hand from the kernel's docstring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.batch.stages import OrderStage
from pipelines.dlq import PARKED_BEHIND_HEADER, REDRIVE_OF_HEADER, DeadLetter, headers_to_dict
from pipelines.kernel import KEY_MISMATCH, LATE_EVENT, PARKED, WRONG_PARTITION, Park, process_record
from pipelines.live import steps as live_steps
from pipelines.live.stats import PipelineStats
from pipelines.partitioning import partition_for
from pipelines.projections import Row, get_projection, view_spec
from schemas.fast_decode import FastDecoder
from state.replay.fold import OrderFolder, RawRecord, ViewFolder
from tests.quix_fakes import FakeState, drive_live_step
from tests.schema_builds import as_newer, newer_codec, newer_decoder
from tests.unit.pipelines.batch_fakes import DictStore
from tests.unit.pipelines.test_kernel_bad_events import CODEC, PARTITIONS, T0, delivered, event

OLD = FastDecoder(CODEC).decode
#: (partition, offset, reason class, parked behind, redrive of)
Letter = tuple[int, int, str, str | None, str | None]


def log(items: list[Any], *, newer: Any = None) -> list[RawRecord]:
    """Records in log order on their key's partition; an item is an event, ``("newer", event)`` (written
    by the newer build), ``(key, bytes)``, or a ready RawRecord (appended as is, offset renumbered)."""
    offsets: dict[int, int] = {}
    out = []
    for item in items:
        headers = None
        if isinstance(item, RawRecord):
            key, value, headers = item.key(), item.value(), item.headers()
        elif isinstance(item, tuple) and item[0] == "newer":
            key, value = item[1]["envelope"]["orderId"].encode(), newer.encode(as_newer(item[1]))
        elif isinstance(item, tuple):
            key, value = item
        else:
            key, value = item["envelope"]["orderId"].encode(), CODEC.encode(item)
        assert key is not None
        p = partition_for(key, PARTITIONS)
        offsets[p] = offsets.get(p, -1) + 1
        out.append(RawRecord(p, offsets[p], key, value, T0, headers))
    return out


def redriven(records: list[RawRecord]) -> list[RawRecord]:
    """Copies of ``records`` as `rewind dlq redrive` appends them (offsets renumbered by :func:`log`)."""
    return [RawRecord(r.partition(), -1, r.key(), r.value(), r.timestamp()[1],
                      [(REDRIVE_OF_HEADER, f"orders/{r.partition()}@{r.offset()}".encode())]) for r in records]


class Adapters:
    """The three adapters over one log, each keeping its state between calls (as one long-running process)."""

    def __init__(self, view: str) -> None:
        self.view = view
        self.live_states: dict[tuple[int, bytes | None], FakeState] = {}
        self.stores: dict[int, Any] = {}
        self.replay_letters: list[DeadLetter] = []
        self.folder: OrderFolder | None = None
        #: The replay's view rows: its changes folded by step 2 (:class:`ViewFolder`).
        self.view_folder = ViewFolder(get_projection(view))

    def feed(self, recs: list[RawRecord], decode: Any) -> tuple[list[Letter], list[Letter], list[Letter]]:
        """Live, batch and replay letters of ``recs`` (read with ``decode``)."""
        projection = get_projection(self.view)
        step = live_steps.OrderStep(projection, PipelineStats(self.view), rekeyed=view_spec(self.view).rekeyed,
                                    partition_count=PARTITIONS, decode=decode)
        live = [(d.source_partition, d.source_offset, d.reason_class, d.parked_behind, d.redrive_of)
                for d in drive_live_step(step, recs, states=self.live_states) if isinstance(d, DeadLetter)]
        batch: list[Letter] = []

        def send(topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None, timestamp_ms: int,
                 partition: int | None) -> None:
            if topic == "dlq":
                h = headers_to_dict(headers)
                batch.append((int(h["rewind.source.partition"]), int(h["rewind.source.offset"]), h["rewind.reason.class"],
                              h.get(PARKED_BEHIND_HEADER), h.get(REDRIVE_OF_HEADER)))

        stage = OrderStage(projection, PipelineStats(self.view), orders_topic="orders", view_topic="view", dlq_topic="dlq",
                           partition_count=PARTITIONS, decode=decode, repartition_topic="hop" if view_spec(self.view).rekeyed else None,
                           repartition_partitions=PARTITIONS)
        for r in recs:
            stage.fold(r, self.stores.setdefault(r.partition(), DictStore()), send)
        # Replay: one fold over the whole log so far, with this decoder (a replay after the fix reads the old records too).
        seen = len(self.replay_letters)
        if self.folder is None:
            self.folder = OrderFolder(projection, topic="orders", decode=decode, on_dead_letter=self.replay_letters.append,
                                      partition_count=PARTITIONS)
        self.folder._decode = decode  # the same folder, its process restarted with the newer build
        changes: list[tuple[Any, ...]] = []
        self.folder.fold(recs, changes)
        for key, payload, order_id, seq, valid_from, _, _ in changes:
            self.view_folder.apply(key, payload, order_id, seq, valid_from)
        replayed = [(d.source_partition, d.source_offset, d.reason_class, d.parked_behind, d.redrive_of)
                    for d in self.replay_letters[seen:]]
        return live, batch, replayed

    def row(self, order_id: str) -> Row | None:
        """The order's row in the batch store, after checking live and replay hold the same."""
        p = partition_for(order_id.encode(), PARTITIONS)
        batch = self.stores[p].get(b"r" + order_id.encode())
        assert self.folder is not None
        assert self.folder.rows.get(order_id, p) == batch
        live = self.live_states[(p, order_id.encode())].get_bytes(live_steps.ORDER_STATE_KEY_BYTES)
        assert (None if live is None else orjson.loads(live)) == batch
        row: Row | None = batch
        return row


def same(adapters: Adapters, recs: list[RawRecord], decode: Any) -> list[Letter]:
    live, batch, replayed = adapters.feed(recs, decode)
    assert live == batch == replayed
    return live


def clean(view: str, events: list[dict[str, Any]]) -> Adapters:
    """The adapters after folding ``events`` with no poison at all (this build, every event as written by it)."""
    adapters = Adapters(view)
    assert same(adapters, log(events), OLD) == []
    return adapters


def clean_row(view: str, events: list[dict[str, Any]]) -> Row | None:
    """The order's row with no poison at all."""
    return clean(view, events).row(events[0]["envelope"]["orderId"])


def with_refund(order_id: str = "o-1") -> list[dict[str, Any]]:
    return [*delivered(order_id), event("RefundIssued", 6, order_id=order_id)]


@pytest.mark.parametrize("view", ["order-status", "revenue-hourly", "customer-summary"])
def test_one_unreadable_event_parks_its_order_then_redrive_after_the_fix_completes_it(view: str, tmp_path: Path) -> None:
    """Scenario: o-1's OrderShipped (seq 4) is written by a newer build; this build reads the log, then is
    replaced by the newer one, and `dlq redrive` appends the order's three dead-lettered records twice.
    We expect one UnknownSchemaError, then Parked for seq 5 and 6 naming its position (not SequenceGap), the
    same from every adapter; after the redrive, o-1's row equals the one with no poison, nothing applied twice
    (the second redrive is all duplicates), and the late rule does not drop the redriven windows."""
    newer = newer_codec(tmp_path)
    events = with_refund()
    first = log([*events[:3], ("newer", events[3]), *events[4:], *delivered("o-2")], newer=newer)
    adapters = Adapters(view)
    letters = same(adapters, first, OLD)
    p = partition_for(b"o-1", PARTITIONS)
    behind = f"orders/{p}@3"
    assert [(cls, b) for _, _, cls, b, _ in letters] == [("UnknownSchemaError", None), (PARKED, behind), (PARKED, behind)]
    row = adapters.row("o-1")
    assert row is not None and row["lastSeq"] == 3  # the view stops at the poison
    assert adapters.row("o-2") == clean_row(view, delivered("o-2"))
    parked = [r for r in first if r.key() == b"o-1" and r.offset() >= 3]
    # Much later in the log (a day of another order of o-1's partition), so a window change of the copies would be
    # late by stream time.
    assert partition_for(b"o-5", PARTITIONS) == p
    later = [event(kind, seq, order_id="o-5", at=T0 + 86_400_000 + seq) for seq, kind in enumerate(
        ["OrderPlaced", "PaymentAuthorized", "InventoryReserved", "OrderShipped", "OrderDelivered"], start=1)]
    fixed = newer_decoder(tmp_path)
    assert same(adapters, log([*first, *later, *redriven(parked), *redriven(parked)], newer=newer)[len(first):], fixed) == []
    assert adapters.row("o-1") == clean_row(view, events)
    assert adapters.view_folder.rows == clean(view, [*events, *delivered("o-2"), *later]).view_folder.rows
    assert adapters.folder is not None
    c = adapters.folder.counters
    assert c.applied == 6 + 5 + 5 and c.duplicates == 3  # every event once; the second redrive: duplicates
    assert c.late == 0


def test_a_redrive_that_still_cannot_read_leaves_the_order_parked_with_its_new_letter(tmp_path: Path) -> None:
    """Scenario: the redrive runs before the fix. We expect the copy of seq 4 dead-lettered again (its reason,
    its rewind.redrive.of), the park moved to the copy, the copies of 5 and 6 Parked behind the copy, and the
    order's row unchanged."""
    newer = newer_codec(tmp_path)
    events = with_refund()
    first = log([*events[:3], ("newer", events[3]), *events[4:]], newer=newer)
    adapters = Adapters("order-status")
    same(adapters, first, OLD)
    copies = log([*first, *redriven(first[3:])], newer=newer)[len(first):]
    letters = same(adapters, copies, OLD)
    p = partition_for(b"o-1", PARTITIONS)
    assert letters == [
        (p, 6, "UnknownSchemaError", None, f"orders/{p}@3"),
        (p, 7, PARKED, f"orders/{p}@6", f"orders/{p}@4"),
        (p, 8, PARKED, f"orders/{p}@6", f"orders/{p}@5"),
    ]
    row = adapters.row("o-1")
    assert row is not None and row["lastSeq"] == 3


def test_junk_next_to_real_events_never_parks_a_healthy_order() -> None:
    """Scenario: the workload's poison shapes around o-1's real events: garbage bytes right after seq 2, an
    impossible transition claiming seq 3 right before the real seq 3. We expect only the junk's own letters
    and every real event applied."""
    events = delivered()
    junk = event("OrderDelivered", 3)
    recs = log([*events[:2], (b"o-1", b"\x00garbage"), junk, *events[2:]])
    for view in ("order-status", "revenue-hourly"):
        adapters = Adapters(view)
        letters = same(adapters, recs, OLD)
        assert [cls for _, _, cls, _, _ in letters] == ["UnknownSchemaError", "ImpossibleTransition"]
        assert adapters.row("o-1") == clean_row(view, events)


def test_a_record_of_another_partitions_order_parks_nothing() -> None:
    """Scenario: o-1's seq 3 under another key (KeyMismatch), o-1's seq 4 on a wrong partition, then o-1's seq 5.
    We expect KeyMismatch, WrongPartition, and a SequenceGap of its own for seq 5 (the order was not parked)."""
    events = delivered()
    p = partition_for(b"o-1", PARTITIONS)
    stray = RawRecord((p + 1) % PARTITIONS, 0, b"o-1", CODEC.encode(events[3]), T0)
    recs = log([*events[:2], (b"o-9", CODEC.encode(events[2]))])
    recs.append(stray)
    recs.append(RawRecord(p, 2, b"o-1", CODEC.encode(events[4]), T0))
    letters = same(Adapters("order-status"), recs, OLD)
    assert [cls for _, _, cls, _, _ in letters] == [KEY_MISMATCH, WRONG_PARTITION, "SequenceGap"]


def test_a_copy_without_the_redrive_header_is_late_where_a_redriven_one_is_not() -> None:
    """Scenario: revenue-hourly; o-1's OrderDelivered appended again a day of stream time after its window, once as a
    plain record, once with rewind.redrive.of, each to an order that has not applied it. We expect the plain one
    LateEvent (applied, its window change dropped), the redriven one on time."""
    projection = get_projection("revenue-hourly")
    rows: list[Row | None] = [None]
    for e in delivered()[:4]:
        rows[0] = process_record(projection, b"o-1", CODEC.encode(e), decode=OLD, row_of=lambda _: rows[0], stream_time_ms=None).after
    last = CODEC.encode(delivered()[4])
    now = T0 + 86_400_000
    plain = process_record(projection, b"o-1", last, decode=OLD, row_of=lambda _: rows[0], stream_time_ms=now)
    copy = process_record(projection, b"o-1", last, decode=OLD, row_of=lambda _: rows[0], stream_time_ms=now, redriven=True)
    assert (plain.outcome, plain.reason_class, len(plain.deltas), len(plain.late)) == ("applied", LATE_EVENT, 0, 1)
    assert (copy.outcome, copy.reason_class, len(copy.deltas), len(copy.late)) == ("applied", None, 1, 0)


def test_a_parked_order_is_parked_behind_its_first_letter_only() -> None:
    """Scenario: a Park that holds, asked directly of the kernel. We expect a later seq Parked (naming it, no new
    park); the next slot folded as usual; a spent park (lastSeq moved on) not held, so a gap is a SequenceGap
    that parks again; and a LateEvent or a duplicate never parking."""
    projection = get_projection("order-status")
    placed = CODEC.encode(event("OrderPlaced", 1))
    row = process_record(projection, b"o-1", placed, decode=OLD, row_of=lambda _: None, stream_time_ms=None).after
    park = Park(1, 0, 7, "UnknownSchemaError", None)
    gap = process_record(projection, b"o-1", CODEC.encode(event("OrderShipped", 4)), decode=OLD, row_of=lambda _: row,
                         stream_time_ms=None, offset=9, park_of=lambda _: park)
    assert (gap.reason_class, gap.parked_behind, gap.new_park) == (PARKED, park, None)
    assert "partition 0 offset 7 (UnknownSchemaError)" in (gap.reason or "")
    nxt = process_record(projection, b"o-1", CODEC.encode(event("PaymentAuthorized", 2)), decode=OLD, row_of=lambda _: row,
                         stream_time_ms=None, offset=10, park_of=lambda _: park)
    assert (nxt.outcome, nxt.new_park) == ("applied", None)
    wrong = CODEC.encode(event("OrderDelivered", 2))  # the next slot, rejected: the first letter stays the park
    own = process_record(projection, b"o-1", wrong, decode=OLD, row_of=lambda _: row, stream_time_ms=None, offset=11,
                         park_of=lambda _: park)
    assert (own.reason_class, own.new_park, own.parked_behind) == ("ImpossibleTransition", None, None)
    copy = process_record(projection, b"o-1", wrong, decode=OLD, row_of=lambda _: row, stream_time_ms=None, partition=0,
                          offset=12, park_of=lambda _: park, redriven=True)  # a redriven copy re-points it
    assert (copy.reason_class, copy.new_park) == ("ImpossibleTransition", Park(1, 0, 12, "ImpossibleTransition", 2))
    spent = Park(0, 0, 7, "UnknownSchemaError", None)
    again = process_record(projection, b"o-1", CODEC.encode(event("OrderShipped", 4)), decode=OLD, row_of=lambda _: row,
                           stream_time_ms=None, partition=0, offset=9, park_of=lambda _: spent)
    assert (again.reason_class, again.new_park) == ("SequenceGap", Park(1, 0, 9, "SequenceGap", 4))
    dup = process_record(projection, b"o-1", placed, decode=OLD, row_of=lambda _: row, stream_time_ms=None, park_of=lambda _: None)
    assert (dup.outcome, dup.new_park) == ("duplicate", None)
    revenue = get_projection("revenue-hourly")
    late = process_record(revenue, b"o-1", CODEC.encode(event("OrderPlaced", 1)), decode=OLD, row_of=lambda _: None,
                          stream_time_ms=T0 + 86_400_000, park_of=lambda _: None)
    assert late.new_park is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(poisoned=st.sets(st.integers(1, 6), min_size=1), orders=st.integers(1, 3))
def test_any_unreadable_events_park_then_redrive_gives_the_clean_views(poisoned: set[int], orders: int, tmp_path: Path) -> None:
    """Scenario: orders whose events at ``poisoned`` seqs are written by the newer build (OrderShipped only, so each
    other poisoned seq is rewritten as raw garbage the newer build cannot read either; those stay dead), then the
    fix and a redrive of every letter of each order, in seq order. We expect: before, the first poisoned seq's own
    letter and nothing but Parked or own letters after it, never SequenceGap; after, every order whose only poison
    was its OrderShipped equal to its clean row, the others stopped before their first garbage, still parked."""
    newer = newer_codec(tmp_path)
    ids = [f"o-{i}" for i in range(orders)]
    items: list[Any] = []
    for order_id in ids:
        for e in with_refund(order_id):
            seq = e["envelope"]["seq"]
            if seq not in poisoned:
                items.append(e)
            elif e["envelope"]["eventType"] == "OrderShipped":
                items.append(("newer", e))
            else:
                items.append((order_id.encode(), b"\xc3\x01" + seq.to_bytes(8, "big") + b"?"))
    first = log(items, newer=newer)
    adapters = Adapters("order-status")
    letters = same(adapters, first, OLD)
    assert "SequenceGap" not in [cls for _, _, cls, _, _ in letters]
    by_pos = {(r.partition(), r.offset()): r for r in first}
    copies: list[RawRecord] = []
    for order_id in ids:
        mine = [by_pos[(p, o)] for p, o, _, _, _ in letters if by_pos[(p, o)].key() == order_id.encode()]
        own = [cls for p, o, cls, _, _ in letters if by_pos[(p, o)].key() == order_id.encode() and cls != PARKED]
        assert len(own) == len([s for s in poisoned if s <= 6]), own  # one own letter per poisoned seq, the rest Parked
        copies += redriven(mine)  # letters are in log order = seq order within one order
    same(adapters, log([*first, *copies], newer=newer)[len(first):], newer_decoder(tmp_path))
    for order_id in ids:
        row = adapters.row(order_id)
        garbage = sorted(s for s in poisoned if s != 4)
        if not garbage:
            assert row == clean_row("order-status", with_refund(order_id))
        else:
            assert (row["lastSeq"] if row else 0) == garbage[0] - 1


def test_a_replay_seeded_from_a_replays_parks_judges_the_rest_as_one_replay_would(tmp_path: Path) -> None:
    """Scenario: a replay folds a log up to o-1's parked events, settles its parks (as a worker does before Done), and
    a second replay continues from its rows and counters' parks. We expect o-2's spent park dropped, o-1's kept, and
    the second replay's letters equal to those one replay over the whole log gives (Parked, not SequenceGap)."""
    newer = newer_codec(tmp_path)
    o2 = delivered("o-2")
    recs = log([*with_refund()[:3], ("newer", with_refund()[3]), with_refund()[4], *o2[:2], (b"o-2", b"\xc3\x01junk"), *o2[2:],
                with_refund()[5]], newer=newer)
    whole: list[DeadLetter] = []
    OrderFolder(get_projection("order-status"), topic="orders", decode=OLD, on_dead_letter=whole.append,
                partition_count=PARTITIONS).fold(recs, [])
    split = len(recs) - 1
    first = OrderFolder(get_projection("order-status"), topic="orders", decode=OLD, partition_count=PARTITIONS)
    first.fold(recs[:split], [])
    first.settle_parks()
    assert set(first.counters.as_dict()["parks"]) == {"o-1"}
    rest: list[DeadLetter] = []
    seeded = OrderFolder(get_projection("order-status"), topic="orders", decode=OLD, rows=first.rows, partition_count=PARTITIONS,
                         parks=first.counters.parks, on_dead_letter=rest.append)
    seeded.fold(recs[split:], [])
    assert [(d.reason_class, d.parked_behind) for d in rest] == [(d.reason_class, d.parked_behind) for d in whole[-1:]]
    assert rest[0].reason_class == PARKED


def test_a_redrive_that_crashed_half_way_and_ran_again_applies_each_event_once(tmp_path: Path) -> None:
    """Scenario: after the fix, a redrive appends the copy of o-1's poison and crashes; the operator runs it again (all
    three copies). We expect every event applied once (the second copy of seq 4 a duplicate) and the clean row."""
    newer = newer_codec(tmp_path)
    events = with_refund()
    first = log([*events[:3], ("newer", events[3]), *events[4:]], newer=newer)
    adapters = Adapters("customer-summary")
    same(adapters, first, OLD)
    copies = redriven(first[3:])
    assert same(adapters, log([*first, *copies[:1], *copies], newer=newer)[len(first):], newer_decoder(tmp_path)) == []
    assert adapters.folder is not None
    assert (adapters.folder.counters.applied, adapters.folder.counters.duplicates) == (6, 1)
    assert adapters.row("o-1") == clean_row("customer-summary", events)
    assert adapters.view_folder.rows == clean("customer-summary", events).view_folder.rows
