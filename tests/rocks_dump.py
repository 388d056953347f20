"""Every key and value of a closed RocksStore directory, for byte-identity tests."""

from __future__ import annotations

from pathlib import Path

from state.rocks_open import raw_items
from state.rocks_store import RocksStore

__all__ = ["dump_store"]


def dump_store(path: Path) -> dict[bytes, bytes]:
    """Open the store at ``path``, read all of it, close it."""
    store = RocksStore(path)
    try:
        return dict(raw_items(store._db, from_key=b""))
    finally:
        store.close()
