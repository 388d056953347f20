"""Samples the pipelines' committed offsets while the soak runs, and keeps the longest stall.

A pipeline *stalls* while its input is pending (its group's committed offsets on the orders
topic are below the end) and none of its committed offsets (orders and its repartition
topics) moves. A stall is measured from the last sample that saw progress or no pending
input to the last sample that saw neither; samples that fail (the broker is down) extend
it, since nothing was committed meanwhile either. So a stall across a broker outage
includes the outage, and the report names the chaos events it overlapped.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from confluent_kafka import KafkaException

from scripts.chaos.probe import Position, Probe, total

__all__ = ["Monitor", "Stall", "Sample"]


@dataclass(frozen=True)
class Stall:
    """The longest stall seen: which pipeline, from when to when (seconds since the soak began)."""

    pipeline: str
    start_s: float
    end_s: float

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Sample:
    """A pipeline's last successful sample: committed offsets summed, and orders records not yet committed."""

    committed: int
    lag: int


class Monitor:
    """A daemon thread sampling every ``interval_s``; read :attr:`latest` and :attr:`longest` at any time."""

    def __init__(self, probe: Probe, *, orders_topic: str, groups: dict[str, str], t0: float, interval_s: float = 2.0) -> None:
        self._probe = probe
        self._orders_topic = orders_topic
        self._groups = groups  # pipeline -> consumer group
        self._t0 = t0
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-monitor", daemon=True)
        self._since: dict[str, float] = {}
        self._stalled_until: dict[str, float] = {}
        self._last_total: dict[str, int] = {}
        self._closed: list[Stall] = []
        self.latest: dict[str, Sample] = {}
        self.longest: Stall | None = None
        self.failed_samples = 0

    def start(self) -> None:
        self._thread.start()

    def stalls(self) -> list[Stall]:
        """Every stall seen so far, ended or not, in the order they ended."""
        return [*self._closed, *(Stall(p, self._since[p], until) for p, until in self._stalled_until.items())]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.sample()
            except KafkaException:
                self.failed_samples += 1

    def committed(self, pipeline: str) -> Position:
        """The pipeline's committed offsets on the orders topic and on each of its repartition topics."""
        group = self._groups[pipeline]
        return self._probe.committed(group, self._probe.pipeline_topics(group, self._orders_topic))

    def sample(self) -> None:
        """One round: every pipeline's committed offsets against the orders topic's end."""
        ends = self._probe.ends(self._orders_topic)
        now = time.monotonic() - self._t0
        for pipeline in self._groups:
            position = self.committed(pipeline)
            orders = position.get(self._orders_topic, {})
            lag = sum(max(0, end - orders.get(p, 0)) for p, end in ends.items())
            committed = total(position)
            self.latest[pipeline] = Sample(committed, lag)
            if lag == 0 or committed != self._last_total.get(pipeline) or pipeline not in self._since:
                if pipeline in self._stalled_until:
                    self._closed.append(Stall(pipeline, self._since[pipeline], self._stalled_until.pop(pipeline)))
                self._since[pipeline] = now
                self._last_total[pipeline] = committed
                continue
            self._stalled_until[pipeline] = now
            stall = Stall(pipeline, self._since[pipeline], now)
            if self.longest is None or stall.seconds > self.longest.seconds:
                self.longest = stall
