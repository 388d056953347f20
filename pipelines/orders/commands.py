"""The order service's commands, as pydantic models: their shape, not their rules.

A model checks what a command *is*: the fields it has (no others), their JSON types (integers
are integers, never floats or strings: money is integer minor units), ids of a safe alphabet,
text that is not empty and not absurdly long, a currency from :data:`CURRENCIES`. Whether a
command is *allowed* (the order's status) and whether its values are in their domain (a
quantity >= 1, an amount >= 0, a refund no larger than what is left) is decided by the order
fold itself (:mod:`pipelines.orders.decide`), so those rules are written once, in
:mod:`pipelines.projections.order_lifecycle` and :mod:`pipelines.projections.domain`.

Every command carries a client-chosen ``commandId``: the same id sent again with the same body
gets the first answer and writes nothing; with another body it is refused
(:func:`request_hash` tells the two apart). JSON field names are camelCase, as in the events.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints
from pydantic.alias_generators import to_camel

from pipelines.projections.domain import MAX_EVENT_MS, MAX_MINOR, MAX_QUANTITY, MIN_EVENT_MS

__all__ = [
    "CURRENCIES",
    "ID_PATTERN",
    "Command",
    "LineItem",
    "RefundLine",
    "PlaceOrder",
    "AuthorizePayment",
    "RecordPaymentFailure",
    "ReserveInventory",
    "ReleaseInventory",
    "ShipOrder",
    "DeliverOrder",
    "CancelOrder",
    "IssueRefund",
    "COMMAND_TYPES",
    "request_hash",
]

#: Order and command ids: 1-128 characters, letters, digits and ``. _ : -``, starting with a letter
#: or digit. Safe in a URL path segment, a Kafka key and every database's VARCHAR(128).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
#: Longest free text (a reason, a carrier, a SKU, a customer id).
MAX_TEXT = 256
#: Most lines in one order or refund.
MAX_LINES = 1_000

#: The currencies an order may be in: the active ISO 4217 currency codes (fund codes, precious
#: metals and the X-codes that are not money left out). A fixed list, not just "three capital
#: letters", so a typo (EUT, USS) is refused instead of becoming a currency of its own.
CURRENCIES = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN
    BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS
    GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW
    KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD
    NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD
    SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES
    VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)


def _utf8(text: str) -> str:
    # JSON may carry a lone surrogate (\ud800): a str, but not one any event or database can hold.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (a lone surrogate)") from None
    return text


def _known_currency(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError(f"currency {code[:16]!r} is not a known ISO 4217 currency code (e.g. EUR, USD, GBP)")
    return code


Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT), AfterValidator(_utf8)]
Currency = Annotated[str, AfterValidator(_known_currency), Field(description="An ISO 4217 currency code, e.g. EUR.")]
Quantity = Annotated[StrictInt, Field(description=f"Units, 1..{MAX_QUANTITY} (checked by the order fold).")]
Minor = Annotated[StrictInt, Field(description=f"Money in integer minor units of the currency (cents), 0..{MAX_MINOR} (checked by the order fold).")]
EpochMs = Annotated[StrictInt, Field(description=f"Epoch milliseconds (UTC), {MIN_EVENT_MS} <= t < {MAX_EVENT_MS} (checked with the event's envelope).")]


class _Model(BaseModel):
    # strict: JSON 1.0 or "1" is not an integer; extra="forbid": a misspelt field is an error, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, alias_generator=to_camel, populate_by_name=True)


class LineItem(_Model):
    """One line of an order: units of a SKU at a unit price."""

    sku: Text
    quantity: Quantity
    unit_price_minor: Minor


class RefundLine(_Model):
    """Units of one of the order's SKUs given back."""

    sku: Text
    quantity: Quantity


class Command(_Model):
    """What every command carries; ``event_type`` is the event it asks for."""

    event_type: ClassVar[str]

    command_id: Id = Field(description="Chosen by the client, unique per command: a retry with the same id and body gets the first answer.")
    occurred_at: EpochMs | None = Field(None, description=(
        "When the fact happened (business time), epoch ms: as the caller reports it, e.g. the payment provider's or the "
        "carrier's timestamp; it becomes the event's occurredAt, the time every view and time-travel query goes by. "
        "Omitted: the service's clock. May be earlier than the order's previous event (seq order is the truth)."
    ))


class PlaceOrder(Command):
    """Place a new order. The total is the sum of quantity x unitPriceMinor over the lines, exactly."""

    event_type: ClassVar[str] = "OrderPlaced"

    order_id: Id | None = Field(None, description="The new order's id; omitted: the service picks one (a UUID).")
    customer_id: Text
    items: list[LineItem] = Field(min_length=1, max_length=MAX_LINES)
    currency: Currency
    correlation_id: Text | None = Field(None, description="Carried by every event of the order; omitted: a new UUID.")
    sales_channel: Text = Field("unknown", description="Where the order was placed: web, app, store.")

    def total_minor(self) -> int:
        """The order's total in minor units: exact integer arithmetic, never a float."""
        return sum(line.quantity * line.unit_price_minor for line in self.items)


class AuthorizePayment(Command):
    """Record that the order's payment was authorized."""

    event_type: ClassVar[str] = "PaymentAuthorized"

    amount_minor: Minor | None = Field(None, description="The authorized amount; omitted: the order's total. At most the total.")
    currency: Currency | None = Field(None, description="Must be the order's currency; omitted: the order's.")
    payment_id: Text | None = Field(None, description="The payment provider's id; omitted: a new one.")


class RecordPaymentFailure(Command):
    """Record that the order's payment failed."""

    event_type: ClassVar[str] = "PaymentFailed"

    reason: Text


class ReserveInventory(Command):
    """Record that the order's inventory is reserved in a warehouse."""

    event_type: ClassVar[str] = "InventoryReserved"

    warehouse_id: Text


class ReleaseInventory(Command):
    """Give back the order's reserved inventory (a compensation)."""

    event_type: ClassVar[str] = "InventoryReleased"

    reason: Text


class ShipOrder(Command):
    """Record that the order left the warehouse."""

    event_type: ClassVar[str] = "OrderShipped"

    carrier: Text
    tracking_number: Text


class DeliverOrder(Command):
    """Record that the order was delivered."""

    event_type: ClassVar[str] = "OrderDelivered"


class CancelOrder(Command):
    """Cancel the order (after a failed payment, before reservation, or after a release)."""

    event_type: ClassVar[str] = "OrderCancelled"

    reason: Text


class IssueRefund(Command):
    """Refund some units of a delivered order, in the order's currency."""

    event_type: ClassVar[str] = "RefundIssued"

    items: list[RefundLine] = Field(max_length=MAX_LINES)
    amount_minor: Minor = Field(description="Money returned, integer minor units; at most what was paid and not yet refunded.")
    reason: Text


#: Every command, by the event type it asks for.
COMMAND_TYPES: dict[str, type[Command]] = {
    cls.event_type: cls
    for cls in (PlaceOrder, AuthorizePayment, RecordPaymentFailure, ReserveInventory, ReleaseInventory, ShipOrder, DeliverOrder, CancelOrder, IssueRefund)
}


def request_hash(command: Command, *, order_id: str | None) -> str:
    """SHA-256 (hex) of what the command asks: its type, the order it names and every field but its id.

    Two sends of one command hash alike whatever their key order or whitespace; a field given
    as its default (``"amountMinor": null``) hashes like the field left out. ``occurredAt`` is
    part of what is asked (the same command at another time is another command); left out, it
    is left out of the hash too, so commands stored before the field existed keep their hash.
    """
    body = command.model_dump(mode="json", by_alias=True, exclude={"command_id"})
    if body.get("occurredAt") is None:
        body.pop("occurredAt", None)
    asked: dict[str, Any] = {"type": type(command).__name__, "orderId": order_id, "body": body}
    return hashlib.sha256(json.dumps(asked, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
