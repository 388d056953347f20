"""Counters of a running pipeline, exported to Prometheus and logged as progress.

The Prometheus metrics here are process-wide and outlive a run: ``rewind run`` starts a new
run (a new :class:`PipelineStats`) after a broker outage, and each run pushes only its own
increments (:meth:`PipelineStats.export`), so the counters never go back. They belong to no
registry: :class:`pipelines.metrics.PipelineCollector` serves them, after pushing the current
run's counts, so a scrape sees the counts as of that scrape.
"""

from __future__ import annotations

import json
import logging
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from prometheus_client import Counter, Histogram

__all__ = ["PipelineStats", "PendingCounts", "EVENTS", "DEAD_LETTERS", "CHECKPOINT_SECONDS"]

log = logging.getLogger("rewind.live")

#: ``outcome`` is events_in|applied|duplicates|dead_lettered|rekey_duplicates|late (the fields of PipelineStats).
EVENTS = Counter("rewind_pipeline_events", "Events seen by a projection pipeline, by outcome", ["pipeline", "outcome"],
                 registry=None)
#: Records written to the DLQ, by their ``rewind.reason.class`` header (late window changes of applied events included).
DEAD_LETTERS = Counter("rewind_pipeline_dead_letters", "Records a projection pipeline wrote to the dead-letter topic, by reason class",
                       ["pipeline", "reason"], registry=None)
#: One checkpoint: the Kafka transaction's commit (offsets with it) and, in the batch engine, the stores' writes.
CHECKPOINT_SECONDS = Histogram(
    "rewind_pipeline_checkpoint_seconds", "Time to commit one checkpoint (Kafka transaction and state)", ["pipeline"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=None,
)
_OUTCOMES = ("events_in", "applied", "duplicates", "dead_lettered", "rekey_duplicates", "late")
#: Every counter of a run (the outcomes and the view records published).
_COUNTS = (*_OUTCOMES, "view_updates")
#: export() runs on the pipeline's thread and on the metrics server's (at each scrape).
_EXPORT_LOCK = threading.Lock()


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
    _lag: dict[int, int] = field(default_factory=dict)
    _lag_at: float = float("-inf")

    def as_dict(self) -> dict[str, int | str]:
        """The public counters (no private timing fields)."""
        hidden = {"started_at", "first_event_at", "last_event_at"}
        return {k: v for k, v in asdict(self).items() if not k.startswith("_") and k not in hidden}

    def events_per_s(self) -> float:
        """Orders events in per second, from the first event to the last record this process folded (either step of a re-keyed view)."""
        if self.first_event_at is None or self.last_event_at is None or self.last_event_at <= self.first_event_at:
            return 0.0
        return self.events_in / (self.last_event_at - self.first_event_at)

    def export(self) -> None:
        """Push the counters' increments since the last export to :data:`EVENTS` (at progress time, at a
        scrape and at the end of a run: not per event, to stay cheap). Safe from any thread."""
        with _EXPORT_LOCK:
            for outcome in _OUTCOMES:
                value = getattr(self, outcome)
                EVENTS.labels(self.pipeline, outcome).inc(value - self._exported.get(outcome, 0))
                self._exported[outcome] = value

    def count_dead_letter(self, reason_class: str) -> None:
        """Count one record written to the DLQ under ``reason_class`` (:data:`DEAD_LETTERS`)."""
        DEAD_LETTERS.labels(self.pipeline, reason_class).inc()

    def add_counts(self, other: PipelineStats) -> None:
        """Add ``other``'s public counters to these (the Prometheus counters are not touched)."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def add(self, pending: PendingCounts) -> None:
        """Add the counts of a committed transaction (the batch engine's :class:`PendingCounts`)."""
        self.add_counts(pending)
        for reason_class, count in pending.dead_letters.items():
            DEAD_LETTERS.labels(self.pipeline, reason_class).inc(count)

    def observe_checkpoint(self, seconds: float) -> None:
        """Record how long one committed checkpoint took (:data:`CHECKPOINT_SECONDS`)."""
        CHECKPOINT_SECONDS.labels(self.pipeline).observe(seconds)

    def sample_lag(self, probe: Callable[[], dict[int, int]], *, every_s: float = 1.0) -> None:
        """Keep ``probe()`` (lag per source partition) as :meth:`lag`, at most once per ``every_s``; the loop calls it."""
        now = time.monotonic()
        if now - self._lag_at >= every_s:
            self._lag, self._lag_at = probe(), now

    def lag(self) -> dict[int, int]:
        """The last lag per source partition seen by :meth:`sample_lag` or :meth:`log_progress` (empty: none yet)."""
        return dict(self._lag)

    def due(self, *, interval_s: float) -> bool:
        """True when the last progress line is older than ``interval_s``."""
        return time.monotonic() - self._last_log_at >= interval_s

    def log_progress(self, *, lag: dict[int, int] | None = None) -> None:
        """Log events/s since the last line and the per-partition lag of the source topic."""
        now = time.monotonic()
        rate = (self.events_in - self._last_log_count) / (now - self._last_log_at)
        self._last_log_at, self._last_log_count = now, self.events_in
        self.export()
        if lag is not None:
            self._lag, self._lag_at = dict(lag), now
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


@dataclass
class PendingCounts(PipelineStats):
    """The counts of an open transaction: :meth:`PipelineStats.add` them to the run's stats when it
    commits, :meth:`reset` them when it aborts, so records redone after an abort count once."""

    #: Dead letters per reason class, not yet in :data:`DEAD_LETTERS`.
    dead_letters: dict[str, int] = field(default_factory=dict)

    def count_dead_letter(self, reason_class: str) -> None:
        self.dead_letters[reason_class] = self.dead_letters.get(reason_class, 0) + 1

    def reset(self) -> None:
        """Forget every count (after they were added, or their transaction aborted)."""
        for name in _COUNTS:
            setattr(self, name, 0)
        self.dead_letters.clear()
