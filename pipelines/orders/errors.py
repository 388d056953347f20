"""The order service's errors: why a command was refused, and when the event store could not answer.

Each refusal carries the HTTP status it is answered with (``status``), so the service and the
CLI map an error to an answer in one place; the message is one line naming the problem. A
refused command writes nothing: no event, no outbox row, no command record (so a retry with
the same command id is decided afresh).
"""

from __future__ import annotations

from typing import ClassVar

from pipelines.orders.database import DatabaseError
from schemas.errors import RewindError

__all__ = [
    "CommandError",
    "InvalidCommandError",
    "CommandIdReusedError",
    "OrderNotFoundError",
    "CommandConflictError",
    "ConcurrentCommandError",
    "EventStoreUnavailableError",
    "CorruptEventStoreError",
]


class CommandError(RewindError):
    """A command was refused; ``status`` is the HTTP status it is answered with. Nothing was written."""

    status: ClassVar[int] = 400


class InvalidCommandError(CommandError):
    """The command's payload is outside its domain (a negative quantity, an unknown currency, a refund
    larger than what was paid, ...): the message names the field. Fix the command; retrying it as is fails again."""

    status: ClassVar[int] = 422


class CommandIdReusedError(InvalidCommandError):
    """A command id already answered was sent again with another body (or for another order).

    A retry must repeat the first command exactly; a new command needs a new command id.
    """


class OrderNotFoundError(CommandError):
    """The command names an order the event store does not hold. Place the order first (or check the id)."""

    status: ClassVar[int] = 404


class CommandConflictError(CommandError):
    """The command is not allowed in the order's current status (e.g. shipping an order whose
    inventory is not reserved), or PlaceOrder names an order that exists."""

    status: ClassVar[int] = 409


class ConcurrentCommandError(CommandConflictError):
    """Another command on the same order committed the seq this one was about to write.

    Retry with the same command id: it is decided again against the order's new state.
    """


class EventStoreUnavailableError(DatabaseError):
    """The event store's database did not answer within the connect/lock bound (down, unreachable, or
    locked by another writer for too long). Nothing was written; retry once the database is back."""

    status: ClassVar[int] = 503


class CorruptEventStoreError(RewindError):
    """An order's stored events do not fold (a gap, an impossible transition, undecodable bytes): the
    events table was written by something other than this service. The message names the order and seq."""
