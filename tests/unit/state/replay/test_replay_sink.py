"""The store sink: every version written, re-keyed changes in event-time order, positions never ahead."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pipelines.projections import get_projection
from state.contracts import Position, ViewUpdate, WritableProjectionStore
from state.memory_store import MemoryData, MemoryStore
from state.replay.engine import default_store_opener
from state.replay.fold import ViewFolder
from state.replay.sink import StoreSink

L = 100


class RecordingStore(MemoryStore):
    """The reference store, keeping every apply: (updates, the orders position)."""

    def __init__(self) -> None:
        super().__init__()
        self.applies: list[tuple[list[ViewUpdate], dict[int, int]]] = []

    def apply(self, updates: Sequence[ViewUpdate], *, position: Position) -> int:
        self.applies.append((list(updates), dict(position["orders"])))
        return super().apply(updates, position=position)


def change(key: str, valid_from: int, partition: int, offset: int, order: str) -> tuple[Any, ...]:
    return (key, {"ordersPlaced": 1, "openOrders": 1}, order, 1, valid_from, partition, offset)


def sink(store: RecordingStore, **kwargs: Any) -> StoreSink:
    return StoreSink(store, view="customer-summary", topic="orders", start_offsets={0: 0, 1: 0}, stop_offsets={0: 10, 1: 10},
                     view_folder=ViewFolder(get_projection("customer-summary")), max_lateness_ms=L, **kwargs)


def test_changes_are_released_in_valid_from_order_below_the_watermark() -> None:
    """Scenario: partition 1's batch is ahead in event time of partition 0's. We expect the store to get the
    customer's changes in valid_from order, and nothing a later record could still precede."""
    store = RecordingStore()
    s = sink(store, batch_updates=1)
    s.add([change("c", 1000, 1, 0, "b"), change("c", 1200, 1, 1, "d")], {1: 2}, {1: 1200})
    assert store.applies == []  # partition 0 has not reported: its changes could be earlier
    s.add([change("c", 900, 0, 0, "a"), change("c", 1150, 0, 1, "e")], {0: 2}, {0: 1150})
    # watermark = min(1150, 1200) - L = 1050: 900 and 1000 go, 1150 and 1200 wait.
    written = [u.change_valid_from_ms for a, _ in store.applies for u in a]
    assert written == [900, 1000]
    s.next_offsets.update({0: 10, 1: 10})
    s.flush(final=True)
    written = [u.change_valid_from_ms for a, _ in store.applies for u in a]
    assert written == [900, 1000, 1150, 1200]
    assert [u.row["ordersPlaced"] for a, _ in store.applies for u in a] == [1, 2, 3, 4]


def test_a_position_never_passes_a_change_held_back() -> None:
    """Scenario: changes held back while their partitions read on. We expect every apply's position to stay
    at or below the offset of every change written after it (the store would skip it otherwise)."""
    store = RecordingStore()
    s = sink(store, batch_updates=1)
    s.add([change("c", 5000, 0, 3, "a")], {0: 7}, {0: 5000})
    s.add([change("c", 100, 1, 2, "b")], {1: 5}, {1: 100})
    s.next_offsets.update({0: 10, 1: 10})
    s.flush(final=True)
    for i, (_, position) in enumerate(store.applies):
        for later, _ in store.applies[i + 1 :]:
            for u in later:
                assert u.record_position is not None and u.record_position.offset >= position[u.record_position.partition]
    assert store.applies[-1][1] == {0: 10, 1: 10}


def test_held_changes_are_bounded() -> None:
    """Scenario: one partition never reports, the other streams on. We expect the held changes capped
    (released early, out of order: the store stays exact, only re-derives)."""
    store = RecordingStore()
    s = sink(store, batch_updates=1, max_held=10)
    for i in range(30):
        s.add([change(f"c{i}", 1000 + i, 1, i, f"o{i}")], {1: i + 1}, {1: 1000 + i})
    assert sum(len(a) for a, _ in store.applies) >= 20
    assert all(p[0] == 0 for _, p in store.applies)  # partition 0 never moved


def test_order_status_rows_are_versions_as_they_come() -> None:
    """Scenario: order-status (keyed by order, partition-local). We expect one update per change, the row's
    validFrom as the version time, in arrival order, and the batch's next_offsets as the position."""
    store = RecordingStore()
    s = StoreSink(store, view="order-status", topic="orders", start_offsets={0: 0}, view_folder=None)
    rows = [{"orderId": "o", "status": "PLACED", "lastSeq": 1, "validFrom": 50}, {"orderId": "o", "status": "PAID", "lastSeq": 2, "validFrom": 50}]
    s.add([("o", rows[0], "o", 1, 50, 0, 3), ("o", rows[1], "o", 2, 50, 0, 4)], {0: 5}, {0: 50})
    s.flush()
    (updates, position), = store.applies
    assert [(u.seq, u.row_valid_from_ms, u.delta) for u in updates] == [(1, 50, None), (2, 50, None)]
    assert position == {0: 5}


T0 = 1_704_067_200_000


def _changes(view: str, n: int, seed: int) -> list[tuple[Any, ...]]:
    """FoldedChange tuples over 2 partitions, mostly rising in time, with repeated times (same
    order and across orders) and steps back; offsets rise per partition."""
    rnd = random.Random(seed)
    offsets = [0, 0]
    t = T0
    out = []
    for i in range(n):
        t += rnd.choice([0, 0, 1, 5, 20, -30])
        if view == "product-sales":
            delta = {"unitsOrdered": rnd.randint(1, 3), "revenueMinor": rnd.randint(-500, 900)}
        else:
            delta = {"ordersPlaced": 1, "openOrders": 1, "lifetimeValueMinor": rnd.randint(-500, 900)}
        partition = rnd.randint(0, 1)
        out.append((f"k{rnd.randint(0, 3)}", delta, f"o{rnd.randint(0, 9)}", i + 1, t, partition, offsets[partition]))
        offsets[partition] += 1
    return out


def _replay(store_at: Any, view: str, phases: list[list[tuple[Any, ...]]], batch: int, *, lateness_ms: int, max_held: int) -> None:
    """Each phase: a replay into the same store (``store_at()`` opens it), seeded with the rows the previous one left."""
    rows: dict[str, Any] = {}
    starts = {0: 0, 1: 0}
    for changes in phases:
        store: WritableProjectionStore = store_at()
        folder = ViewFolder(get_projection(view), rows={k: dict(v) for k, v in rows.items()})
        stops = {p: max([c[6] + 1 for c in changes if c[5] == p], default=starts[p]) for p in (0, 1)}
        s = StoreSink(store, view=view, topic="orders", start_offsets=starts, stop_offsets=stops, view_folder=folder,
                      max_lateness_ms=lateness_ms, batch_updates=3, max_held=max_held)
        max_ts: dict[int, int] = {}
        for start in range(0, len(changes), batch):
            chunk = changes[start : start + batch]
            next_offsets = {}
            for c in chunk:
                next_offsets[c[5]] = c[6] + 1
                max_ts[c[5]] = max(max_ts.get(c[5], c[4]), c[4])
            s.add(list(chunk), next_offsets, dict(max_ts))
        s.next_offsets.update(stops)
        s.flush(final=True)
        store.close()
        rows, starts = folder.rows, stops


@pytest.mark.parametrize("view", ["product-sales", "customer-summary"])
@pytest.mark.parametrize(("batch", "lateness_ms", "max_held"), [(1, 50, 1000), (4, 50, 1000), (7, 0, 1000), (5, 50, 3), (50, 10, 8)])
def test_a_counter_replay_into_rocksdb_answers_as_the_reference_store(tmp_path: Path, view: str, batch: int, lateness_ms: int,
                                                                     max_held: int) -> None:
    """Scenario: counter changes stepping back in time, released early (small max_held) or late, in two
    phases (the second seeded), into the replay's RocksDB store and into the in-memory reference store.
    We expect every key's history and the position to be the same in both."""
    changes = _changes(view, 120, seed=batch * 31 + max_held)
    phases = [changes[:70], changes[70:]]
    disk = MemoryData()
    _replay(lambda: default_store_opener(tmp_path / "rocks"), view, phases, batch, lateness_ms=lateness_ms, max_held=max_held)
    _replay(lambda: MemoryStore(disk), view, phases, batch, lateness_ms=lateness_ms, max_held=max_held)
    rocks, reference = default_store_opener(tmp_path / "rocks"), MemoryStore(disk)
    try:
        assert rocks.position() == reference.position() == {"orders": {p: max(c[6] for c in changes if c[5] == p) + 1 for p in (0, 1)}}
        for key in ("k0", "k1", "k2", "k3"):
            got = [(v.valid_from_ms, v.valid_to_ms, dict(v.row)) for v in rocks.history(view, key)]
            assert got == [(v.valid_from_ms, v.valid_to_ms, dict(v.row)) for v in reference.history(view, key)], key
    finally:
        rocks.close()
