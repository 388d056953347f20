"""Filling a cache dir once: under a lock, through a staging dir, finished by a marker file."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from scripts.local_service.files import locked


def fill_cache_once(
    target: Path,
    *,
    complete: Callable[[], bool],
    fill: Callable[[Path], Path],
    marker: Path,
    stamp: str,
    lock_file: Path,
    staging_prefix: str,
    before: Callable[[], None] | None = None,
) -> bool:
    """Make ``target`` a complete copy unless ``complete()`` already says it is; True if this call filled it.

    Steps:
    1. Return False if ``complete()``.
    2. Take ``lock_file``, then ask ``complete()`` again (another process may
       have filled it meanwhile); call ``before()`` (e.g. say what follows).
    3. ``fill(staging)`` fills a fresh staging dir next to ``target`` and
       returns the dir (the staging dir or one inside it) to become ``target``;
       it raises to abort.
    4. Replace ``target`` with that dir, then write ``stamp`` into ``marker``
       (a file inside ``target``, which ``complete()`` reads): a failed or
       stale copy is never taken for a complete one.
    The staging dir is removed in every case.
    """
    # Step 1
    if complete():
        return False
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    with locked(lock_file):
        # Step 2
        if complete():
            return False
        if before is not None:
            before()
        staging = Path(tempfile.mkdtemp(prefix=staging_prefix, dir=parent))
        try:
            # Step 3
            filled = fill(staging)
            # Step 4
            if target.exists():
                shutil.rmtree(target)
            filled.rename(target)
            marker.write_text(stamp + "\n")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return True
