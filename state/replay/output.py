"""A replay output directory: its layout, its manifest, and the file operations it needs.

Layout (names in one place)::

    DIR/view/           the view store (state.rocks_store: every version of every row)
    DIR/fold/           the fold state (:mod:`state.replay.foldstate`): order rows, view rows
    DIR/manifest.json   what was folded: position, watermark, mode, completeness, counters

The manifest is written last, after everything else is on disk: a directory without
one is not a replay output (a build that did not finish).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from state.errors import ReplayError
from state.replay.plan import ReplayMode

__all__ = [
    "VIEW_DIR",
    "FOLD_DIR",
    "MANIFEST_NAME",
    "MANIFEST_FORMAT",
    "ReplayManifest",
    "write_manifest",
    "read_manifest",
    "fold_fingerprint",
    "fsync_tree",
    "fsync_dir",
    "linked_copy",
]

VIEW_DIR = "view"
FOLD_DIR = "fold"
MANIFEST_NAME = "manifest.json"
#: Bump when the manifest's fields change meaning; older manifests are then refused.
MANIFEST_FORMAT = 1

_FOLD_CODE = ("pipelines/projections", "pipelines/kernel.py", "state/replay/fold.py")


@dataclass(frozen=True)
class ReplayManifest:
    """What a replay output holds. Offsets are next_offsets of ``topic``.

    * ``next_offsets``: the position: every record below it was read (and folded, or
      counted as beyond the as-of bound).
    * ``max_valid_from_ms``: the greatest validFrom of any transition folded in (None: none).
      Every version and change in the output is valid from at most this time.
    * ``complete``: True when every accepted event below ``next_offsets`` is folded in,
      i.e. no order was cut by an as-of bound (``cut_orders == 0``). Only a complete output
      can seed another replay (see :mod:`state.snapshots`).
    * ``watermark_ms``: event-time low watermark: every event with occurredAt <= it that
      was in the log when the replay was planned has been read (None: unknown). As of T it
      is T; to the end, the greatest record timestamp read; up to T, None
      (:func:`state.replay.engine._watermark_ms`).
    * ``fold_fingerprint``: hash of the fold code; an output of other code never seeds a replay.
    """

    view: str
    topic: str
    partitions: int
    mode: ReplayMode
    as_of_ms: int | None
    next_offsets: Mapping[int, int]
    max_timestamp_ms: Mapping[int, int]
    watermark_ms: int | None
    max_valid_from_ms: int | None
    complete: bool
    cut_orders: int
    fold_fingerprint: str
    counters: Mapping[str, Any] = field(default_factory=dict)
    created_at_ms: int = 0
    seeded_from: str | None = None
    format: int = MANIFEST_FORMAT

    def position(self) -> dict[str, dict[int, int]]:
        """``{topic: {partition: next_offset}}``."""
        return {self.topic: dict(self.next_offsets)}

    def to_json(self) -> bytes:
        """Pretty JSON (partition numbers become string keys)."""
        data = asdict(self)
        data["next_offsets"] = {str(p): o for p, o in sorted(self.next_offsets.items())}
        data["max_timestamp_ms"] = {str(p): t for p, t in sorted(self.max_timestamp_ms.items())}
        return json.dumps(data, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ReplayManifest:
        """Inverse of :meth:`to_json`; ReplayError for another format or missing fields."""
        try:
            raw = json.loads(data)
            if raw.get("format") != MANIFEST_FORMAT:
                raise ReplayError(f"manifest format {raw.get('format')} is not {MANIFEST_FORMAT}")
            raw["next_offsets"] = {int(p): int(o) for p, o in raw["next_offsets"].items()}
            raw["max_timestamp_ms"] = {int(p): int(t) for p, t in raw["max_timestamp_ms"].items()}
            return cls(**raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ReplayError(f"unreadable replay manifest: {exc}") from exc


def fold_fingerprint(root: Path | None = None) -> str:
    """SHA-256 (hex, 16 chars) of the source of the fold code: projections and the replay fold.

    Any edit, even to a comment, gives another fingerprint: conservative on purpose, since
    a snapshot folded by other code could silently disagree with a replay by this code.
    """
    base = root or Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for entry in _FOLD_CODE:
        path = base / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(base)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def fsync_dir(path: Path) -> None:
    """fsync a directory, so a rename or new entry in it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file and directory under ``path`` (bottom-up), and ``path`` itself."""
    for dirpath, _, filenames in os.walk(path, topdown=False):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def write_manifest(directory: Path, manifest: ReplayManifest) -> None:
    """Write ``directory/manifest.json`` atomically: temp file, fsync, rename, fsync the directory."""
    if not manifest.created_at_ms:
        manifest = ReplayManifest(**{**asdict(manifest), "created_at_ms": int(time.time() * 1000)})
    tmp = directory / (MANIFEST_NAME + ".tmp")
    with open(tmp, "wb") as out:
        out.write(manifest.to_json())
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, directory / MANIFEST_NAME)
    fsync_dir(directory)


def read_manifest(directory: Path) -> ReplayManifest:
    """The manifest of replay output ``directory``; ReplayError if there is none."""
    path = Path(directory) / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ReplayError(f"{directory} is not a replay output (no {MANIFEST_NAME})") from exc
    return ReplayManifest.from_json(data)


def _link_or_copy(src: str, dst: str) -> None:
    # RocksDB never rewrites a table file (*.sst, *.blob) in place, so a hard link is a safe,
    # free copy; every other file (MANIFEST, CURRENT, OPTIONS, WAL, JSON) is copied.
    if src.endswith((".sst", ".blob")):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another filesystem, or links not allowed: copy
    shutil.copy2(src, dst)


def linked_copy(src: Path, dst: Path) -> None:
    """Copy directory ``src`` (closed RocksDB directories and files) to new directory ``dst``."""
    shutil.copytree(src, dst, copy_function=_link_or_copy)

