"""Served view directories and the atomic swap.

Each view's served directory is named by a symlink::

    <views root>/<view>/current  -> gen-1732312345678-3f9a1c2e   (the served replay output)
    <views root>/<view>/previous -> gen-1732300000000-0b1c2d3e   (the one before: rollback)
    <views root>/<view>/gen-.../                                  (replay outputs)

A reader opens ``current`` (the path resolves once, at open): it keeps reading the
directory it opened even after a swap, and sees the new one when it reopens.

A replay builds a new output beside the served one, never in it (:func:`build_paths`,
:func:`publish`), and :func:`swap_view` then flips the link. Old generations are deleted only
by :func:`prune` (which ``swap_view(..., keep_generations=N)`` runs after the flip): it keeps
the newest N and never deletes the current or previous one, because a reader that opened
a generation before a swap still reads its files. Only replay outputs of the view are
generations: anything else under ``<view>/`` (a ``gen-*`` without a manifest of this view,
a file, a link, a ``.tmp`` build in progress) is never deleted.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import ConfigError
from state.errors import ReplayError, SwapError
from state.replay.output import fsync_dir, fsync_tree, read_manifest

__all__ = ["CURRENT", "PREVIOUS", "SwapResult", "served_dir", "new_generation_dir", "build_paths", "publish", "swap_view", "prune"]

CURRENT = "current"
PREVIOUS = "previous"
_GENERATION = "gen-"
#: A generation being deleted is first renamed to ``.pruning-<name>`` (a crash mid-delete
#: leaves that, removed by the next prune, never a half-deleted ``gen-*``).
_PRUNING = ".pruning-"
_GENERATION_MS = re.compile(r"gen-(\d+)")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwapResult:
    """What a swap did: the directory now served, the one served before (None: none), the generations pruned."""

    view: str
    current: Path
    previous: Path | None
    pruned: tuple[Path, ...] = ()


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


def swap_view(views_root: Path, view: str, target: Path, *, keep_generations: int | None = None) -> SwapResult:
    """Serve ``target`` as ``view``; the old one stays on disk as ``previous``.

    1. Check ``target`` is a finished replay output of ``view`` and ``current`` is a symlink (or absent).
    2. Point ``previous`` at the currently served directory (rollback target).
    3. Flip ``current``: a new symlink under a temporary name, then ``os.replace`` over the
       old link. rename(2) replaces the link atomically: a reader resolves either the
       old or the new directory, never nothing.
    4. fsync the view directory so the flip survives a crash.
    5. With ``keep_generations``, :func:`prune` the view's generations down to the newest
       that many (current and previous always kept). The swap has happened by then: a
       generation that cannot be deleted is logged and left for the next prune.
    """
    if keep_generations is not None:
        _check_keep(keep_generations)
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
    # Step 5
    pruned: list[Path] = []
    if keep_generations is not None:
        try:
            pruned = prune(views_root, view, keep_generations=keep_generations)
        except OSError as exc:  # served already: a failed prune must not read as a failed swap
            log.warning("swapped %s to %s, but pruning old generations failed: %s", view, target, exc)
    return SwapResult(view, target, previous if previous != target else None, tuple(pruned))


def _check_keep(keep_generations: int) -> None:
    if isinstance(keep_generations, bool) or not isinstance(keep_generations, int) or keep_generations < 1:
        raise ConfigError(f"keep_generations must be an integer >= 1 (got {keep_generations!r}): the served generation is always kept")


def _protected(views_root: Path, view: str) -> set[Path]:
    """The resolved directories ``current`` and ``previous`` name now."""
    previous = Path(views_root) / view / PREVIOUS
    return {p for p in (served_dir(views_root, view), previous.resolve() if previous.is_symlink() else None) if p}


def _generations(base: Path, view: str) -> list[Path]:
    """The replay outputs of ``view`` directly under ``base`` named ``gen-*``, oldest first.

    A real directory (not a link), not a ``.tmp`` build, with a readable manifest of ``view``;
    ordered by the creation time in the name (``gen-<ms>-<id>``), then by name.
    """
    found = []
    for path in base.glob(_GENERATION + "*"):
        if path.name.endswith(".tmp") or path.is_symlink() or not path.is_dir():
            continue
        try:
            if read_manifest(path).view != view:
                continue
        except Exception:  # no manifest, or not one we can read: not ours to delete
            continue
        match = _GENERATION_MS.match(path.name)
        found.append((int(match.group(1)) if match else -1, path.name, path))
    return [path for _, _, path in sorted(found)]


def prune(views_root: Path, view: str, *, keep_generations: int = 1) -> list[Path]:
    """Delete the generations of ``view`` older than the newest ``keep_generations``; return them.

    The directories ``current`` and ``previous`` name are never deleted, even when older
    (after a rollback, say), and neither is anything that is not a replay output of ``view``
    (see :func:`_generations`). Each generation is renamed to ``.pruning-<name>`` and then
    removed; leftovers of an interrupted prune are removed first. A deletion that fails is
    logged and skipped.
    """
    _check_keep(keep_generations)
    base = Path(views_root) / view
    for leftover in base.glob(_PRUNING + _GENERATION + "*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
    generations = _generations(base, view)
    keep = {p.resolve() for p in generations[-keep_generations:]}
    removed = []
    for path in generations:
        # Read the links again for each: a swap (or rollback) may have moved them meanwhile.
        if path.resolve() in keep or path.resolve() in _protected(views_root, view):
            continue
        trash = path.with_name(_PRUNING + path.name)
        try:
            os.rename(path, trash)
        except OSError as exc:  # gone already (another prune), or not ours to move
            log.warning("not pruning %s: %s", path, exc)
            continue
        removed.append(path)
        try:
            shutil.rmtree(trash)
        except OSError as exc:  # what is left is removed by the next prune
            log.warning("pruning %s: cannot remove all of %s: %s", path, trash, exc)
    return removed
