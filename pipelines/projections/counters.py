"""Shared helper for views that are sums of integer counters."""

from __future__ import annotations

from collections.abc import Callable

from pipelines.projections.base import Change, Row

__all__ = ["add_counters"]


def add_counters(row: Row | None, change: Change, *, identity: Callable[[str], Row]) -> Row:
    """Return a copy of ``row`` (or ``identity(key)`` for a new key) with every delta field added.

    ``identity`` is called only for a new key: the replay parent folds about a million
    changes, nearly all into existing rows. ``validFrom`` becomes
    max(validFrom, change.valid_from_ms), so it never decreases per key.
    """
    new = dict(row) if row is not None else identity(change.key)
    for field, amount in change.delta.items():
        new[field] = new.get(field, 0) + amount
    if new.get("validFrom") is None or new["validFrom"] < change.valid_from_ms:
        new["validFrom"] = change.valid_from_ms
    return new
