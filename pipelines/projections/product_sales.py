"""`product-sales` (key sku): units ordered, reserved, released, shipped, refunded, and revenue (exact)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.projections.base import Change, IndexSpec, Row, ViewSpec
from pipelines.projections.counters import add_counters

__all__ = ["ProductSalesProjection", "SPEC"]


def _identity(sku: str) -> Row:
    """The row of a SKU with no changes yet."""
    return {
        "sku": sku,
        "unitsOrdered": 0,
        "unitsReserved": 0,
        "unitsReleased": 0,
        "unitsShipped": 0,
        "unitsRefunded": 0,
        "revenueMinor": 0,
        "validFrom": None,
    }


def _line_deltas(event: Mapping[str, Any], after: Row) -> list[tuple[str, Row]]:
    kind = event["envelope"]["eventType"]
    if kind == "OrderPlaced":
        return [(i["sku"], {"unitsOrdered": i["quantity"]}) for i in after["items"]]
    if kind == "InventoryReserved":
        return [(i["sku"], {"unitsReserved": i["quantity"]}) for i in after["items"]]
    if kind == "InventoryReleased":
        return [(i["sku"], {"unitsReleased": i["quantity"]}) for i in after["items"]]
    if kind == "OrderShipped":
        return [(i["sku"], {"unitsShipped": i["quantity"]}) for i in after["items"]]
    if kind == "OrderDelivered":  # revenue is recognised at delivery
        return [(i["sku"], {"revenueMinor": i["quantity"] * i["unitPriceMinor"]}) for i in after["items"]]
    if kind == "RefundIssued":
        price = {i["sku"]: i["unitPriceMinor"] for i in after["items"]}
        return [
            (line["sku"], {"unitsRefunded": line["quantity"], "revenueMinor": -line["quantity"] * price[line["sku"]]})
            for line in event["items"]
        ]
    return []


class ProductSalesProjection:
    """Per-SKU counters, re-keyed from orders by each line's sku."""

    name = "product-sales"
    key_field = "sku"

    def deltas(self, event: Mapping[str, Any], after: Row) -> Sequence[tuple[str, Row]]:
        """One delta per affected sku (lines of one order with the same sku merged)."""
        merged: dict[str, Row] = {}
        for sku, delta in _line_deltas(event, after):
            into = merged.setdefault(sku, {})
            for field, amount in delta.items():
                into[field] = into.get(field, 0) + amount
        return tuple(merged.items())

    def apply(self, row: Row | None, change: Change) -> Row:
        """Add the change's counters to the SKU's row."""
        return add_counters(row, change, identity=_identity)


SPEC = ViewSpec(
    name=ProductSalesProjection.name, key_field=ProductSalesProjection.key_field, kind="rekeyed",
    build=lambda _grace_ms: ProductSalesProjection(),
    indexes=(IndexSpec(ProductSalesProjection.name, "revenue", "revenueMinor", "ranking"),),
)
