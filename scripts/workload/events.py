"""What the generator emits: one record per Kafka message, and the builder of event dicts.

An :class:`Emitted` record is a message as the producer sends it (key, value
bytes, CreateTime timestamp) plus what the oracle needs to know about it
without decoding (order, seq, type, event id, and for poison: what is wrong).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Any, Literal, NamedTuple

from schemas.codec import Event
from schemas.registry import load_registry
from scripts.workload.model import Order

__all__ = ["PoisonKind", "POISON_KINDS", "PoisonInfo", "Emitted", "new_uuid", "build_event", "build_payload", "sales_channel"]

PoisonKind = Literal["undecodable", "unknown_schema", "impossible_transition", "duplicate"]
POISON_KINDS: tuple[PoisonKind, ...] = ("undecodable", "unknown_schema", "impossible_transition", "duplicate")


@dataclass(frozen=True, slots=True)
class PoisonInfo:
    """Why a record is poison: a stable id (``poison-000001``), its kind, and a human reason."""

    poison_id: str
    kind: PoisonKind
    reason: str


class Emitted(NamedTuple):
    """One emitted Kafka record, in emission order.

    A NamedTuple rather than a frozen dataclass on purpose: a million of these
    are built per million events, and a tuple is several times cheaper to build.

    ``seq``, ``event_type`` and ``event_id`` describe the event the bytes hold:
    None for poison whose bytes cannot be read; a duplicate repeats its
    original's. ``arrival_ms`` is when the record reaches Kafka in the
    simulation (emission order is by arrival); ``timestamp_ms`` is the
    record's CreateTime = the event's occurredAt.
    """

    key: bytes
    value: bytes
    timestamp_ms: int
    arrival_ms: int
    order_id: str
    seq: int | None
    event_type: str | None
    event_id: str | None
    poison: PoisonInfo | None


# Version 4 and the RFC 4122 variant, set in a random 128-bit number.
_UUID_CLEAR = ~((0xF << 76) | (0xC << 60))
_UUID_SET = (0x4 << 76) | (0x8 << 60)


def new_uuid(rng: Random) -> str:
    """A uuid4-shaped string drawn from ``rng`` (never from the OS), so runs repeat exactly."""
    # Hex in dash-separated groups of four ("aaaa-bbbb-cccc-dddd-eeee-ffff-gggg-hhhh"), then drop the
    # dashes that 8-4-4-4-12 does not have: the cheapest formatting found (it runs once per event).
    h = ((rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET).to_bytes(16, "big").hex("-", 2)
    return h[:4] + h[5:29] + h[30:34] + h[35:]


_CARRIERS = ("DHL", "UPS", "FedEx", "PostNL", "Royal Mail", "USPS")
_PAYMENT_FAILURES = ("card declined", "insufficient funds", "3-D Secure failed", "fraud check")
_RELEASE_REASONS = ("out of stock", "customer request", "warehouse backlog")
# Why an order was cancelled, by the event before the cancellation.
_CANCEL_REASONS: dict[str | None, str] = {
    "PaymentFailed": "payment failed",
    "PaymentAuthorized": "customer request",
    "InventoryReleased": "inventory released",
}


def build_event(
    order: Order,
    event_type: str,
    *,
    seq: int,
    event_id: str,
    occurred_at_ms: int,
    causation_id: str,
    previous_type: str | None,
    rng: Random,
    version: int | None = None,
) -> Event:
    """The event dict (codec shape) of ``event_type`` for ``order``, written with schema ``version``
    (None: the newest); see :func:`build_payload`."""
    event: Event = {
        "envelope": {
            "eventId": event_id,
            "eventType": event_type,
            "schemaVersion": load_registry().get(event_type).version if version is None else version,
            "orderId": order.order_id,
            "seq": seq,
            "occurredAt": occurred_at_ms,
            "correlationId": order.correlation_id,
            "causationId": causation_id,
        }
    }
    event.update(build_payload(order, event_type, previous_type=previous_type, rng=rng, version=version))
    return event


def build_payload(
    order: Order, event_type: str, *, previous_type: str | None, rng: Random, version: int | None = None
) -> dict[str, Any]:
    """The payload fields (all but the envelope) of ``event_type`` for ``order``, in the shape of
    schema ``version`` (None: the newest). KeyError for a version this workload cannot write.

    Details that matter to no total (payment id, carrier, ...) are drawn from
    ``rng``, the same draws whatever the version; ``previous_type`` (the order's event
    before) only flavours a cancellation reason. Works for any type in any status, so
    poison builds its illegal events the same way.

    Old versions are written here from the order itself, as an old producer would write
    them, never by downcasting the newest shape: a consumer's upcasters are then checked
    against facts they did not produce.
    """
    if version is None:
        return _PAYLOADS[event_type](order, previous_type, rng)
    return _OLD_PAYLOADS.get((event_type, version), _PAYLOADS[event_type])(order, previous_type, rng)


_SALES_CHANNELS = ("web", "app", "store")


def sales_channel(order_id: str) -> str:
    """The channel an order was placed through (OrderPlaced v2+): a function of its id, so it costs no draw."""
    return _SALES_CHANNELS[zlib.crc32(order_id.encode()) % len(_SALES_CHANNELS)]


def _line_items(order: Order) -> list[dict[str, Any]]:
    return [{"sku": i.sku, "quantity": i.quantity, "unitPriceMinor": i.unit_price_minor} for i in order.items]


def _placed(order: Order, previous_type: str | None, rng: Random) -> dict[str, Any]:
    """OrderPlaced v3: the total as one Money record."""
    return {
        "customerId": order.customer_id,
        "items": _line_items(order),
        "total": {"amountMinor": order.total_minor, "currency": order.currency},
        "salesChannel": sales_channel(order.order_id),
    }


def _placed_v1(order: Order, previous_type: str | None, rng: Random) -> dict[str, Any]:
    return {"customerId": order.customer_id, "items": _line_items(order), "totalMinor": order.total_minor, "currency": order.currency}


def _placed_v2(order: Order, previous_type: str | None, rng: Random) -> dict[str, Any]:
    return {**_placed_v1(order, previous_type, rng), "salesChannel": sales_channel(order.order_id)}


def _refunded(order: Order, previous_type: str | None, rng: Random) -> dict[str, Any]:
    refund = order.refund
    if refund is None:  # only poison asks for a refund the order did not plan: the whole total back
        return {
            "items": [{"sku": i.sku, "quantity": i.quantity} for i in order.items],
            "amountMinor": order.total_minor,
            "currency": order.currency,
            "reason": "goodwill",
        }
    return {
        "items": [{"sku": line.sku, "quantity": line.quantity} for line in refund.lines],
        "amountMinor": refund.amount_minor,
        "currency": order.currency,
        "reason": refund.reason,
    }


def _shipped(order: Order, previous_type: str | None, rng: Random) -> dict[str, Any]:
    carrier = _CARRIERS[int(rng.random() * len(_CARRIERS))]
    return {"carrier": carrier, "trackingNumber": f"{carrier[:2].upper()}{rng.getrandbits(40):013d}"}


_WAREHOUSES = tuple(f"wh-{n}" for n in range(1, 9))

# One builder per event type: a dict lookup instead of a chain of comparisons, once per generated event.
_PAYLOADS: dict[str, Callable[[Order, str | None, Random], dict[str, Any]]] = {
    "OrderPlaced": _placed,
    "PaymentAuthorized": lambda order, _, rng: {
        "paymentId": f"pay-{rng.getrandbits(64):016x}", "authorizedMinor": order.total_minor, "currency": order.currency
    },
    "PaymentFailed": lambda _, __, rng: {"reason": _PAYMENT_FAILURES[int(rng.random() * len(_PAYMENT_FAILURES))]},
    "InventoryReserved": lambda _, __, rng: {"warehouseId": _WAREHOUSES[int(rng.random() * len(_WAREHOUSES))]},
    "InventoryReleased": lambda _, __, rng: {"reason": _RELEASE_REASONS[int(rng.random() * len(_RELEASE_REASONS))]},
    "OrderShipped": _shipped,
    "OrderDelivered": lambda _, __, ___: {},  # the envelope only
    "OrderCancelled": lambda _, previous_type, __: {"reason": _CANCEL_REASONS.get(previous_type, "customer request")},
    "RefundIssued": _refunded,
}

#: Payload builders of the versions before the newest, by (type, version); a type missing here
#: has had one shape all along (its newest builder writes every version).
_OLD_PAYLOADS: dict[tuple[str, int], Callable[[Order, str | None, Random], dict[str, Any]]] = {
    ("OrderPlaced", 1): _placed_v1,
    ("OrderPlaced", 2): _placed_v2,
    ("PaymentAuthorized", 1): lambda order, _, rng: {
        "paymentId": f"pay-{rng.getrandbits(64):016x}", "amountMinor": order.total_minor, "currency": order.currency
    },
}
