"""Changes held back by the replay sink until a watermark passes them, released in event-time order.

Each worker batch is kept as one run, sorted by ``valid_from_ms`` (a stable sort, in C);
a release cuts every run at the watermark (bisect) and merges the cut prefixes with one
more stable sort of their concatenation. The order released is exactly a heap's on
(valid_from_ms, arrival number) — ties keep arrival order — at a fraction of the per-change
cost of ``heappush``/``heappop`` (a release's sort is linear on runs).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import chain
from operator import itemgetter
from typing import Any

__all__ = ["HeldChanges"]

#: A held change is a :class:`~state.replay.fold.FoldedChange` tuple; field 4 is valid_from_ms.
_VALID_FROM = itemgetter(4)


class HeldChanges:
    """Runs of changes, each sorted by valid_from_ms, in arrival order."""

    def __init__(self) -> None:
        self._runs: list[list[Any]] = []  # [sorted changes, index of the first still held]
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, changes: Iterable[tuple[Any, ...]]) -> None:
        """Hold one batch of changes (arrival order)."""
        run = sorted(changes, key=_VALID_FROM)
        if run:
            self._runs.append([run, 0])
            self._count += len(run)

    def release(self, watermark_ms: int) -> list[tuple[Any, ...]]:
        """Remove and return every held change with valid_from_ms below ``watermark_ms``, in order."""
        pieces = []
        kept = []
        for run in self._runs:
            changes, start = run
            cut = bisect_left(changes, watermark_ms, lo=start, key=_VALID_FROM)
            if cut > start:
                pieces.append(changes[start:cut])
                run[1] = cut
            if cut < len(changes):
                kept.append(run)
        self._runs = kept
        if not pieces:
            return []
        released = pieces[0] if len(pieces) == 1 else sorted(chain.from_iterable(pieces), key=_VALID_FROM)
        self._count -= len(released)
        return released

    def release_first(self, limit: int) -> list[tuple[Any, ...]]:
        """Remove and return the ``limit`` earliest held changes, in order (bounds the memory)."""
        everything = sorted(chain.from_iterable(changes[start:] for changes, start in self._runs), key=_VALID_FROM)
        released, rest = everything[:limit], everything[limit:]
        # The rest is one sorted run that arrived before anything still to come.
        self._runs = [[rest, 0]] if rest else []
        self._count = len(rest)
        return released

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        """Every held change (any order)."""
        for changes, start in self._runs:
            yield from changes[start:]
