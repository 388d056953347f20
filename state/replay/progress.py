"""Progress of a replay: a rich progress bar (events/s, ETA) with one line per partition.

The engine reports offsets, not events: ``update(next_offsets, records=n)``. The total
bar counts offsets read out of the plan's total (records and never-delivered control
offsets alike), so its ETA is honest; events/s counts records actually folded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeRemainingColumn
from rich.text import Text

from state.replay.plan import ReplayPlan

__all__ = ["ReplayProgress", "NullProgress", "RichProgress"]

#: More partitions than this get one total line only (a screen of bars helps nobody).
_MAX_PARTITION_LINES = 24


class ReplayProgress(Protocol):
    """What the engine reports while it runs."""

    def start(self, plan: ReplayPlan, *, description: str) -> None:
        """The plan is known (start offsets may be a snapshot's)."""
        ...

    def update(self, next_offsets: Mapping[int, int], *, records: int) -> None:
        """Partitions reached ``next_offsets``; ``records`` more records were folded."""
        ...

    def stage(self, text: str) -> None:
        """A step after folding started (writing fold state, publishing, ...)."""
        ...

    def finish(self) -> None:
        """Done (or failed): release the terminal."""
        ...


class NullProgress:
    """Reports nothing (tests, library use)."""

    def start(self, plan: ReplayPlan, *, description: str) -> None:
        """Ignore."""

    def update(self, next_offsets: Mapping[int, int], *, records: int) -> None:
        """Ignore."""

    def stage(self, text: str) -> None:
        """Ignore."""

    def finish(self) -> None:
        """Ignore."""


class _EventsPerSecond(ProgressColumn):
    """Records folded per second since the start (the total line only)."""

    def render(self, task: Task) -> Text:
        events = task.fields.get("events")
        started = task.fields.get("started")
        if events is None or not started:
            return Text("")
        elapsed = max(time.monotonic() - started, 1e-9)
        return Text(f"{events / elapsed:,.0f} ev/s", style="progress.data.speed")


class RichProgress:
    """A live rich display: total (offsets, events/s, ETA) and each partition's next_offset / stop."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _EventsPerSecond(), TimeRemainingColumn(),
            console=console or Console(stderr=True), transient=False, refresh_per_second=4,
        )
        self._total: TaskID | None = None
        self._tasks: dict[int, TaskID] = {}
        self._start: dict[int, int] = {}
        self._read: dict[int, int] = {}
        self._events = 0

    def start(self, plan: ReplayPlan, *, description: str) -> None:
        """Show the bars: one total, and one per partition with something to read."""
        self._progress.start()
        self._start = dict(plan.start_offsets)
        self._total = self._progress.add_task(description, total=plan.records_to_read(), events=0, started=time.monotonic())
        parts = [p for p in plan.partitions if plan.records_to_read(p) > 0]
        if len(parts) <= _MAX_PARTITION_LINES:
            for p in parts:
                self._tasks[p] = self._progress.add_task(
                    f"  p{p} {plan.start_offsets[p]:,}..{plan.stop_offsets[p]:,}", total=plan.records_to_read(p)
                )

    def update(self, next_offsets: Mapping[int, int], *, records: int) -> None:
        """Advance the partitions' bars to ``next_offsets`` and the total to their sum."""
        if self._total is None:
            return
        self._events += records
        for p, next_offset in next_offsets.items():
            self._read[p] = next_offset - self._start.get(p, 0)
            task = self._tasks.get(p)
            if task is not None:
                self._progress.update(task, completed=self._read[p])
        self._progress.update(self._total, completed=sum(self._read.values()), events=self._events)

    def stage(self, text: str) -> None:
        """Show what happens now in the total line (before the bars start: a line of its own)."""
        if self._total is not None:
            self._progress.update(self._total, description=text)
        else:
            self._progress.console.print(text)

    def finish(self) -> None:
        """Stop the live display (the final state stays on screen)."""
        self._progress.stop()
