"""Partition store snapshots (pipelines.batch.snapshots): taken after commits, pruned, restored at or below an offset."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.batch.partition_store import PartitionStore
from pipelines.batch.snapshots import PartitionSnapshots


def _commit(store: PartitionStore, key: bytes, value: int, next_offset: int) -> None:
    store.put(key, {"v": value})
    store.commit(next_offset)


def test_snapshots_are_taken_once_per_offset_and_pruned_to_the_newest_two(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "state" / "p0")
    snapshots = PartitionSnapshots(tmp_path / "snaps")
    assert not snapshots.take("p0", store)  # nothing folded yet: nothing worth keeping
    for offset in (10, 20, 30):
        _commit(store, b"r1", offset, offset)
        assert snapshots.take("p0", store)
        assert not snapshots.take("p0", store)  # unchanged since
    assert snapshots.offsets("p0") == [20, 30]
    store.close()


def test_restore_takes_the_newest_snapshot_at_or_below_the_committed_offset(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "state" / "p0")
    snapshots = PartitionSnapshots(tmp_path / "snaps")
    _commit(store, b"r1", 1, 10)
    snapshots.take("p0", store)
    _commit(store, b"r1", 2, 20)
    snapshots.take("p0", store)
    store.put(b"r1", {"v": 3})  # staged, never committed: in no snapshot
    store.destroy()

    assert snapshots.restore("p0", tmp_path / "a", at_most=9) is None
    assert not (tmp_path / "a").exists()
    assert snapshots.restore("p0", tmp_path / "b", at_most=15) == 10  # 20 is past what the group committed
    assert snapshots.restore("p0", tmp_path / "c", at_most=25) == 20
    older, newer = PartitionStore(tmp_path / "b"), PartitionStore(tmp_path / "c")
    assert (older.applied, older.get(b"r1")) == (10, {"v": 1})
    assert (newer.applied, newer.get(b"r1")) == (20, {"v": 2})
    # A restored store is a store of its own: writing it leaves the snapshot as it was.
    _commit(newer, b"r1", 4, 21)
    newer.close()
    older.close()
    assert snapshots.restore("p0", tmp_path / "d", at_most=25) == 20
    again = PartitionStore(tmp_path / "d")
    assert again.get(b"r1") == {"v": 2}
    again.close()


def test_a_half_written_snapshot_is_never_restored(tmp_path: Path) -> None:
    snapshots = PartitionSnapshots(tmp_path / "snaps")
    (tmp_path / "snaps" / "p0" / ".tmp-abc").mkdir(parents=True)  # a crash while checkpointing
    assert snapshots.offsets("p0") == []
    assert snapshots.restore("p0", tmp_path / "x", at_most=100) is None


@pytest.mark.parametrize("name", ["p3", "r11"])
def test_stores_are_kept_apart_by_name(tmp_path: Path, name: str) -> None:
    store = PartitionStore(tmp_path / name)
    snapshots = PartitionSnapshots(tmp_path / "snaps")
    _commit(store, b"k", 1, 5)
    snapshots.take(name, store)
    store.close()
    assert snapshots.offsets(name) == [5]
    assert snapshots.offsets("p0") == []
