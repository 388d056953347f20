"""The RocksDB store against the reusable contract suite, plus what only RocksDB has (read-only open, format check)."""

from __future__ import annotations

from pathlib import Path

import pytest

from state import keys as K
from state.contracts import ReadOnlyView, WritableProjectionStore
from state.errors import StoreFormatError, StoreNotFoundError
from state.rocks_store import RocksReadOnlyStore, RocksStore, open_store
from tests.unit.state.state_builders import ORDER_TOPIC, order_update
from tests.unit.state.store_contract import StoreContractSuite


class TestRocksStoreContract(StoreContractSuite):
    def open_store(self, path: Path) -> WritableProjectionStore:
        return RocksStore(path)


class TestRocksStoreWithoutWalContract(StoreContractSuite):
    """As a replay builds its view store (state.replay.engine.default_store_opener)."""

    def open_store(self, path: Path) -> WritableProjectionStore:
        return RocksStore(path, wal=False)


def test_read_only_open_sees_the_data_and_cannot_write(tmp_path: Path) -> None:
    """Scenario: a writer applies, a read-only open follows while the writer is still open. We expect reads to work and no write method."""
    writer = open_store(tmp_path / "s")
    writer.apply([order_update("o1", 1, 100, "PLACED", offset=0)], position={ORDER_TOPIC: {0: 1}})
    reader = open_store(tmp_path / "s", read_only=True)
    try:
        assert isinstance(reader, RocksReadOnlyStore) and isinstance(reader, ReadOnlyView)
        assert not hasattr(reader, "apply")
        assert reader.get("order-status", "o1") is not None
        assert reader.position() == {ORDER_TOPIC: {0: 1}}
    finally:
        reader.close()
        writer.close()


def test_read_only_open_of_a_missing_store(tmp_path: Path) -> None:
    """Scenario: no store in the directory. We expect StoreNotFoundError, and no directory created."""
    with pytest.raises(StoreNotFoundError):
        open_store(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()


def test_a_store_of_another_format_refuses_to_open(tmp_path: Path) -> None:
    """Scenario: the format key says 9. We expect StoreFormatError telling to rebuild, for writers and readers."""
    store = open_store(tmp_path / "s")
    store._db.put(K.NS_META + K.lp(K.META_FORMAT), b"9")  # simulating an old build's store
    store.close()
    with pytest.raises(StoreFormatError, match="rebuild"):
        open_store(tmp_path / "s")
    with pytest.raises(StoreFormatError, match="rebuild"):
        open_store(tmp_path / "s", read_only=True)


def test_checkpoint_copies_data_and_position_together(tmp_path: Path) -> None:
    """Scenario: a checkpoint of a store. We expect the copy to open with the same rows and position."""
    store = open_store(tmp_path / "s")
    store.apply([order_update("o1", 1, 100, "PLACED", offset=0)], position={ORDER_TOPIC: {0: 1}})
    store.checkpoint(tmp_path / "copy")
    store.close()
    copy = open_store(tmp_path / "copy", read_only=True)
    try:
        assert copy.position() == {ORDER_TOPIC: {0: 1}} and copy.get("order-status", "o1") is not None
    finally:
        copy.close()
