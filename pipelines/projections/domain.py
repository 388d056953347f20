"""What each event field may hold, and what an event may say about its order.

Avro promises types, not meanings: a bit flip or a buggy producer can write a negative
quantity, a refund of a SKU the order never had, or an event stamped in the year 30000,
and every one of them decodes. The order fold (:mod:`pipelines.projections.order_lifecycle`)
refuses such an event with a reason, so no view ever folds it and no projection meets a
value it cannot handle. The rules are deliberately loose (every event a real order service
writes is inside them, and so is everything ``scripts/workload`` generates); they bound
what would otherwise break a view (a key that cannot be parsed, a sum past 64 bits, a
price looked up for a SKU that is not there):

* envelope: ``orderId`` not empty; ``seq`` >= 1; ``occurredAt`` in
  [:data:`MIN_EVENT_MS`, :data:`MAX_EVENT_MS`) (the epoch up to 2100);
* strings that key a view (``customerId``, ``sku``) not empty; a currency is an ISO 4217
  code (three capital letters, as the OrderPlaced v3 upcaster requires);
* a quantity is in 1..:data:`MAX_QUANTITY`; money (minor units) in 0..:data:`MAX_MINOR`,
  and so is a line's quantity x unit price;
* a payment or a refund is in the order's currency (``CurrencyMismatch``); a refund names
  only SKUs of the order (``UnknownSku``), at most the units ordered of each, and at most
  the money left to refund (``ImpossibleRefund``).

A value outside its domain is ``InvalidValue``, with the field named.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from pipelines.projections.base import Row

__all__ = [
    "Refusal",
    "PAYLOAD_CHECKS",
    "envelope_problem",
    "MIN_EVENT_MS",
    "MAX_EVENT_MS",
    "MAX_MINOR",
    "MAX_QUANTITY",
    "INVALID_VALUE",
    "UNKNOWN_SKU",
    "IMPOSSIBLE_REFUND",
    "CURRENCY_MISMATCH",
]

#: ``occurredAt`` bounds, epoch ms: [1970-01-01, 2100-01-01). A time outside them would move its
#: partition's stream time (:mod:`pipelines.kernel`, step 2) decades away and make every later
#: window change late, so the kernel refuses it before stream time moves.
MIN_EVENT_MS = 0
MAX_EVENT_MS = 4_102_444_800_000
#: Largest amount of money in minor units (10^13 major units): sums of thousands stay in 64 bits.
MAX_MINOR = 10**15
#: Largest quantity of one line.
MAX_QUANTITY = 1_000_000

INVALID_VALUE = "InvalidValue"
UNKNOWN_SKU = "UnknownSku"
IMPOSSIBLE_REFUND = "ImpossibleRefund"
CURRENCY_MISMATCH = "CurrencyMismatch"

_ISO_4217 = re.compile(r"[A-Z]{3}")
#: Currencies already found valid (at most 26^3): a set lookup instead of a regex per event.
_valid_currencies: set[str] = set()


class Refusal(NamedTuple):
    """Why the order fold refuses an event: its reason class and a message naming the field."""

    reason_class: str
    reason: str


def _show(value: Any) -> str:
    """A value for a reason message: its repr, cut short (a reason travels in a Kafka header)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _invalid(field: str, value: Any, domain: str) -> Refusal:
    return Refusal(INVALID_VALUE, f"{field} {_show(value)} is outside its domain: {domain}")


def _currency_problem(field: str, currency: str) -> Refusal | None:
    if currency in _valid_currencies:
        return None
    if _ISO_4217.fullmatch(currency) is None:
        return _invalid(field, currency, "an ISO 4217 code (three capital letters)")
    _valid_currencies.add(currency)
    return None


def envelope_problem(envelope: Mapping[str, Any]) -> str | None:
    """Why ``envelope``'s orderId, seq or occurredAt is outside its domain (an ``InvalidValue``
    reason), or None. The kernel tests the same bounds inline and calls this only to explain."""
    if not envelope["orderId"]:
        return "envelope.orderId '' is outside its domain: not empty"
    if envelope["seq"] < 1:
        return f"envelope.seq {envelope['seq']} is outside its domain: >= 1"
    occurred_at = envelope["occurredAt"]
    if not MIN_EVENT_MS <= occurred_at < MAX_EVENT_MS:
        return f"envelope.occurredAt {occurred_at} is outside its domain: {MIN_EVENT_MS} <= t < {MAX_EVENT_MS} (epoch ms, 1970..2100)"
    return None


def _placed(event: Mapping[str, Any], row: Row | None) -> Refusal | None:
    """OrderPlaced (v3): a customer, lines of positive quantity and bounded price, a bounded total in an ISO currency."""
    items = event["items"]
    for item in items:
        # One test per line on the way through (every order is placed once); _line_problem names the field.
        quantity, price = item["quantity"], item["unitPriceMinor"]
        if not item["sku"] or not 0 < quantity <= MAX_QUANTITY or price < 0 or quantity * price > MAX_MINOR:
            return _line_problem(items)
    total = event["total"]
    if not 0 <= total["amountMinor"] <= MAX_MINOR:
        return _invalid("total.amountMinor", total["amountMinor"], f"0..{MAX_MINOR}")
    if not event["customerId"]:
        return _invalid("customerId", event["customerId"], "not empty")
    currency = total["currency"]
    return None if currency in _valid_currencies else _currency_problem("total.currency", currency)


def _line_problem(items: Any) -> Refusal:
    """The first field of an order line outside its domain (only called when one is)."""
    for i, item in enumerate(items):
        quantity, price = item["quantity"], item["unitPriceMinor"]
        if not item["sku"]:
            return _invalid(f"items[{i}].sku", item["sku"], "not empty")
        if not 1 <= quantity <= MAX_QUANTITY:
            return _invalid(f"items[{i}].quantity", quantity, f"1..{MAX_QUANTITY}")
        if not 0 <= price <= MAX_MINOR:
            return _invalid(f"items[{i}].unitPriceMinor", price, f"0..{MAX_MINOR}")
        if quantity * price > MAX_MINOR:
            return _invalid(f"items[{i}]", f"{quantity} x {price}", f"a line's value is at most {MAX_MINOR}")
    raise AssertionError("_line_problem called on valid lines")


def _paid(event: Mapping[str, Any], row: Row | None) -> Refusal | None:
    """PaymentAuthorized (v2): a bounded amount in the order's currency."""
    assert row is not None  # the state machine allows a payment only after OrderPlaced
    amount = event["authorizedMinor"]
    if not 0 <= amount <= MAX_MINOR:
        return _invalid("authorizedMinor", amount, f"0..{MAX_MINOR}")
    if event["currency"] != row["currency"]:
        return Refusal(CURRENCY_MISMATCH, f"currency {_show(event['currency'])} is not the order's {row['currency']!r}")
    return None


def _refunded(event: Mapping[str, Any], row: Row | None) -> Refusal | None:
    """RefundIssued: in the order's currency, no more money than is left to refund, only units the order has.

    The state machine allows one refund per order (REFUNDED is final), so "left" is the
    order's total less what was refunded, and each SKU's limit is the units ordered.
    """
    assert row is not None  # the state machine allows a refund only after delivery
    if event["currency"] != row["currency"]:
        return Refusal(CURRENCY_MISMATCH, f"currency {_show(event['currency'])} is not the order's {row['currency']!r}")
    amount = event["amountMinor"]
    if not 0 <= amount <= MAX_MINOR:
        return _invalid("amountMinor", amount, f"0..{MAX_MINOR}")
    left = row["totalMinor"] - row["refundedMinor"]
    if amount > left:
        return Refusal(IMPOSSIBLE_REFUND, f"amountMinor {amount} is more than the {left} left to refund of the order's total {row['totalMinor']}")
    ordered: dict[str, int] = {}
    for item in row["items"]:
        ordered[item["sku"]] = ordered.get(item["sku"], 0) + item["quantity"]
    refunded: dict[str, int] = {}
    for i, line in enumerate(event["items"]):
        sku, quantity = line["sku"], line["quantity"]
        if not 1 <= quantity <= MAX_QUANTITY:
            return _invalid(f"items[{i}].quantity", quantity, f"1..{MAX_QUANTITY}")
        if sku not in ordered:
            return Refusal(UNKNOWN_SKU, f"items[{i}].sku {_show(sku)} is not in the order (its SKUs: {_show(sorted(ordered))})")
        refunded[sku] = total = refunded.get(sku, 0) + quantity
        if total > ordered[sku]:
            return Refusal(IMPOSSIBLE_REFUND, f"{total} units of {_show(sku)} refunded, but the order has {ordered[sku]}")
    return None


#: Event type -> its payload's check against the order row before it (None: not placed yet).
#: A type missing here carries nothing any view reads (reasons, carriers, ids).
PAYLOAD_CHECKS: dict[str, Callable[[Mapping[str, Any], Row | None], Refusal | None]] = {
    "OrderPlaced": _placed,
    "PaymentAuthorized": _paid,
    "RefundIssued": _refunded,
}
