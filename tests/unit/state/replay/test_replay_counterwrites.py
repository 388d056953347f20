"""Counter views replayed through the sink into the replay's bulk writer (state.rocks_loader) leave the
store byte for byte as RocksStore.apply does: in-order and stepping-back changes, changes at the
latest version's time, any batch split, and a replay seeded with rows already stored."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from pipelines.projections import get_projection
from state.replay.fold import ViewFolder
from state.replay.sink import StoreSink
from state.rocks_loader import RocksLoader
from state.rocks_store import RocksStore
from tests.rocks_dump import dump_store

TOPIC = "orders"
T0 = 1_704_067_200_000


def _changes(view: str, n: int, seed: int) -> list[tuple[Any, ...]]:
    """FoldedChange tuples over 2 partitions, mostly rising in time, with repeated times (same
    order and across orders) and steps back; offsets rise per partition."""
    rnd = random.Random(seed)
    keys = [f"k{i}" for i in range(4)]
    offsets = [0, 0]
    t = T0
    out = []
    for i in range(n):
        step = rnd.choice([0, 0, 1, 5, 20, -30])
        t += step
        key = rnd.choice(keys)
        if view == "product-sales":
            delta = {"unitsOrdered": rnd.randint(1, 3), "revenueMinor": rnd.randint(-500, 900)}
        else:
            delta = {"ordersPlaced": 1, "openOrders": 1, "lifetimeValueMinor": rnd.randint(-500, 900)}
        partition = rnd.randint(0, 1)
        order = f"o{rnd.randint(0, 9)}"
        out.append((key, delta, order, i + 1, t, partition, offsets[partition]))
        offsets[partition] += 1
    return out


def _replay(path: Path, view: str, phases: list[list[tuple[Any, ...]]], batch: int, *, loader: bool,
            lateness_ms: int, max_held: int) -> int:
    """Each phase: a replay into the same store, seeded with the folder rows the previous one left.
    Returns how many versions the store re-derived (changes that stepped back)."""
    rederived = 0
    rows: dict[str, Any] = {}
    starts = {0: 0, 1: 0}
    for changes in phases:
        store = RocksLoader(path) if loader else RocksStore(path)
        folder = ViewFolder(get_projection(view), rows={k: dict(v) for k, v in rows.items()})
        stops = {p: max([c[6] + 1 for c in changes if c[5] == p], default=starts[p]) for p in (0, 1)}
        sink = StoreSink(store, view=view, topic=TOPIC, start_offsets=starts, stop_offsets=stops, view_folder=folder,
                         max_lateness_ms=lateness_ms, batch_updates=3, max_held=max_held)
        max_ts: dict[int, int] = {}
        for start in range(0, len(changes), batch):
            chunk = changes[start : start + batch]
            next_offsets = {}
            for c in chunk:
                next_offsets[c[5]] = c[6] + 1
                max_ts[c[5]] = max(max_ts.get(c[5], c[4]), c[4])
            sink.add(list(chunk), next_offsets, dict(max_ts))
        sink.next_offsets.update(stops)
        sink.flush(final=True)
        rederived += store.counts.rederived_versions
        store.close()
        rows, starts = folder.rows, stops
    return rederived


@pytest.mark.parametrize("view", ["product-sales", "customer-summary"])
@pytest.mark.parametrize(("batch", "lateness_ms", "max_held"), [(1, 50, 1000), (4, 50, 1000), (7, 0, 1000), (5, 50, 3), (50, 10, 8)])
def test_the_loader_writes_what_the_store_writes(tmp_path: Path, view: str, batch: int, lateness_ms: int, max_held: int) -> None:
    """Scenario: the same changes replayed in two phases (the second seeded) into each writer. We expect the same bytes."""
    changes = _changes(view, 120, seed=batch * 31 + max_held)
    phases = [changes[:70], changes[70:]]
    _replay(tmp_path / "plain", view, phases, batch, loader=False, lateness_ms=lateness_ms, max_held=max_held)
    _replay(tmp_path / "loaded", view, phases, batch, loader=True, lateness_ms=lateness_ms, max_held=max_held)
    assert dump_store(tmp_path / "loaded") == dump_store(tmp_path / "plain")


def test_stepping_back_changes_are_rederived_by_the_store(tmp_path: Path) -> None:
    """Scenario: held changes released early (max_held 2, no lateness allowance), so some step back in time.
    We expect the loader to re-derive them (counted) and the position to reach every partition's end."""
    changes = _changes("customer-summary", 60, seed=7)
    assert _replay(tmp_path / "loaded", "customer-summary", [changes], 10, loader=True, lateness_ms=0, max_held=2) > 0
    store = RocksStore(tmp_path / "loaded")
    try:
        assert store.position() == {TOPIC: {p: max(c[6] for c in changes if c[5] == p) + 1 for p in (0, 1)}}
    finally:
        store.close()
