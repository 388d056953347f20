"""A bounded in-process copy of the order rows a pipeline has written, to skip Quix's state read."""

from __future__ import annotations

from typing import Any

__all__ = ["RowCache", "MISSING"]

#: What :meth:`RowCache.get` returns for a key it does not hold (None is a valid "no row yet" answer of the store).
MISSING: Any = object()


class RowCache:
    """Rows by message key, exactly as this process last wrote them to its state store.

    A Quix state read costs about an eighth of a live event (key serialisation, the
    transaction's TTL-aware lookup, JSON decoding); most events of an order arrive
    while its row is still here. The cache is only valid while this process owns the
    partitions it read them from, so the application clears it on every assignment
    change (assign, revoke, lost); a crash loses it with the process, and state is
    recovered from the changelog as usual. Rows are never mutated (the fold copies).
    (Quix also aborts a transaction and seeks back, without a rebalance, when a *sink*
    signals backpressure; our pipelines have no sinks, only topics, so that path never runs.)
    """

    def __init__(self, max_rows: int = 100_000) -> None:
        self._rows: dict[bytes, Any] = {}
        self._max_rows = max_rows

    def get(self, key: bytes) -> Any:
        """The cached row for ``key``, or :data:`MISSING`."""
        return self._rows.get(key, MISSING)

    def put(self, key: bytes, row: Any) -> None:
        """Remember ``row``; the oldest-written rows go first when full (insertion order)."""
        rows = self._rows
        rows.pop(key, None)  # re-insert, so a busy order is the last to be evicted
        rows[key] = row
        if len(rows) > self._max_rows:
            del rows[next(iter(rows))]

    def clear(self) -> None:
        """Forget everything (partitions moved)."""
        self._rows.clear()

    def __len__(self) -> int:
        return len(self._rows)
