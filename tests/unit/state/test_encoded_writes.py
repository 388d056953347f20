"""Per-order writes encoded apart (state.encoded_writes) leave the store exactly as apply does."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines.errors import UnknownViewError
from scripts.bench_synthetic import order_status_updates
from state import keys as K
from state.contracts import Position, ViewUpdate, WritableProjectionStore
from state.encoded_writes import encode_row_writes, latest_from_order_row
from state.errors import InvalidUpdateError
from state.records import StoredVersion, decode_latest
from state.rocks_store import RocksStore
from tests.unit.state.state_builders import counter_update, dump_store, order_update
from tests.unit.state.store_contract import StoreContractSuite


class EncodedApartWriter:
    """A WritableProjectionStore that applies per-order updates the way a replay worker and
    its writer do (encode apart, then :meth:`RocksStore.apply_encoded`); other calls go to
    ``apply``. The row's latest version is read from the store here, since the contract's
    tests write rows no fold made (e.g. a validFrom that goes back)."""

    def __init__(self, path: Path) -> None:
        self._store = RocksStore(path, wal=False)

    def _latest_of(self, view: str) -> Any:
        def latest_of(key: str) -> StoredVersion | None:
            raw = self._store._db.get(K.latest_key(view, key))
            return None if raw is None else decode_latest(raw)

        return latest_of

    def apply(self, updates: list[ViewUpdate], *, position: Position) -> int:
        views = {update.view for update in updates}
        if views != {"order-status"} or self._store._closed:  # a closed store refuses in apply
            return self._store.apply(updates, position=position)
        encoded = encode_row_writes(updates, stored_position=self._store.position(), latest_of=self._latest_of("order-status"))
        return self._store.apply_encoded([encoded], position=position)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class TestEncodedApartContract(StoreContractSuite):
    """The whole store contract, with every order-status apply encoded apart."""

    def open_store(self, path: Path) -> WritableProjectionStore:
        return EncodedApartWriter(path)  # type: ignore[return-value]  # the Protocol's methods are forwarded by __getattr__


def _latest_from(rows: dict[str, dict[str, Any]]) -> Callable[[str], StoredVersion | None]:
    """A row's latest version from order rows, as a replay worker derives it."""
    return lambda key: latest_from_order_row(rows.get(key))


def _tricky_updates() -> list[ViewUpdate]:
    """Interleaved orders with five versions each, then a later seq at an existing time (a
    replacement), a redelivery (a duplicate) and new orders, as one stream."""
    updates = list(order_status_updates(120, 5, position_topic="orders"))
    offset = len(updates)
    extra = []
    for i in range(0, 120, 7):
        key = f"o-{i:07d}"
        last: ViewUpdate = [u for u in updates if u.key == key][-1]
        extra.append(order_update(key, last.seq + 1, last.row_valid_from_ms, "CANCELLED", offset=offset))
        extra.append(last._replace(record_position=last.record_position._replace(offset=offset + 1)))  # type: ignore[union-attr]  # set by order_status_updates
        offset += 2
    extra += [order_update(f"new-{i}", 1, 5_000 + i, "PLACED", offset=offset + i) for i in range(30)]
    return updates + extra


def test_worker_encoded_batches_leave_the_store_as_apply_does(tmp_path: Path) -> None:
    """Scenario: the same order-status stream, in batches, applied by the store, and encoded apart
    with each row's latest version taken from the order rows (as a replay worker knows them),
    several batches committed together. We expect byte-identical databases and equal counts."""
    updates = _tricky_updates()
    batches = [updates[start : start + 53] for start in range(0, len(updates), 53)]
    applied = RocksStore(tmp_path / "applied", wal=False)
    for number, batch in enumerate(batches):
        applied.apply(batch, position={"orders": {0: number}})
    applied_counts = applied.counts
    applied.close()

    rows: dict[str, dict[str, Any]] = {}  # the fold's order rows, as the worker holds them
    encoded_store = RocksStore(tmp_path / "encoded", wal=False)
    pending = []
    for number, batch in enumerate(batches):
        before = dict(rows)
        pending.append(encode_row_writes(batch, stored_position={}, latest_of=_latest_from(before)))
        for update in batch:
            if update.seq > rows.get(update.key, {}).get("lastSeq", 0):
                rows[update.key] = dict(update.row)
        if number % 3 == 2 or number == len(batches) - 1:  # a writer commits several workers' batches at once
            encoded_store.apply_encoded(pending, position={"orders": {0: number}})
            pending = []
    encoded_counts = encoded_store.counts
    encoded_store.close()

    assert dump_store(tmp_path / "encoded") == dump_store(tmp_path / "applied")
    assert (encoded_counts.applied, encoded_counts.skipped_duplicate) == (applied_counts.applied, applied_counts.skipped_duplicate)
    assert encoded_counts.skipped_duplicate == len(range(0, 120, 7))


def test_a_counter_view_or_an_unknown_view_is_refused() -> None:
    """Scenario: updates of a re-keyed view, and of no view, given to the encoder. We expect a
    clear error and nothing encoded (only the store can re-derive a counter row)."""
    with pytest.raises(InvalidUpdateError, match="re-keyed"):
        encode_row_writes([counter_update("customer-summary", "c1", "o1", 1, 10, {"ordersPlaced": 1})], stored_position={}, latest_of=lambda key: None)
    with pytest.raises(UnknownViewError):
        unknown: ViewUpdate = order_update("o1", 1, 10, "PLACED", offset=0)
        encode_row_writes([unknown._replace(view="nope")], stored_position={}, latest_of=lambda key: None)


def test_batches_are_independent_of_commit_grouping(tmp_path: Path) -> None:
    """Scenario: random batch sizes, committed one by one vs all at once. We expect the same bytes."""
    updates = list(order_status_updates(50, 4, position_topic="orders"))
    rng = random.Random(3)
    cuts = sorted(rng.sample(range(1, len(updates)), 9))
    batches = [updates[a:b] for a, b in zip([0, *cuts], [*cuts, len(updates)], strict=True)]
    dumps = []
    for name, together in (("one", False), ("all", True)):
        rows: dict[str, dict[str, Any]] = {}
        store = RocksStore(tmp_path / name, wal=False)
        encoded = []
        for batch in batches:
            before = dict(rows)
            encoded.append(encode_row_writes(batch, stored_position={}, latest_of=_latest_from(before)))
            rows.update({u.key: dict(u.row) for u in batch})
            if not together:
                store.apply_encoded(encoded, position={"orders": {0: 1}})
                encoded = []
        if encoded:
            store.apply_encoded(encoded, position={"orders": {0: 1}})
        store.close()
        dumps.append(dump_store(tmp_path / name))
    assert dumps[0] == dumps[1] and len(dumps[0]) > 4 * 50
