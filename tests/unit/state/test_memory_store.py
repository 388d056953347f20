"""The in-memory reference store (state.memory_store) against the reusable contract suite."""

from __future__ import annotations

from pathlib import Path

from state.contracts import WritableProjectionStore
from state.memory_store import MemoryData, MemoryStore
from tests.unit.state.store_contract import StoreContractSuite


class TestMemoryStoreContract(StoreContractSuite):
    """Each path is a "disk": a store opened on it again continues what the closed one held."""

    def open_store(self, path: Path) -> WritableProjectionStore:
        disks: dict[Path, MemoryData] = self.__dict__.setdefault("_disks", {})
        return MemoryStore(disks.setdefault(path, MemoryData()))
