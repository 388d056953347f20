"""Snapshots: RocksDB checkpoints of a replay output, tagged with what they folded.

A snapshot is a copy of a replay output directory (:mod:`state.replay.output`): the view
store (every version), the fold state (every order row, and a re-keyed view's rows) and
the manifest (per-partition next offsets, event-time watermark, ``max_valid_from_ms``,
completeness). Layout: ``<snapshots root>/<view>/snap-<created ms>-<id>/``.

When a snapshot may seed a replay (the rule)
--------------------------------------------
Let S hold the fold of the records below its next offsets O, with ``max_valid_from_ms``
M. S may seed a replay of the same view, topic, partition count and fold code
(``fold_fingerprint``) iff S is **complete** (no order was cut: every accepted event
below O is folded in) and, by the replay's mode:

* ``to-end``: always (O never exceeds the high watermarks captured later);
* ``as-of`` T: **M <= T**;
* ``up-to`` T (building a snapshot at T): O <= the replay's stop offsets.

Why ``as-of`` T is exact (a snapshot-started replay equals a replay from offset zero):
every transition S folded has validFrom <= M <= T, so an as-of-T fold of the same
records from zero takes exactly the same decisions and cuts no order before O: its
state at O *is* S. Records in [O, stop) are then folded by the same prefix rule from
the same state. If O is past the as-of stop in some partition, the records S read
there have occurredAt > T (plan.py), and since M <= T none of them was accepted: they
changed nothing. Why completeness is needed: an output that cut an order at T_s has
dropped that order's transitions with validFrom in (T_s, ...], which an as-of-T replay
with T > T_s must include; and M <= T alone cannot tell (a cut transition is never
folded, so it never raises M). Such outputs are refused as snapshots.

So a snapshot for "as of T" must have been folded only up to times <= T: take it with
``rewind snapshot NAME --at T0`` (a complete fold of the records before
``offsets_for_times(T0 + 1)``, whose M <= T0), which serves every as-of T >= T0.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from state.errors import ReplayError, SnapshotError
from state.replay.foldstate import FoldStateDB
from state.replay.output import (
    FOLD_DIR,
    MANIFEST_NAME,
    VIEW_DIR,
    ReplayManifest,
    fsync_dir,
    fsync_tree,
    linked_copy,
    read_manifest,
)
from state.replay.plan import ReplayMode

__all__ = [
    "Snapshot",
    "SnapshotVerdict",
    "snapshot_verdict",
    "list_snapshots",
    "choose_snapshot",
    "take_snapshot",
    "restore_snapshot",
    "new_snapshot_dir",
]

_PREFIX = "snap-"


@dataclass(frozen=True)
class Snapshot:
    """One snapshot directory and its manifest."""

    path: Path
    manifest: ReplayManifest

    @property
    def snapshot_id(self) -> str:
        """The directory name, e.g. ``snap-1732312345678-3f9a1c2e``."""
        return self.path.name


@dataclass(frozen=True)
class SnapshotVerdict:
    """Whether a snapshot may seed a replay, and why (the reason names the rule that decided)."""

    usable: bool
    reason: str


def snapshot_verdict(
    manifest: ReplayManifest,
    *,
    view: str,
    topic: str,
    partitions: int,
    mode: ReplayMode,
    as_of_ms: int | None,
    stop_offsets: Mapping[int, int],
    fingerprint: str,
) -> SnapshotVerdict:
    """Apply the rule of this module's docstring to one snapshot manifest."""
    if (manifest.view, manifest.topic, manifest.partitions) != (view, topic, partitions):
        return SnapshotVerdict(False, f"of {manifest.view} on {manifest.topic} ({manifest.partitions} partitions)")
    if manifest.fold_fingerprint != fingerprint:
        return SnapshotVerdict(False, f"folded by other code ({manifest.fold_fingerprint} != {fingerprint})")
    if not manifest.complete:
        return SnapshotVerdict(False, f"incomplete: {manifest.cut_orders} orders cut at as-of {manifest.as_of_ms}")
    if mode == "as-of":
        assert as_of_ms is not None
        if manifest.max_valid_from_ms is not None and manifest.max_valid_from_ms > as_of_ms:
            return SnapshotVerdict(False, f"holds versions valid from {manifest.max_valid_from_ms} > as-of {as_of_ms}")
    elif mode == "up-to":
        beyond = {p: o for p, o in manifest.next_offsets.items() if o > stop_offsets.get(p, 0)}
        if beyond:
            return SnapshotVerdict(False, f"read past the stop offsets in partitions {sorted(beyond)}")
    return SnapshotVerdict(True, "complete, and every version it holds is visible at the target")


def list_snapshots(root: Path, view: str) -> list[Snapshot]:
    """Every finished snapshot of ``view`` under ``root`` (unfinished ``.tmp`` and unreadable ones skipped)."""
    base = Path(root) / view
    if not base.is_dir():
        return []
    out = []
    for path in sorted(base.iterdir()):
        if not path.name.startswith(_PREFIX) or path.name.endswith(".tmp"):
            continue
        try:
            out.append(Snapshot(path, read_manifest(path)))
        except ReplayError:
            continue
    return out


def choose_snapshot(snapshots: Iterable[Snapshot], **criteria: Any) -> Snapshot | None:
    """The newest usable snapshot (most records read), or None; ``criteria`` as in :func:`snapshot_verdict`."""
    usable = [s for s in snapshots if snapshot_verdict(s.manifest, **criteria).usable]
    if not usable:
        return None
    return max(usable, key=lambda s: (sum(s.manifest.next_offsets.values()), s.manifest.created_at_ms))


def new_snapshot_dir(snapshots_root: Path, view: str) -> Path:
    """A fresh, unused snapshot path ``<root>/<view>/snap-<ms>-<id>`` (not created)."""
    return Path(snapshots_root) / view / f"{_PREFIX}{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"


def take_snapshot(
    source: Path,
    *,
    snapshots_root: Path,
    checkpoint_store: Callable[[Path, Path], None],
) -> Snapshot:
    """Snapshot replay output ``source``; ``checkpoint_store(view_dir, dest)`` copies the view store.

    1. Read the source manifest; refuse an incomplete output (SnapshotError).
    2. Create ``<root>/<view>/snap-<ms>-<id>.tmp``.
    3. RocksDB checkpoint of the view store and of the fold state into it (SST files
       hard-linked: cheap, and the source keeps serving).
    4. Copy the manifest, fsync everything.
    5. Rename ``.tmp`` to its final name and fsync the parent: the snapshot appears whole or not at all.
    """
    # Step 1
    try:
        manifest = read_manifest(source)
    except ReplayError as exc:
        raise SnapshotError(str(exc)) from exc
    if not manifest.complete:
        raise SnapshotError(
            f"{source} cut {manifest.cut_orders} orders at as-of {manifest.as_of_ms}: it cannot seed other replays; "
            "snapshot a full replay, or use `rewind snapshot NAME --at T`"
        )
    # Step 2
    final = new_snapshot_dir(snapshots_root, manifest.view)
    base = final.parent
    base.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir()
    try:
        # Step 3
        checkpoint_store(source / VIEW_DIR, tmp / VIEW_DIR)
        fold = FoldStateDB(source / FOLD_DIR)
        try:
            fold.checkpoint(tmp / FOLD_DIR)
        finally:
            fold.close()
        # Step 4
        shutil.copy2(source / MANIFEST_NAME, tmp / MANIFEST_NAME)
        fsync_tree(tmp)
        # Step 5
        tmp.rename(final)
        fsync_dir(base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Snapshot(final, manifest)


def restore_snapshot(snapshot: Snapshot, into: Path) -> ReplayManifest:
    """Copy ``snapshot`` into new directory ``into`` (hard links for table files) and return its manifest."""
    if into.exists():
        raise SnapshotError(f"cannot restore {snapshot.snapshot_id} into {into}: it exists")
    into.mkdir(parents=True)
    linked_copy(snapshot.path / VIEW_DIR, into / VIEW_DIR)
    linked_copy(snapshot.path / FOLD_DIR, into / FOLD_DIR)
    shutil.copy2(snapshot.path / MANIFEST_NAME, into / MANIFEST_NAME)
    return snapshot.manifest
