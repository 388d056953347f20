"""The Quix engine's two metrics that Quix does not hand out: dead letters by reason, and checkpoint times.

The batch engine counts both in its own loop (:mod:`pipelines.batch.engine`); here they come
from the places Quix's run passes through (:mod:`pipelines.live.application` wires them).
"""

from __future__ import annotations

import time
from typing import Any

from quixstreams.internal_producer import InternalProducer

from pipelines.dlq import DeadLetter
from pipelines.live.outputs import Outputs
from pipelines.live.stats import PipelineStats

__all__ = ["CountingOutputs", "time_checkpoints"]


class CountingOutputs(Outputs):
    """:class:`Outputs` that counts each dead letter it produces by reason class (:meth:`PipelineStats.count_dead_letter`)."""

    def __init__(self, producer: InternalProducer, *, dlq_topic: str, view_topic: str, stats: PipelineStats) -> None:
        super().__init__(producer, dlq_topic=dlq_topic, view_topic=view_topic)
        self._stats = stats

    def dead_letter(self, letter: DeadLetter) -> None:
        super().dead_letter(letter)
        self._stats.count_dead_letter(letter.reason_class)


def time_checkpoints(context: Any, stats: PipelineStats) -> None:
    """Time every checkpoint commit of Quix's processing ``context`` into ``stats`` (:meth:`PipelineStats.observe_checkpoint`).

    Quix calls ``commit_checkpoint`` after every message; it commits only an expired (or
    forced) checkpoint that holds offsets, then starts a new one. So a call that left a new
    checkpoint behind a non-empty one is a commit, and only those are timed. Relies on
    ``ProcessingContext._checkpoint`` of the pinned quixstreams (as the application does on
    other private members).
    """
    commit = context.commit_checkpoint

    def timed_commit(force: bool = False, revoking: bool = False) -> None:
        before = context._checkpoint
        started = time.monotonic()
        commit(force=force, revoking=revoking)
        if before is not None and context._checkpoint is not before and not before.empty():
            stats.observe_checkpoint(time.monotonic() - started)

    context.commit_checkpoint = timed_commit
