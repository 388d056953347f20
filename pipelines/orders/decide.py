"""Deciding a command: fold the order's events into its aggregate, build the event the command asks
for, and let the order fold say whether it applies. Pure: no database, no clock, no randomness
of its own (the caller passes the time and the ids), so it is tested without a store.

The rules are the projections' own: :func:`~pipelines.projections.order_lifecycle.order_step`
folds the stored events into the order row (the aggregate) and then judges the candidate
event exactly as every view will fold it. Its "rejected" outcome is the command's refusal:

* an impossible transition (e.g. OrderShipped in status PAYMENT_AUTHORIZED) is a
  :class:`~pipelines.orders.errors.CommandConflictError` (409);
* a payload outside its domain (InvalidValue, CurrencyMismatch, UnknownSku, ImpossibleRefund)
  is an :class:`~pipelines.orders.errors.InvalidCommandError` (422).

Two rules are the service's own, because the row the fold keeps cannot state them: a payment
authorizes at most the order's total, and a refund returns at most what was paid (the fold
bounds it by the total; with a partial authorization "paid" is less).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from pipelines.orders.commands import (
    AuthorizePayment,
    CancelOrder,
    Command,
    DeliverOrder,
    IssueRefund,
    PlaceOrder,
    RecordPaymentFailure,
    ReleaseInventory,
    ReserveInventory,
    ShipOrder,
)
from pipelines.orders.errors import CommandConflictError, CorruptEventStoreError, InvalidCommandError, OrderNotFoundError
from pipelines.projections.base import Row
from pipelines.projections.domain import IMPOSSIBLE_REFUND, envelope_problem
from pipelines.projections.order_lifecycle import IMPOSSIBLE_TRANSITION, OrderFoldResult, order_step
from schemas.codec import Event, EventCodec
from schemas.errors import CodecError
from schemas.registry import load_registry

__all__ = ["StoredEvent", "Aggregate", "Decision", "fold_order", "advance", "decide", "newest_version"]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the ``events`` table (``payload``: the codec's bytes, as the outbox holds them)."""

    seq: int
    event_type: str
    event_id: str
    occurred_at: int
    command_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Aggregate:
    """An order as its stored events make it.

    ``row`` is the order fold's row after the last event (None: the order has no events, it
    does not exist). ``correlation_id`` is its OrderPlaced's (every later event carries it);
    ``paid_minor`` the amount its PaymentAuthorized authorized (0 before one). ``events`` are
    the stored events, in seq order.
    """

    order_id: str
    row: Row | None
    correlation_id: str | None
    paid_minor: int
    events: tuple[StoredEvent, ...]

    @property
    def last_seq(self) -> int:
        """The seq of the order's last event; 0 when it has none."""
        return self.events[-1].seq if self.events else 0


@dataclass(frozen=True, slots=True)
class Decision:
    """What a command decided: the new event (codec shape, newest schema version) and the order row after it."""

    event: Event
    row: Row

    @property
    def seq(self) -> int:
        """The seq the event takes: the order's last seq + 1."""
        return int(self.event["envelope"]["seq"])


@cache
def newest_version(event_type: str) -> int:
    """The newest schema version of ``event_type``: the one every new event is written with."""
    return load_registry().get(event_type).version


def fold_order(order_id: str, stored: Iterable[StoredEvent], codec: EventCodec) -> Aggregate:
    """The aggregate of ``order_id`` from its stored events (in seq order), folded with ``order_step``.

    Raises :class:`CorruptEventStoreError` if a payload does not decode or an event does not
    apply: this service never writes such a history.
    """
    row: Row | None = None
    correlation_id: str | None = None
    paid_minor = 0
    events = tuple(stored)
    for record in events:
        try:
            event = codec.decode(record.payload)
        except CodecError as exc:
            raise CorruptEventStoreError(f"order {order_id} seq {record.seq}: stored payload does not decode: {exc}") from exc
        after = order_step(row, event)
        if isinstance(after, OrderFoldResult):
            raise CorruptEventStoreError(f"order {order_id} seq {record.seq}: stored event does not fold ({after.outcome}: {after.reason})")
        row = after
        if record.seq == 1:
            correlation_id = event["envelope"]["correlationId"]
        if event["envelope"]["eventType"] == "PaymentAuthorized":
            paid_minor = event["authorizedMinor"]
    return Aggregate(order_id=order_id, row=row, correlation_id=correlation_id, paid_minor=paid_minor, events=events)


def advance(order: Aggregate, decision: Decision, stored: StoredEvent) -> Aggregate:
    """``order`` once ``decision``'s event is stored as ``stored``: what :func:`fold_order` gives on the
    order's events plus that one, without decoding them again (a batch decides several commands of
    one order in a row, :meth:`~pipelines.orders.event_store.EventStore.execute_many`)."""
    envelope = decision.event["envelope"]
    correlation_id = envelope["correlationId"] if stored.seq == 1 else order.correlation_id
    paid_minor = decision.event["authorizedMinor"] if envelope["eventType"] == "PaymentAuthorized" else order.paid_minor
    return Aggregate(order_id=order.order_id, row=decision.row, correlation_id=correlation_id, paid_minor=paid_minor,
                     events=(*order.events, stored))


def decide(command: Command, order: Aggregate, *, now_ms: int, new_id: Callable[[], str]) -> Decision:
    """The event ``command`` adds to ``order`` and the row after it, or the refusal (a CommandError).

    1. PlaceOrder needs an order with no events (else 409); every other command one with events (else 404).
    2. The candidate event: envelope (eventId from ``new_id``, the newest schemaVersion,
       seq = last seq + 1, occurredAt = the command's ``occurredAt`` or else ``now_ms``, the
       order's correlationId, causationId = the command id) and the payload the command gives.
       An envelope outside the domain every consumer enforces (an occurredAt outside
       [MIN_EVENT_MS, MAX_EVENT_MS), :func:`~pipelines.projections.domain.envelope_problem`) is a 422.
    3. ``order_step`` judges it against the order: an impossible transition is a 409, a payload
       outside its domain a 422 (see the module docstring).
    4. The service's own money rules (at most the total authorized, at most what was paid refunded): 422.
    """
    name = type(command).__name__
    # Step 1
    if isinstance(command, PlaceOrder):
        if order.row is not None:
            raise CommandConflictError(f"{name}: order {order.order_id} already exists (status {order.row['status']}); a new order needs a new id")
        correlation_id = command.correlation_id or new_id()
    else:
        if order.row is None or order.correlation_id is None:
            raise OrderNotFoundError(f"{name}: order {order.order_id} does not exist")
        correlation_id = order.correlation_id
    # Step 2
    event_type = command.event_type
    event: Event = {
        "envelope": {
            "eventId": new_id(),
            "eventType": event_type,
            "schemaVersion": newest_version(event_type),
            "orderId": order.order_id,
            "seq": order.last_seq + 1,
            "occurredAt": now_ms if command.occurred_at is None else command.occurred_at,
            "correlationId": correlation_id,
            "causationId": command.command_id,
        }
    }
    # A refused PlaceOrder's message names no order: none was made, and its id may be one the service drew.
    subject = name if isinstance(command, PlaceOrder) else f"{name} on order {order.order_id}"
    problem = envelope_problem(event["envelope"])
    if problem is not None:
        raise InvalidCommandError(f"{subject}: {problem}")
    event.update(_payload(command, order.row, new_id=new_id))
    # Step 3
    after = order_step(order.row, event)
    if isinstance(after, OrderFoldResult):
        if after.reason_class == IMPOSSIBLE_TRANSITION:
            raise CommandConflictError(f"{subject}: {after.reason}")
        raise InvalidCommandError(f"{subject}: {after.reason}")
    # Step 4
    _check_money(command, order, name=name)
    return Decision(event=event, row=after)


def _payload(command: Command, row: Row | None, *, new_id: Callable[[], str]) -> dict[str, Any]:
    """The payload fields (all but the envelope) of the event ``command`` asks for, newest schema shape."""
    match command:
        case PlaceOrder():
            return {
                "customerId": command.customer_id,
                "items": [{"sku": i.sku, "quantity": i.quantity, "unitPriceMinor": i.unit_price_minor} for i in command.items],
                "total": {"amountMinor": command.total_minor(), "currency": command.currency},
                "salesChannel": command.sales_channel,
            }
    assert row is not None  # every other command is refused before this on an order that does not exist
    match command:
        case AuthorizePayment():
            return {
                "paymentId": command.payment_id or f"pay-{new_id().replace('-', '')[:16]}",
                "authorizedMinor": row["totalMinor"] if command.amount_minor is None else command.amount_minor,
                "currency": command.currency or row["currency"],
            }
        case RecordPaymentFailure() | ReleaseInventory() | CancelOrder():
            return {"reason": command.reason}
        case ReserveInventory():
            return {"warehouseId": command.warehouse_id}
        case ShipOrder():
            return {"carrier": command.carrier, "trackingNumber": command.tracking_number}
        case DeliverOrder():
            return {}
        case IssueRefund():
            return {
                "items": [{"sku": line.sku, "quantity": line.quantity} for line in command.items],
                "amountMinor": command.amount_minor,
                "currency": row["currency"],
                "reason": command.reason,
            }
    raise TypeError(f"no event payload for command {type(command).__name__}")


def _check_money(command: Command, order: Aggregate, *, name: str) -> None:
    """Step 4 of :func:`decide` (the fold has already accepted the event, so the row exists)."""
    assert order.row is not None or isinstance(command, PlaceOrder)
    if isinstance(command, AuthorizePayment) and order.row is not None:
        total = order.row["totalMinor"]
        if command.amount_minor is not None and command.amount_minor > total:
            raise InvalidCommandError(f"{name} on order {order.order_id}: amountMinor {command.amount_minor} is more than the order's total {total}")
    elif isinstance(command, IssueRefund) and order.row is not None:
        left = order.paid_minor - order.row["refundedMinor"]
        if command.amount_minor > left:
            raise InvalidCommandError(
                f"{name} on order {order.order_id}: amountMinor {command.amount_minor} is more than the {left} paid and not yet refunded"
                f" ({IMPOSSIBLE_REFUND})"
            )
