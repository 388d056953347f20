"""Small file-system helpers: an advisory lock, atomic writes, a git-ignored run dir."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two concurrent up/down calls take turns."""
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _keep_out_of_git(run_dir: Path) -> None:
    # The run dir holds data and logs; ignore it even where .gitignore does not.
    ignore = run_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
