"""Order-status replayed through the sink leaves the same store however the log is split into worker
batches and store batches, and whether or not a snapshot seeded the replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.projections import get_projection
from schemas.fast_decode import FastDecoder
from state.replay.engine import default_store_opener
from state.replay.fold import OrderFolder, RawRecord
from state.replay.orderrows import OrderRows
from state.replay.sink import StoreSink
from tests.rocks_dump import dump_store
from tests.unit.state.replay.test_replay_fold import T0, event, records

TOPIC = "orders"


def _log() -> list[RawRecord]:
    """Three orders on one partition, interleaved: duplicates, a gap, a clock step back (same
    validFrom twice: the later seq replaces the version), a refund, and poison bytes."""
    a = [event("OrderPlaced", 1, T0 + 100, order_id="a"), event("PaymentAuthorized", 2, T0 + 200, order_id="a"),
         event("InventoryReserved", 3, T0 + 150, order_id="a"), event("OrderShipped", 4, T0 + 300, order_id="a"),
         event("OrderDelivered", 5, T0 + 400, order_id="a"), event("RefundIssued", 6, T0 + 500, order_id="a")]
    b = [event("OrderPlaced", 1, T0 + 120, order_id="b"), event("PaymentFailed", 2, T0 + 130, order_id="b"),
         event("OrderCancelled", 3, T0 + 140, order_id="b")]
    c = [event("OrderPlaced", 1, T0 + 110, order_id="c"), event("OrderShipped", 3, T0 + 115, order_id="c"),
         event("PaymentAuthorized", 2, T0 + 210, order_id="c")]
    items: list[Any] = []
    for i in range(6):
        for seq in (a, b, c):
            if i < len(seq):
                items.append(seq[i])
    items.insert(4, a[0])  # a duplicate
    items.insert(9, b"\x00not avro")
    out = []
    for offset, rec in enumerate(records(*items)):
        out.append(RawRecord(0, offset, rec.key(), rec.value(), rec.timestamp()[1]))
    return out


def _replay(path: Path, log: list[RawRecord], batch: int, *, store_batch: int, rows: OrderRows | None = None) -> OrderFolder:
    store = default_store_opener(path)  # as a replay opens it
    folder = OrderFolder(get_projection("order-status"), topic=TOPIC, decode=FastDecoder().decode, as_of_ms=None, rows=rows)
    sink = StoreSink(store, view="order-status", topic=TOPIC, start_offsets={0: log[0].offset()},
                     stop_offsets={0: log[-1].offset() + 1}, view_folder=None, batch_updates=store_batch)
    for start in range(0, len(log), batch):
        chunk = log[start : start + batch]
        out: list[tuple[Any, ...]] = []
        folder.fold(chunk, out)
        sink.add(out, {0: chunk[-1].offset() + 1}, {})
    sink.flush(final=True)
    store.close()
    return folder


@pytest.mark.parametrize(("batch", "store_batch"), [(1, 1), (2, 2), (5, 3), (100, 2)])
def test_the_store_does_not_depend_on_the_batches(tmp_path: Path, batch: int, store_batch: int) -> None:
    """Scenario: the log replayed in worker batches of ``batch`` records and store batches of about
    ``store_batch`` updates. We expect the bytes of one replay of the whole log in one batch."""
    log = _log()
    _replay(tmp_path / "whole", log, 100, store_batch=1000)
    _replay(tmp_path / "split", log, batch, store_batch=store_batch)
    assert dump_store(tmp_path / "split") == dump_store(tmp_path / "whole")


def test_a_seeded_replay_continues_the_store(tmp_path: Path) -> None:
    """Scenario: a snapshot's store and rows, continued by a second replay. We expect one replay of everything."""
    log = _log()
    _replay(tmp_path / "whole", log, 100, store_batch=1000)
    seed = _replay(tmp_path / "seeded", log[:8], 3, store_batch=2)
    _replay(tmp_path / "seeded", log[8:], 4, store_batch=2, rows=seed.rows)
    assert dump_store(tmp_path / "seeded") == dump_store(tmp_path / "whole")
