"""Projections: each view declared once as a pure fold, driven live (Quix Streams) and by replay."""

from __future__ import annotations

from pipelines.projections.base import Change, FoldOutcome, OrderTransition, Projection, Row
from pipelines.projections.customer_summary import CustomerSummaryProjection
from pipelines.projections.order_lifecycle import OrderFoldResult, fold_order_event, order_step
from pipelines.projections.order_status import OrderStatusProjection
from pipelines.projections.product_sales import ProductSalesProjection
from pipelines.projections.revenue_hourly import RevenueHourlyProjection
from schemas.errors import UnknownViewError

__all__ = [
    "Change",
    "FoldOutcome",
    "OrderTransition",
    "Projection",
    "Row",
    "OrderFoldResult",
    "fold_order_event",
    "order_step",
    "VIEW_NAMES",
    "get_projection",
    "UnknownViewError",
]

VIEW_NAMES: tuple[str, ...] = ("order-status", "customer-summary", "product-sales", "revenue-hourly")

def get_projection(name: str, *, grace_ms: int = 600_000) -> Projection:
    """A new projection object for view ``name``; :class:`UnknownViewError` if there is none."""
    if name == "order-status":
        return OrderStatusProjection()
    if name == "customer-summary":
        return CustomerSummaryProjection()
    if name == "product-sales":
        return ProductSalesProjection()
    if name == "revenue-hourly":
        return RevenueHourlyProjection(grace_ms=grace_ms)
    raise UnknownViewError(f"unknown view {name!r}; known views: {', '.join(VIEW_NAMES)}")
