"""The explicit upcasters: one function per breaking change of an event type, vN -> vN+1.

A version whose ``.avsc`` says ``"rewind.upcastFrom": N`` starts a new major shape that
Avro schema resolution cannot reach from vN (see :mod:`schemas.compat`). The function
registered here for ``(type, N)`` takes an event in vN's shape (the newest version of
that shape, after resolution) and returns it in vN+1's shape. :mod:`schemas.upcast`
chains it with the resolution steps, at decode, so every consumer sees the newest shape.

Contract of an upcaster:

* it gets a freshly decoded dict it may reuse (the envelope included) and returns the
  event in the next shape; it never sets ``envelope.schemaVersion`` (the chain does);
* it is pure: no I/O, no clock, the same output for the same input (replays repeat it);
* data it cannot carry over raises :class:`UpcastFieldError` naming the field; the event
  is then dead-lettered as ``UpcastError`` with that field in the reason, never dropped.
  Any other exception is dead-lettered too, with the exception named.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["Upcaster", "UpcastFieldError", "UPCASTERS", "upcaster"]

#: An event dict of one shape -> the same event in the next shape.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

#: (event type, from version) -> the upcaster to from version + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class UpcastFieldError(ValueError):
    """Raised by an upcaster: ``field`` (a path such as ``currency``) holds data the next shape cannot carry."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the decorated function as ``event_type``'s upcaster from ``from_version`` to the next."""

    def register(fn: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in UPCASTERS:
            raise ValueError(f"two upcasters for {event_type} v{from_version}")
        UPCASTERS[key] = fn
        return fn

    return register


_ISO_4217 = re.compile(r"[A-Z]{3}")


@upcaster("OrderPlaced", 2)
def order_placed_total_as_money(event: dict[str, Any]) -> dict[str, Any]:
    """OrderPlaced v2 -> v3: ``totalMinor`` + ``currency`` become ``total: Money{amountMinor, currency}``.

    v2's currency was free text; Money's is an ISO 4217 code (three capital letters), so a
    v2 event whose currency is not one cannot be carried over (UpcastFieldError on ``currency``).
    """
    currency = event.pop("currency")
    if not isinstance(currency, str) or not _ISO_4217.fullmatch(currency):
        raise UpcastFieldError("currency", f"{currency!r} is not an ISO 4217 code (three capital letters)")
    event["total"] = {"amountMinor": event.pop("totalMinor"), "currency": currency}
    return event
