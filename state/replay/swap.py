"""Served view directories and the atomic swap.

Each view's served directory is named by a symlink::

    <views root>/<view>/current  -> gen-1732312345678-3f9a1c2e   (the served replay output)
    <views root>/<view>/previous -> gen-1732300000000-0b1c2d3e   (the one before: rollback)
    <views root>/<view>/gen-.../                                  (replay outputs)

A reader opens ``current`` (the path resolves once, at open): it keeps reading the
directory it opened even after a swap, and sees the new one when it reopens.

A replay builds a new output beside the served one, never in it (:func:`build_paths`,
:func:`publish`), and :func:`swap_view` then flips the link. Old generations are deleted only
by :func:`prune` and never the current or previous one, because a reader that opened
a generation before a swap still reads its files.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import ReplayError, SwapError
from state.replay.output import fsync_dir, fsync_tree, read_manifest

__all__ = ["CURRENT", "PREVIOUS", "SwapResult", "served_dir", "new_generation_dir", "build_paths", "publish", "swap_view", "prune"]

CURRENT = "current"
PREVIOUS = "previous"
_GENERATION = "gen-"


@dataclass(frozen=True)
class SwapResult:
    """What a swap did: the directory now served, and the one served before (None: none)."""

    view: str
    current: Path
    previous: Path | None


def served_dir(views_root: Path, view: str) -> Path | None:
    """The directory ``current`` names for ``view`` (resolved), or None when nothing is served."""
    link = Path(views_root) / view / CURRENT
    return link.resolve() if link.is_symlink() else None


def new_generation_dir(views_root: Path, view: str) -> Path:
    """A fresh, unused output path ``<root>/<view>/gen-<ms>-<id>`` (not created)."""
    return Path(views_root) / view / f"{_GENERATION}{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"


def build_paths(target: Path) -> Path:
    """The temporary directory a build of ``target`` happens in: ``<target>.tmp``, beside it.

    Beside it so :func:`publish`'s rename stays on one filesystem (rename is atomic only
    there). ``target`` must not exist; a leftover ``.tmp`` of a crashed build is removed.
    """
    target = Path(target)
    if target.exists():
        raise ReplayError(f"{target} exists: give --into a new directory (replay never builds over a view)")
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)  # a crashed build's leftovers: the name is reserved for builds of target
    tmp.parent.mkdir(parents=True, exist_ok=True)
    return tmp


def publish(tmp: Path, target: Path) -> None:
    """Make a finished build visible under its final name.

    1. fsync every file and directory of the build (data on disk before the name).
    2. rename ``<target>.tmp`` -> ``target`` (atomic: the output appears whole or not at all).
    3. fsync the parent directory (the rename itself survives a crash).
    """
    # Step 1
    fsync_tree(tmp)
    # Step 2
    os.replace(tmp, target)
    # Step 3
    fsync_dir(target.parent)


def _flip(link: Path, target: Path) -> None:
    """Point symlink ``link`` at ``target`` atomically: a new link under a temp name, then rename over."""
    relative = os.path.relpath(target, link.parent) if target.parent == link.parent else str(target)
    tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}")
    os.symlink(relative, tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def swap_view(views_root: Path, view: str, target: Path) -> SwapResult:
    """Serve ``target`` as ``view``; the old one stays on disk as ``previous``.

    1. Check ``target`` is a finished replay output of ``view`` and ``current`` is a symlink (or absent).
    2. Point ``previous`` at the currently served directory (rollback target).
    3. Flip ``current``: a new symlink under a temporary name, then ``os.replace`` over the
       old link. rename(2) replaces the link atomically: a reader resolves either the
       old or the new directory, never nothing.
    4. fsync the view directory so the flip survives a crash.
    """
    target = Path(target).resolve()
    base = Path(views_root) / view
    link = base / CURRENT
    # Step 1
    try:
        manifest = read_manifest(target)
    except ReplayError as exc:
        raise SwapError(f"refusing to serve {target}: {exc}") from exc
    if manifest.view != view:
        raise SwapError(f"refusing to serve {target} as {view}: it is a replay of {manifest.view}")
    if link.exists() and not link.is_symlink():
        raise SwapError(f"{link} is a real directory, not a link: move it away, then swap again")
    base.mkdir(parents=True, exist_ok=True)
    previous = served_dir(views_root, view)
    # Step 2
    if previous is not None and previous != target:
        _flip(base / PREVIOUS, previous)
    # Step 3
    _flip(link, target)
    # Step 4
    fsync_dir(base)
    return SwapResult(view, target, previous if previous != target else None)


def prune(views_root: Path, view: str) -> list[Path]:
    """Delete ``gen-*`` outputs of ``view`` that are neither current nor previous; return them."""
    base = Path(views_root) / view
    keep = {p for p in (served_dir(views_root, view), (base / PREVIOUS).resolve() if (base / PREVIOUS).is_symlink() else None) if p}
    removed = []
    for path in sorted(base.glob(_GENERATION + "*")):
        if path.resolve() not in keep and not path.name.endswith(".tmp"):
            shutil.rmtree(path)
            removed.append(path)
    return removed
