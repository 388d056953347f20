"""The snapshot rule: when a snapshot may seed a replay, and that a seeded replay equals one from zero.

No broker: the fold runs over a generated workload split into partitions by key, and
offsets are found with the same "earliest offset whose timestamp >= ts" rule as Kafka.
"""

from __future__ import annotations

import copy
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.projections import get_projection
from schemas.fast_decode import FastDecoder
from scripts.workload import WorkloadConfig, generate
from state.replay.fold import OrderFolder, RawRecord
from state.replay.orderrows import OrderRows
from state.replay.output import ReplayManifest
from state.replay.plan import ReplayMode
from state.snapshots import Snapshot, choose_snapshot, snapshot_verdict

L = 600_000
WORKLOAD = generate(WorkloadConfig(seed=21, orders=400, days=2, poison_rate=0.05, max_lateness_ms=L))
START, END = WORKLOAD.config.start_ms, WORKLOAD.config.end_ms
PARTITIONS = 3
DECODE = FastDecoder().decode


def _partitioned() -> dict[int, list[RawRecord]]:
    out: dict[int, list[RawRecord]] = {p: [] for p in range(PARTITIONS)}
    for r in WORKLOAD.records:
        p = zlib.crc32(r.key) % PARTITIONS
        out[p].append(RawRecord(p, len(out[p]), r.key, r.value, r.timestamp_ms))
    return out


LOG = _partitioned()


def offset_for_time(p: int, ts: int) -> int:
    """Kafka's offsets_for_times: the earliest offset whose timestamp >= ts, else the end."""
    return next((r.offset() for r in LOG[p] if r.timestamp()[1] >= ts), len(LOG[p]))


def fold(view: str, ranges: dict[int, tuple[int, int]], *, as_of_ms: int | None, rows: OrderRows | None = None) -> tuple[OrderFolder, list[tuple[Any, ...]]]:
    folder = OrderFolder(get_projection(view), topic="orders", decode=DECODE, as_of_ms=as_of_ms, rows=rows)
    out: list[tuple[Any, ...]] = []
    for p, (start, stop) in ranges.items():
        folder.fold(LOG[p][start:stop], out)
    return folder, out


def manifest(**overrides: Any) -> ReplayManifest:
    base: dict[str, Any] = dict(
        view="order-status", topic="orders", partitions=3, mode="up-to", as_of_ms=1000, next_offsets={0: 10, 1: 10, 2: 10},
        max_timestamp_ms={}, watermark_ms=None, max_valid_from_ms=1000, complete=True, cut_orders=0, fold_fingerprint="f",
    )
    base.update(overrides)
    return ReplayManifest(**base)


CRITERIA: dict[str, Any] = dict(view="order-status", topic="orders", partitions=3, fingerprint="f", stop_offsets={0: 20, 1: 20, 2: 20})


@pytest.mark.parametrize(
    "overrides,mode,as_of,usable",
    [
        ({}, "as-of", 1000, True),  # every version valid at or before T: usable (bound inclusive)
        ({}, "as-of", 999, False),  # holds a version valid after T
        ({"complete": False, "cut_orders": 3}, "as-of", 5000, False),  # dropped transitions a later T needs
        ({}, "to-end", None, True),
        ({"complete": False, "cut_orders": 1}, "to-end", None, False),
        ({"next_offsets": {0: 21, 1: 0, 2: 0}}, "up-to", 2000, False),  # read past the stop of partition 0
        ({}, "up-to", 2000, True),
        ({"view": "customer-summary"}, "as-of", 5000, False),
        ({"partitions": 4}, "as-of", 5000, False),
        ({"fold_fingerprint": "other"}, "as-of", 5000, False),  # folded by other code
    ],
)
def test_verdict(overrides: dict[str, Any], mode: ReplayMode, as_of: int | None, usable: bool) -> None:
    """Scenario: one snapshot property at a time. We expect the rule of state.snapshots to decide."""
    assert snapshot_verdict(manifest(**overrides), mode=mode, as_of_ms=as_of, **CRITERIA).usable is usable


def test_choose_takes_the_newest_usable() -> None:
    """Scenario: three snapshots, the newest holds versions after T. We expect the newest of the other two."""
    from pathlib import Path

    old = Snapshot(Path("a"), manifest(next_offsets={0: 1, 1: 1, 2: 1}, max_valid_from_ms=10))
    mid = Snapshot(Path("b"), manifest(next_offsets={0: 5, 1: 5, 2: 5}, max_valid_from_ms=900))
    new = Snapshot(Path("c"), manifest(next_offsets={0: 9, 1: 9, 2: 9}, max_valid_from_ms=2000))
    assert choose_snapshot([old, new, mid], mode="as-of", as_of_ms=1000, **CRITERIA) is mid
    assert choose_snapshot([old, new, mid], mode="as-of", as_of_ms=5, **CRITERIA) is None


@settings(max_examples=25, deadline=None)
@given(
    t0_frac=st.floats(0.0, 1.0),
    gap_ms=st.integers(0, 2 * 86_400_000),
    view=st.sampled_from(["order-status", "customer-summary", "product-sales"]),
)
def test_seeded_as_of_replay_equals_replay_from_zero(t0_frac: float, gap_ms: int, view: str) -> None:
    """Scenario: a snapshot built up to T0 (complete fold below offsets_for_times(T0 + 1)) seeds an as-of-T
    replay, T >= T0. We expect the same order rows, cut orders and changes as an as-of-T replay from zero."""
    t0 = START + int(t0_frac * (END - START))
    t = t0 + gap_ms
    stop = {p: offset_for_time(p, t + L + 1) for p in LOG}
    # The snapshot: everything before the first record after T0, folded completely.
    snap_next = {p: offset_for_time(p, t0 + 1) for p in LOG}
    snap, snap_out = fold(view, {p: (0, o) for p, o in snap_next.items()}, as_of_ms=None)
    assert snap.counters.max_valid_from_ms is None or snap.counters.max_valid_from_ms <= t0 <= t
    assert snapshot_verdict(
        manifest(view=view, next_offsets=snap_next, max_valid_from_ms=snap.counters.max_valid_from_ms),
        mode="as-of", as_of_ms=t, **{**CRITERIA, "view": view},
    ).usable
    seeded, seeded_out = fold(view, {p: (snap_next[p], max(stop[p], snap_next[p])) for p in LOG}, as_of_ms=t,
                              rows=copy.deepcopy(snap.rows))
    zero, zero_out = fold(view, {p: (0, stop[p]) for p in LOG}, as_of_ms=t)
    assert seeded.rows.in_memory() == zero.rows.in_memory()
    assert seeded.cut == zero.cut
    assert sorted(snap_out + seeded_out, key=lambda c: (c[5], c[6], c[0])) == sorted(zero_out, key=lambda c: (c[5], c[6], c[0]))


def test_a_full_snapshot_past_the_as_of_stop_is_still_exact() -> None:
    """Scenario: a complete snapshot of the whole log, and T at or after its max valid_from (so its offsets
    are past the as-of stop). We expect the seeded replay (nothing left to read) to equal the one from zero."""
    full, _ = fold("order-status", {p: (0, len(LOG[p])) for p in LOG}, as_of_ms=None)
    t = full.counters.max_valid_from_ms
    assert t is not None
    zero, _ = fold("order-status", {p: (0, offset_for_time(p, t + L + 1)) for p in LOG}, as_of_ms=t)
    assert zero.rows.in_memory() == full.rows.in_memory() and not zero.cut


def test_an_incomplete_snapshot_would_be_wrong_which_is_why_it_is_refused() -> None:
    """Scenario: an as-of-T1 output that cut orders, used for a later T2. We expect a different (wrong) result
    than from zero, and the rule to refuse it although its max valid_from is <= T2."""
    t1 = START + (END - START) // 3
    t2 = t1 + 86_400_000
    stop1 = {p: offset_for_time(p, t1 + L + 1) for p in LOG}
    stop2 = {p: offset_for_time(p, t2 + L + 1) for p in LOG}
    early, _ = fold("order-status", {p: (0, o) for p, o in stop1.items()}, as_of_ms=t1)
    assert early.cut, "the workload must have an order in flight at T1"
    wrong, _ = fold("order-status", {p: (stop1[p], stop2[p]) for p in LOG}, as_of_ms=t2, rows=copy.deepcopy(early.rows))
    right, _ = fold("order-status", {p: (0, o) for p, o in stop2.items()}, as_of_ms=t2)
    assert wrong.rows.in_memory() != right.rows.in_memory()
    verdict = snapshot_verdict(
        manifest(mode="as-of", as_of_ms=t1, next_offsets=stop1, max_valid_from_ms=early.counters.max_valid_from_ms,
                 complete=False, cut_orders=len(early.cut)),
        mode="as-of", as_of_ms=t2, **CRITERIA,
    )
    assert not verdict.usable and "incomplete" in verdict.reason
