"""Spilling order rows (state.replay.orderrows) changes where rows live, never what the fold decides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.projections import get_projection
from schemas.fast_decode import FastDecoder
from state.replay.fold import OrderFolder
from state.replay.foldstate import FoldStateDB
from state.replay.orderrows import OrderRows
from tests.unit.state.replay.test_replay_rowwrites import _log


def _fold(rows: OrderRows, view: str) -> tuple[OrderFolder, list[tuple[Any, ...]]]:
    folder = OrderFolder(get_projection(view), topic="orders", decode=FastDecoder().decode, rows=rows)
    out: list[tuple[Any, ...]] = []
    log = _log()
    for start in range(0, len(log), 2):
        folder.fold(log[start : start + 2], out)
    return folder, out


def test_a_fold_that_spills_every_row_decides_the_same(tmp_path: Path) -> None:
    memory, expected = _fold(OrderRows(), "customer-summary")
    spilling = OrderRows(tmp_path / "spill", max_in_memory=1)
    folder, out = _fold(spilling, "customer-summary")
    assert out == expected
    assert folder.counters == memory.counters
    assert spilling.spilled > 3  # rows went to disk and came back
    spilling.close()
    spill = FoldStateDB(tmp_path / "spill", read_only=True)
    try:
        assert spill.order_rows(0) == memory.rows.in_memory()
    finally:
        spill.close()


def test_rows_not_changed_are_read_from_the_seed_and_not_saved(tmp_path: Path) -> None:
    seed = FoldStateDB(tmp_path / "seed")
    seed.put_order_rows(0, {"x": {"orderId": "x", "lastSeq": 9}})
    seed.close()
    seed = FoldStateDB(tmp_path / "seed", read_only=True)
    rows = OrderRows(tmp_path / "spill", seed=seed)
    assert rows.get("x", 0) == {"orderId": "x", "lastSeq": 9}
    assert rows.get("x", 1) is None  # another partition's order
    rows.put("y", 0, {"orderId": "y"})
    rows.close()
    seed.close()
    spill = FoldStateDB(tmp_path / "spill", read_only=True)
    try:
        assert spill.order_rows(0) == {"y": {"orderId": "y"}}
    finally:
        spill.close()
