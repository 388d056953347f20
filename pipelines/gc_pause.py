"""Pausing Python's cyclic garbage collector around bulk passes.

Generating a workload, writing its oracle and folding a replay each build millions of
small acyclic objects; the collector's generational passes over them cost more than
the work itself (measured 2-4x slower). Nothing these passes build has cycles, so
pausing loses nothing; the previous state is restored afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block; re-enable it only if it was enabled."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
