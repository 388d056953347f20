"""Small file-system helpers: an advisory lock, atomic writes, a git-ignored run dir."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two concurrent up/down calls take turns."""
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def keep_out_of_git(run_dir: Path) -> None:
    """Write ``run_dir/.gitignore`` (ignore everything) unless there is one: the run dir holds data and logs."""
    ignore = run_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: a reader sees the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
