"""`revenue-hourly`: revenue per currency in tumbling one-hour event-time windows.

Revenue is recognised at OrderDelivered (+ order total) and reduced at RefundIssued
(- refund amount), in the window of that event's own occurredAt. View key:
``<currency>:<window start, epoch ms>``. A change whose window closed more than
``grace_ms`` before its source partition's stream time is late: the kernel
(:mod:`pipelines.kernel`, step 5) dead-letters it, never silently drops it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.projections.base import Change, IndexSpec, Row, ViewSpec
from pipelines.projections.counters import add_counters

__all__ = ["RevenueHourlyProjection", "HOUR_MS", "DEFAULT_GRACE_MS", "SPEC"]

HOUR_MS = 3_600_000
DEFAULT_GRACE_MS = 600_000


class RevenueHourlyProjection:
    """Tumbling windows of exact revenue per currency."""

    name = "revenue-hourly"
    key_field = "currency:windowStart"

    def __init__(self, *, window_ms: int = HOUR_MS, grace_ms: int = DEFAULT_GRACE_MS) -> None:
        self.window_ms = window_ms
        self.grace_ms = grace_ms

    def window_start(self, timestamp_ms: int) -> int:
        """Start (inclusive) of the window holding ``timestamp_ms``."""
        return timestamp_ms - timestamp_ms % self.window_ms

    def deltas(self, event: Mapping[str, Any], after: Row) -> Sequence[tuple[str, Row]]:
        """At most one delta, keyed by currency and the window of the event's own time."""
        env = event["envelope"]
        kind = env["eventType"]
        if kind == "OrderDelivered":
            delta = {"revenueMinor": after["totalMinor"], "deliveries": 1, "refunds": 0}
        elif kind == "RefundIssued":
            delta = {"revenueMinor": -event["amountMinor"], "deliveries": 0, "refunds": 1}
        else:
            return ()
        # The window is the event's own time; the change becomes visible (valid_from) when
        # the order's running max event time does (Verdict.changes in pipelines.kernel), like every other view.
        return ((f"{after['currency']}:{self.window_start(env['occurredAt'])}", delta),)

    def partition_key(self, change: Change) -> str:
        """Windows are grouped (and stream time tracked) per currency."""
        return change.key.split(":", 1)[0]

    def late_by_ms(self, view_key: str, *, stream_time_ms: int) -> int:
        """How far past its window's end + grace a change to ``view_key`` arrives (0: on time).

        A window [start, start + window_ms) accepts changes while stream time < end + grace;
        stream time is the source partition's, at the record's offset (:mod:`pipelines.kernel`).
        """
        end = int(view_key.split(":", 1)[1]) + self.window_ms
        return stream_time_ms - (end + self.grace_ms) + 1 if stream_time_ms >= end + self.grace_ms else 0

    def apply(self, row: Row | None, change: Change) -> Row:
        """Add the change to its window's row."""
        return add_counters(row, change, identity=self._identity)

    def _identity(self, key: str) -> Row:
        """The row of a window (key ``currency:windowStart``) with no changes yet."""
        currency, start = key.split(":", 1)
        return {
            "currency": currency,
            "windowStart": int(start),
            "windowEnd": int(start) + self.window_ms,
            "revenueMinor": 0,
            "deliveries": 0,
            "refunds": 0,
            "validFrom": None,
        }


SPEC = ViewSpec(
    name=RevenueHourlyProjection.name, key_field=RevenueHourlyProjection.key_field, kind="rekeyed",
    build=lambda grace_ms: RevenueHourlyProjection(grace_ms=DEFAULT_GRACE_MS if grace_ms is None else grace_ms),
    indexes=(IndexSpec(RevenueHourlyProjection.name, "revenue", "revenueMinor", "ranking"),),
    window_ms=HOUR_MS, grace_ms=DEFAULT_GRACE_MS,
)
