"""The replay's bulk writer (state.rocks_loader): the contract suite, and the very bytes of RocksStore.apply."""

from __future__ import annotations

import dataclasses
from itertools import pairwise
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.projections import Change, get_projection
from state.contracts import SourcePosition, ViewUpdate, WritableProjectionStore
from state.rocks_loader import RocksLoader
from state.rocks_store import RocksStore
from tests.rocks_dump import dump_store
from tests.unit.state.state_builders import ORDER_TOPIC, order_update
from tests.unit.state.store_contract import StoreContractSuite

CS = "customer-summary"
PS = "product-sales"


class TestRocksLoaderContract(StoreContractSuite):
    def open_store(self, path: Path) -> WritableProjectionStore:
        return RocksLoader(path)


#: Event time steps: mostly forward, often none (the same time again), sometimes back.
_STEPS_MS = (0, 0, 10, 20, -30)


def _times(draws: list[tuple[int, int, int, int, int]]) -> list[int]:
    t = 1000
    out = []
    for _, step, _, _, _ in draws:
        t += _STEPS_MS[step]
        out.append(t)
    return out


def _counter_stream(view: str, draws: list[tuple[int, int, int, int, int]]) -> list[ViewUpdate]:
    """Counter updates of 3 keys: (key, time step, amount, how its row is published, redelivery of an earlier one).

    Rows are folded in arrival order, as the replay sink and the live pipeline publish them; some
    are published empty, one in five off by a few units (a compacted history: the store corrects it).
    """
    projection = get_projection(view)
    field = "lifetimeValueMinor" if view == CS else "revenueMinor"
    rows: dict[str, dict[str, Any]] = {}
    out: list[ViewUpdate] = []
    for i, ((key_no, _, amount, published, again), t) in enumerate(zip(draws, _times(draws), strict=True)):
        if again > 4 and out:
            out.append(out[again % len(out)])
            continue
        key = f"k{key_no}"
        delta = {field: amount}
        row = projection.apply(rows.get(key), Change(key, delta, f"o{i % 4}", i, t))
        rows[key] = row
        shown: dict[str, Any] = {} if published == 0 else {**row, field: row[field] + 7} if published == 4 else dict(row)
        source = SourcePosition("orders", i % 2, i)
        out.append(ViewUpdate(view, key, shown, row["validFrom"], t, delta, f"o{i % 4}", i, source, None))
    return out


def _order_stream(draws: list[tuple[int, int, int, int, int]]) -> list[ViewUpdate]:
    """Order-status updates of 3 orders: seqs mostly rising (some repeated: duplicates), times rising or stepping back."""
    seqs: dict[str, int] = {}
    out: list[ViewUpdate] = []
    for i, ((key_no, _, status_no, step, _), t) in enumerate(zip(draws, _times(draws), strict=True)):
        key = f"o{key_no}"
        seq = max(1, seqs.get(key, 0) + step % 3)  # + 0: the same seq again (a duplicate); + 2: a gap
        seqs[key] = max(seqs.get(key, 0), seq)
        update = order_update(key, seq, t, ("PLACED", "SHIPPED", "CANCELLED")[status_no % 3], offset=i)
        out.append(dataclasses.replace(update, record_position=None))
    return out


_DRAW = st.tuples(st.integers(0, 2), st.integers(0, len(_STEPS_MS) - 1), st.integers(-50, 90), st.integers(0, 4), st.integers(0, 6))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(draws=st.lists(_DRAW, min_size=1, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=5), reopen=st.integers(0, 6),
       views=st.sampled_from([("order-status",), (CS,), (PS,), ("order-status", CS)]))
def test_the_loader_writes_the_bytes_rocks_store_writes(
    tmp_path_factory: Any, draws: list[tuple[int, int, int, int, int]], cuts: list[int], reopen: int, views: tuple[str, ...]
) -> None:
    """Scenario: the same updates (duplicates, redeliveries, valid_from stepping back, counter changes out of
    time order or at the latest version's time, published rows needing a correction) in the same applies,
    the writers closed and reopened after one of them. We expect both directories to hold the same bytes."""
    updates: list[ViewUpdate] = []
    for view in views:
        updates += _order_stream(draws) if view == "order-status" else _counter_stream(view, draws)
    bounds = sorted({min(c, len(updates)) for c in cuts} | {0, len(updates)})
    chunks = [updates[lo:hi] for lo, hi in pairwise(bounds)]
    work = tmp_path_factory.mktemp("same-bytes")
    counts = {}
    for name, opener in (("store", RocksStore), ("loader", RocksLoader)):
        store: RocksStore | RocksLoader = opener(work / name)
        applied = 0
        for i, chunk in enumerate(chunks):
            if i == reopen:  # a seeded build: the loader reads the keys it did not write from the directory
                store.close()
                store = opener(work / name)
            applied += store.apply(chunk, position={ORDER_TOPIC: {0: i + 1}})
        c = store.counts
        counts[name] = (applied, c.skipped_duplicate, c.clamped_valid_from, c.rederived_versions, c.corrections)
        store.close()
    assert dump_store(work / "loader") == dump_store(work / "store")
    assert counts["loader"] == counts["store"]


def test_a_loaders_directory_reopens_with_the_ordinary_options(tmp_path: Path) -> None:
    """Scenario: a loader (vector memtable: cheap appends, reads that sort it) writes and closes.
    We expect the directory's saved options to be the skiplist memtable every later opener needs."""
    loader = RocksLoader(tmp_path / "s")
    loader.apply([order_update("o1", 1, 100, "PLACED", offset=0)], position={ORDER_TOPIC: {0: 1}})
    loader.close()
    newest = max((tmp_path / "s").glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1]))
    assert "SkipListFactory" in newest.read_text()
    reader = RocksStore(tmp_path / "s")
    try:
        assert reader.position() == {ORDER_TOPIC: {0: 1}} and reader.get("order-status", "o1") is not None
    finally:
        reader.close()


def test_a_change_before_the_latest_version_is_re_derived_after_a_flush(tmp_path: Path) -> None:
    """Scenario: a counter change earlier than its row's latest version, then a later one of the same key.
    We expect the first re-derived through the store's own path (counted), the second encoded again."""
    projection = get_projection(CS)
    loader = RocksLoader(tmp_path / "s")
    try:
        row: dict[str, Any] | None = None
        for i, t in enumerate([300, 500, 400, 600]):
            delta = {"lifetimeValueMinor": 10 ** i}
            row = projection.apply(row, Change("c1", delta, f"o{i}", 1, t))
            loader.apply([ViewUpdate(CS, "c1", {}, t, t, delta, f"o{i}", 1, SourcePosition("orders", 0, i), None)], position={})
        assert loader.counts.rederived_versions == 1  # the version at 500, re-derived by the change at 400
        assert [(v.valid_from_ms, v.row["lifetimeValueMinor"]) for v in loader.history(CS, "c1")] == [
            (300, 1), (400, 101), (500, 111), (600, 1111)]
    finally:
        loader.close()
