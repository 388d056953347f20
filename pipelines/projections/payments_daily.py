"""`payments-daily`: payments per currency and UTC day of the payment event's own time.

Counts and sums (exact minor units) authorized, failed and refunded payments. A
PaymentAuthorized adds its own ``authorizedMinor`` (``amountMinor`` before v2); a PaymentFailed carries no amount, so
it adds the order's total; a RefundIssued adds its ``amountMinor``. View key:
``<currency>:<day start, epoch ms>``, the day (UTC) of the event's own occurredAt and
the order's currency. Not windowed: a day row accepts changes whenever they arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipelines.projections.base import Change, IndexSpec, Row, ViewSpec
from pipelines.projections.counters import add_counters

__all__ = ["PaymentsDailyProjection", "DAY_MS", "SPEC"]

DAY_MS = 86_400_000


def _identity(key: str) -> Row:
    """The row of a day (key ``currency:dayStart``) with no changes yet."""
    currency, start = key.split(":", 1)
    return {
        "currency": currency,
        "dayStart": int(start),
        "authorizedCount": 0,
        "authorizedMinor": 0,
        "failedCount": 0,
        "failedMinor": 0,
        "refundedCount": 0,
        "refundedMinor": 0,
        "validFrom": None,
    }


# Each maps (event, order row after it) to the delta.
#: Event type -> the counter delta it contributes, from (event, the order row after it).
_DELTAS: dict[str, Callable[[Mapping[str, Any], Row], Row]] = {
    "PaymentAuthorized": lambda event, after: {"authorizedCount": 1, "authorizedMinor": event["authorizedMinor"]},
    "PaymentFailed": lambda event, after: {"failedCount": 1, "failedMinor": after["totalMinor"]},
    "RefundIssued": lambda event, after: {"refundedCount": 1, "refundedMinor": event["amountMinor"]},
}


class PaymentsDailyProjection:
    """Per-currency, per-UTC-day payment counters."""

    name = "payments-daily"
    key_field = "currency:dayStart"

    def deltas(self, event: Mapping[str, Any], after: Row) -> Sequence[tuple[str, Row]]:
        """At most one delta, keyed by the order's currency and the day of the event's own time."""
        env = event["envelope"]
        delta_of = _DELTAS.get(env["eventType"])
        if delta_of is None:
            return ()
        occurred_at = env["occurredAt"]
        # The day is the event's own time; the change becomes visible (valid_from) when
        # the order's running max event time does (Verdict.changes in pipelines.kernel), like every other view.
        return ((f"{after['currency']}:{occurred_at - occurred_at % DAY_MS}", delta_of(event, after)),)

    def partition_key(self, change: Change) -> str:
        """Days are grouped per currency."""
        return change.key.split(":", 1)[0]

    def apply(self, row: Row | None, change: Change) -> Row:
        """Add the change's counters to its day's row."""
        return add_counters(row, change, identity=_identity)


SPEC = ViewSpec(
    name=PaymentsDailyProjection.name, key_field=PaymentsDailyProjection.key_field, kind="rekeyed",
    build=lambda _grace_ms: PaymentsDailyProjection(),
    indexes=(IndexSpec(PaymentsDailyProjection.name, "authorized", "authorizedMinor", "ranking"),),
)
