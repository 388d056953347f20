"""Counters of a running pipeline, exported to Prometheus and logged as progress."""

from __future__ import annotations

import json
import logging
import resource
import time
from dataclasses import asdict, dataclass, field

from prometheus_client import Counter

__all__ = ["PipelineStats", "EVENTS"]

log = logging.getLogger("rewind.live")

#: One counter family; ``outcome`` is in|applied|duplicate|dead_lettered|rekey_duplicate|late.
EVENTS = Counter("rewind_pipeline_events", "Events seen by a projection pipeline, by outcome", ["pipeline", "outcome"])


@dataclass
class PipelineStats:
    """Per-process counts. Invariant checked by tests: events_in == applied + duplicates + dead_lettered."""

    pipeline: str
    events_in: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    rekey_duplicates: int = 0
    late: int = 0
    view_updates: int = 0
    started_at: float = field(default_factory=time.monotonic)
    first_event_at: float | None = None
    last_event_at: float | None = None
    _last_log_at: float = field(default_factory=time.monotonic)
    _last_log_count: int = 0
    _exported: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int | str]:
        """The public counters (no private timing fields)."""
        hidden = {"started_at", "first_event_at", "last_event_at"}
        return {k: v for k, v in asdict(self).items() if not k.startswith("_") and k not in hidden}

    def events_per_s(self) -> float:
        """Events in per second between the first and the last event this process saw."""
        if self.first_event_at is None or self.last_event_at is None or self.last_event_at <= self.first_event_at:
            return 0.0
        return self.events_in / (self.last_event_at - self.first_event_at)

    def export(self) -> None:
        """Push the counters to Prometheus (called at progress time, not per event, to stay cheap)."""
        for outcome in ("events_in", "applied", "duplicates", "dead_lettered", "rekey_duplicates", "late"):
            value = getattr(self, outcome)
            EVENTS.labels(self.pipeline, outcome).inc(value - self._exported.get(outcome, 0))
            self._exported[outcome] = value

    def due(self, *, interval_s: float) -> bool:
        """True when the last progress line is older than ``interval_s``."""
        return time.monotonic() - self._last_log_at >= interval_s

    def log_progress(self, *, lag: dict[int, int] | None = None) -> None:
        """Log events/s since the last line and the per-partition lag of the source topic."""
        now = time.monotonic()
        rate = (self.events_in - self._last_log_count) / (now - self._last_log_at)
        self._last_log_at, self._last_log_count = now, self.events_in
        self.export()
        total_lag = sum(lag.values()) if lag else None
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        log.info(
            "%s: %d events (%.0f/s) applied=%d dup=%d dlq=%d late=%d lag=%s per-partition=%s peak-rss=%.0fMiB",
            self.pipeline, self.events_in, rate, self.applied, self.duplicates, self.dead_lettered, self.late,
            total_lag, json.dumps(lag or {}), rss_mb,
        )

    def summary_line(self) -> str:
        """One JSON line with every counter, printed at shutdown (tests parse it)."""
        return "REWIND_STATS " + json.dumps(self.as_dict(), sort_keys=True)
