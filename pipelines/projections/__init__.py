"""Projections: each view declared once (a :class:`ViewSpec` in its module), listed here.

Adding a view is one module (its fold and its ``SPEC``) plus one line in :data:`VIEW_SPECS`;
the kernel, the live pipeline, the replay, the store and the query side take everything
else from the spec.
"""

from __future__ import annotations

from pipelines.errors import UnknownViewError
from pipelines.projections import customer_summary, order_status, payments_daily, product_sales, revenue_hourly
from pipelines.projections.base import Change, FoldOutcome, IndexKind, IndexSpec, Projection, Row, ViewKind, ViewSpec
from pipelines.projections.order_lifecycle import OrderFoldResult, order_step

__all__ = [
    "Change",
    "FoldOutcome",
    "IndexKind",
    "IndexSpec",
    "Projection",
    "Row",
    "ViewKind",
    "ViewSpec",
    "OrderFoldResult",
    "order_step",
    "VIEW_SPECS",
    "VIEW_NAMES",
    "view_spec",
    "get_projection",
    "UnknownViewError",
]

#: Every view, by name (the registry: one line per view).
VIEW_SPECS: dict[str, ViewSpec] = {
    spec.name: spec
    for spec in (
        order_status.SPEC,
        customer_summary.SPEC,
        product_sales.SPEC,
        revenue_hourly.SPEC,
        payments_daily.SPEC,
    )
}

VIEW_NAMES: tuple[str, ...] = tuple(VIEW_SPECS)


def view_spec(name: str) -> ViewSpec:
    """The declaration of view ``name``; :class:`UnknownViewError` if there is none."""
    spec = VIEW_SPECS.get(name)
    if spec is None:
        raise UnknownViewError(f"unknown view {name!r}; known views: {', '.join(VIEW_NAMES)}")
    return spec


def get_projection(name: str, *, grace_ms: int | None = None) -> Projection:
    """A new fold object for view ``name`` (``grace_ms``: None for the view's default)."""
    return view_spec(name).projection(grace_ms=grace_ms)
