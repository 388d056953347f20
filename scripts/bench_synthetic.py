"""Synthetic order-status versions for the store benchmarks (no broker, no generator)."""

from __future__ import annotations

from collections.abc import Iterator

from state.contracts import SourcePosition, ViewUpdate

__all__ = ["T0", "order_status_updates"]

#: Event time of the first version.
T0 = 1_795_273_200_000
_STATUSES = ("PLACED", "PAYMENT_AUTHORIZED", "INVENTORY_RESERVED", "SHIPPED", "DELIVERED", "REFUNDED")


def order_status_updates(orders: int, versions: int, *, position_topic: str) -> Iterator[ViewUpdate]:
    """``versions`` versions of each of ``orders`` orders; version j of order i is valid from T0 + 10 i + 1000 j.

    Version j of every order comes before version j + 1 of any (the way a live stream
    interleaves orders, so batches touch many keys). Sources are offsets of ``orders``
    partition 0; positions are the same offsets of ``position_topic`` partition 0.
    """
    offset = 0
    for j in range(versions):
        for i in range(orders):
            key = f"o-{i:07d}"
            valid_from_ms = T0 + i * 10 + j * 1000
            row = {"orderId": key, "customerId": f"c-{i % 5000}", "status": _STATUSES[j % len(_STATUSES)], "lastSeq": j + 1,
                   "totalMinor": 1000 + i % 977, "currency": "EUR", "validFrom": valid_from_ms}
            yield ViewUpdate("order-status", key, row, valid_from_ms, valid_from_ms, None, key, j + 1,
                             SourcePosition("orders", 0, offset), SourcePosition(position_topic, 0, offset))
            offset += 1
