"""The secondary indexes of every view, declared once.

Two kinds:

* ``equality`` – rows whose field equals a value (orders by status). A scan returns the
  rows in the order their current version became valid (oldest first), then by key.
* ``ranking`` – rows ordered by an integer field, largest first (customers by lifetime
  value, SKUs by revenue). Ties are ordered by key.

Each index exists twice in the store (see :mod:`state.keys`): a *current* index (one entry
per row: a scan now costs O(limit)) and a *versioned* index (one entry per row version,
carrying that version's valid_to), which answers "as of T" without touching rows that
never matched:

* equality as of T scans the entries of that value whose valid_from <= T and keeps those
  with valid_to > T: O(versions that ever had the value before T);
* ranking as of T walks entries from the largest value down and keeps those valid at T
  until ``limit`` rows are found: O(versions whose value is >= the limit-th value at T);
  worst case every version of the view (e.g. old T after values grew a lot).
"""

from __future__ import annotations

from pipelines.errors import UnknownViewError
from pipelines.projections import VIEW_NAMES, VIEW_SPECS, IndexKind, IndexSpec
from state.errors import UnknownIndexError

__all__ = ["IndexKind", "IndexSpec", "INDEXES", "indexes_of", "find_index", "check_view"]

#: The indexes of every view, from the views' own declarations (:class:`~pipelines.projections.ViewSpec`).
INDEXES: dict[str, tuple[IndexSpec, ...]] = {name: spec.indexes for name, spec in VIEW_SPECS.items()}


def check_view(view: str) -> None:
    """Raise :class:`UnknownViewError` unless ``view`` is one of the known views."""
    if view not in VIEW_NAMES:
        raise UnknownViewError(f"unknown view {view!r}; known views: {', '.join(VIEW_NAMES)}")


def indexes_of(view: str) -> tuple[IndexSpec, ...]:
    """The indexes of ``view`` (empty for a view without any)."""
    return INDEXES.get(view, ())


def find_index(view: str, name: str) -> IndexSpec:
    """The index called ``name`` (or reading field ``name``) of ``view``; :class:`UnknownIndexError` otherwise."""
    check_view(view)
    for spec in indexes_of(view):
        if name in (spec.name, spec.field):
            return spec
    known = ", ".join(s.name for s in indexes_of(view)) or "none"
    raise UnknownIndexError(f"view {view} has no index {name!r}; its indexes: {known}")
