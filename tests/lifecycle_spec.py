"""The order lifecycle as the business states it, written once for the tests.

Transcribed by hand, never imported from product code: the projection fold
(pipelines/projections/order_lifecycle.py) and the generator's model
(scripts/workload/model.py) are each checked against this table.
"""

#: (status before, event type) -> status after. A pair not listed is an impossible transition.
LIFECYCLE: dict[tuple[str | None, str], str] = {
    (None, "OrderPlaced"): "PLACED",
    ("PLACED", "PaymentAuthorized"): "PAYMENT_AUTHORIZED",
    ("PLACED", "PaymentFailed"): "PAYMENT_FAILED",
    ("PAYMENT_FAILED", "OrderCancelled"): "CANCELLED",
    ("PAYMENT_AUTHORIZED", "InventoryReserved"): "INVENTORY_RESERVED",
    ("PAYMENT_AUTHORIZED", "OrderCancelled"): "CANCELLED",
    ("INVENTORY_RESERVED", "OrderShipped"): "SHIPPED",
    ("INVENTORY_RESERVED", "InventoryReleased"): "INVENTORY_RELEASED",
    ("INVENTORY_RELEASED", "OrderCancelled"): "CANCELLED",
    ("SHIPPED", "OrderDelivered"): "DELIVERED",
    ("DELIVERED", "RefundIssued"): "REFUNDED",
}
