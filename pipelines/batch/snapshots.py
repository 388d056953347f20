"""Snapshots of the batch engine's partition stores, kept apart from the state directory.

A snapshot is a RocksDB checkpoint of one partition store taken right after a checkpoint's
step 6 (:mod:`pipelines.batch.engine`), so it holds exactly the rows folded from the
records below its ``applied`` offset (the store's own ``m:applied`` key says which). A
store whose directory is gone (a lost disk, or a partition new to this instance) starts
from the newest snapshot at or below the group's committed offset and refolds only the
tail, muted, instead of the whole log from its start.

Layout: ``<root>/<store name>/<applied, 20 digits>/``, e.g. ``.../p3/00000000000000120000``.
A snapshot is built under a temporary name and renamed into place, so a directory with a
final name is always complete. The newest :data:`KEEP` per store are kept. The root is
shared by the instances of one group on a machine (or a shared filesystem): a partition
that moves to another instance moves with its newest snapshot.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from pipelines.batch.partition_store import PartitionStore
from pipelines.errors import PipelineStateError

__all__ = ["PartitionSnapshots", "KEEP"]

log = logging.getLogger("rewind.batch")

#: Snapshots kept per partition store (the newest ones).
KEEP = 2
_TMP_PREFIX = ".tmp-"


class PartitionSnapshots:
    """Take, find and restore snapshots of partition stores under ``root`` (module docstring)."""

    def __init__(self, root: Path, *, keep: int = KEEP) -> None:
        self.root = root
        self._keep = keep
        #: Per store name, the ``applied`` of the newest snapshot this process knows of.
        self._newest: dict[str, int] = {}

    def offsets(self, name: str) -> list[int]:
        """The ``applied`` offsets of the complete snapshots of store ``name``, ascending."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(int(entry.name) for entry in folder.iterdir() if entry.name.isdigit())

    def take(self, name: str, store: PartitionStore) -> bool:
        """Snapshot ``store`` (no staged rows: call right after its commit) unless a snapshot at its
        ``applied`` exists already; prune to the newest :data:`KEEP`. True when one was taken."""
        applied = store.applied
        if applied == 0 or self._newest.get(name) == applied:
            return False
        folder = self.root / name
        final = folder / f"{applied:020d}"
        if final.exists():
            self._newest[name] = applied
            return False
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            store.checkpoint(tmp)
            os.rename(tmp, final)
        except OSError as exc:  # another instance renamed first (the same offset: the same content), or a full disk
            shutil.rmtree(tmp, ignore_errors=True)
            if not final.exists():
                raise PipelineStateError(f"cannot snapshot {store.path} into {final}: {exc}") from exc
        self._newest[name] = applied
        for old in self.offsets(name)[: -self._keep]:
            shutil.rmtree(folder / f"{old:020d}", ignore_errors=True)
        return True

    def restore(self, name: str, into: Path, *, at_most: int) -> int | None:
        """Make ``into`` (which must not exist) a copy of the newest snapshot of ``name`` whose ``applied``
        is at most ``at_most`` (the group's committed offset: a snapshot past it holds work the group
        never committed); its ``applied``, or None when there is none (``into`` is left alone)."""
        usable = [offset for offset in self.offsets(name) if offset <= at_most]
        if not usable:
            return None
        source = self.root / name / f"{usable[-1]:020d}"
        tmp = into.with_name(f"{_TMP_PREFIX}{into.name}-{uuid.uuid4().hex}")
        try:
            shutil.copytree(source, tmp, copy_function=_link_or_copy)
            os.rename(tmp, into)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise PipelineStateError(f"cannot restore snapshot {source} into {into}: {exc}") from exc
        self._newest[name] = usable[-1]
        return usable[-1]


def _link_or_copy(source: str, dest: str) -> None:
    """Hard-link a table file (RocksDB never changes an .sst once written); copy everything else
    (MANIFEST, WAL and CURRENT change, and must not change the snapshot's)."""
    if source.endswith(".sst"):
        try:
            os.link(source, dest)
            return
        except OSError:  # another filesystem: copy
            pass
    shutil.copy2(source, dest)
