"""The workload as the order service's commands: one command per good event, in emission order.

A generated workload (:func:`~scripts.workload.generate`) is a list of encoded events, as a
producer would write them. The main job drives the same history through the order service
instead, so that every event in the log was decided by the service and published by its
outbox relay. Each good event (poison is skipped: the service never writes one) becomes the
command that asks for it:

    OrderPlaced       -> POST /orders                          PlaceOrder (orderId, customerId, items, currency,
                                                                           correlationId, salesChannel)
    PaymentAuthorized -> POST /orders/{orderId}/payment          AuthorizePayment (amountMinor, currency, paymentId)
    PaymentFailed     -> POST /orders/{orderId}/payment-failure  RecordPaymentFailure (reason)
    InventoryReserved -> POST /orders/{orderId}/reservation      ReserveInventory (warehouseId)
    InventoryReleased -> POST /orders/{orderId}/release          ReleaseInventory (reason)
    OrderShipped      -> POST /orders/{orderId}/shipment         ShipOrder (carrier, trackingNumber)
    OrderDelivered    -> POST /orders/{orderId}/delivery         DeliverOrder
    OrderCancelled    -> POST /orders/{orderId}/cancellation     CancelOrder (reason)
    RefundIssued      -> POST /orders/{orderId}/refund           IssueRefund (items, amountMinor, reason)

Every command carries ``occurredAt`` = the event's occurredAt (the history spans days of
simulated time, and time travel goes by it) and the command id ``cmd-<eventId>``, so a resent
command is recognised as the same one. The service decides the same event the generator
wrote, except for what the service itself assigns: the eventId (a new UUID), the
causationId (the command id) and the schema version (always the newest).

The commands are in emission (arrival) order, so each order's are in seq order;
:mod:`scripts.workload.sender` posts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pipelines.orders.commands import (
    AuthorizePayment,
    CancelOrder,
    Command,
    DeliverOrder,
    IssueRefund,
    LineItem,
    PlaceOrder,
    RecordPaymentFailure,
    RefundLine,
    ReleaseInventory,
    ReserveInventory,
    ShipOrder,
)
from schemas.codec import Event, EventCodec
from scripts.workload.events import Emitted
from scripts.workload.model import WorkloadError

__all__ = ["ENDPOINTS", "WorkloadCommand", "command_id_for", "command_for", "workload_commands"]

#: Event type -> the order service's endpoint under ``/orders/{orderId}/`` ("" for OrderPlaced: ``POST /orders``).
ENDPOINTS: dict[str, str] = {
    "OrderPlaced": "",
    "PaymentAuthorized": "payment",
    "PaymentFailed": "payment-failure",
    "InventoryReserved": "reservation",
    "InventoryReleased": "release",
    "OrderShipped": "shipment",
    "OrderDelivered": "delivery",
    "OrderCancelled": "cancellation",
    "RefundIssued": "refund",
}


@dataclass(frozen=True, slots=True)
class WorkloadCommand:
    """One command of the workload, and the generated event it asks for (order, seq, type, id)."""

    order_id: str
    seq: int
    event_type: str
    event_id: str
    command: Command

    @property
    def path(self) -> str:
        """The URL path it is posted to."""
        endpoint = ENDPOINTS[self.event_type]
        return f"/orders/{self.order_id}/{endpoint}" if endpoint else "/orders"

    def body(self) -> dict[str, Any]:
        """The JSON body: camelCase fields, the ones left at their default left out."""
        body: dict[str, Any] = self.command.model_dump(mode="json", by_alias=True, exclude_none=True)
        return body


def command_id_for(event_id: str) -> str:
    """The command id of the command that asks for the generated event ``event_id``."""
    return f"cmd-{event_id}"


def command_for(event: Event) -> Command:
    """The command that asks for ``event`` (decoded, newest shape), with its occurredAt and a command id from its eventId."""
    envelope = event["envelope"]
    event_type = envelope["eventType"]
    common: dict[str, Any] = {"command_id": command_id_for(envelope["eventId"]), "occurred_at": envelope["occurredAt"]}
    match event_type:
        case "OrderPlaced":
            return PlaceOrder(
                **common,
                order_id=envelope["orderId"],
                customer_id=event["customerId"],
                items=[LineItem(sku=i["sku"], quantity=i["quantity"], unit_price_minor=i["unitPriceMinor"]) for i in event["items"]],
                currency=event["total"]["currency"],
                correlation_id=envelope["correlationId"],
                sales_channel=event["salesChannel"],
            )
        case "PaymentAuthorized":
            return AuthorizePayment(**common, amount_minor=event["authorizedMinor"], currency=event["currency"], payment_id=event["paymentId"])
        case "PaymentFailed":
            return RecordPaymentFailure(**common, reason=event["reason"])
        case "InventoryReserved":
            return ReserveInventory(**common, warehouse_id=event["warehouseId"])
        case "InventoryReleased":
            return ReleaseInventory(**common, reason=event["reason"])
        case "OrderShipped":
            return ShipOrder(**common, carrier=event["carrier"], tracking_number=event["trackingNumber"])
        case "OrderDelivered":
            return DeliverOrder(**common)
        case "OrderCancelled":
            return CancelOrder(**common, reason=event["reason"])
        case "RefundIssued":
            return IssueRefund(
                **common,
                items=[RefundLine(sku=line["sku"], quantity=line["quantity"]) for line in event["items"]],
                amount_minor=event["amountMinor"],
                reason=event["reason"],
            )
    raise WorkloadError(f"{envelope['orderId']} seq {envelope['seq']}: no command asks for a {event_type}")


def workload_commands(records: Iterable[Emitted], *, codec: EventCodec | None = None) -> Iterator[WorkloadCommand]:
    """The command of every good record of ``records`` (a workload's, in emission order), in that order.

    Poison is skipped. Each record is decoded (an older schema version is upcast to the newest
    shape, as every consumer sees it). Raises :class:`WorkloadError` if an order's good records
    are not in seq order 1, 2, 3, ... (the generator guarantees they are).
    """
    codec = codec or EventCodec()
    last_seq: dict[str, int] = {}
    for record in records:
        if record.poison is not None:
            continue
        event = codec.decode(record.value)
        envelope = event["envelope"]
        order_id, seq = envelope["orderId"], envelope["seq"]
        if seq != last_seq.get(order_id, 0) + 1:
            raise WorkloadError(f"{order_id}: seq {seq} follows {last_seq.get(order_id, 0)} in emission order")
        last_seq[order_id] = seq
        yield WorkloadCommand(order_id=order_id, seq=seq, event_type=envelope["eventType"], event_id=envelope["eventId"], command=command_for(event))
