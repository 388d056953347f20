"""Shared helper for views that are sums of integer counters."""

from __future__ import annotations

from pipelines.projections.base import Change, Row

__all__ = ["add_counters"]


def add_counters(row: Row | None, change: Change, *, identity: Row | None) -> Row:
    """Return a copy of ``row`` (or ``identity`` for a new key: required then) with every delta field added.

    ``validFrom`` becomes max(validFrom, change.valid_from_ms), so it never decreases per key.
    """
    if row is None:
        assert identity is not None, "a new key needs its identity row"
        new = dict(identity)
    else:
        new = dict(row)
    for field, amount in change.delta.items():
        new[field] = new.get(field, 0) + amount
    if new.get("validFrom") is None or new["validFrom"] < change.valid_from_ms:
        new["validFrom"] = change.valid_from_ms
    return new
