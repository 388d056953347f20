"""Which offsets a replay reads: per partition, ``[start next_offset, stop next_offset)``.

Offsets conventions (see :mod:`state.contracts`): every offset in a plan is a
``next_offset`` – the next record to read. A partition is done when its
``next_offset`` reaches ``stop``; the record *at* ``stop`` is never read.

Three modes, by where each partition stops:

* ``to-end``: at the high watermark captured when the plan is made (records
  produced later are not part of this replay).
* ``as-of`` T: where the log's range facts prove that no record from there up to
  the high watermark can change the view as of T (:mod:`state.replay.logfacts`:
  the stop rule and its proof), else the high watermark. No lateness bound and no
  record timestamp is trusted: without facts, the replay reads to the high watermark.
* ``up-to`` T (used to build snapshots): at ``offsets_for_times(T + 1)``, else the
  high watermark. Every record before that offset has occurredAt <= T, so a
  complete fold of them has ``max_valid_from_ms <= T`` (see :mod:`state.snapshots`).

``offsets_for_times(ts)`` is Kafka's "earliest offset whose timestamp >= ts";
every record before it has a smaller timestamp.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

from schemas.errors import ConfigError
from state.errors import ReplayError

__all__ = [
    "ReplayMode",
    "ReplayPlan",
    "OffsetSource",
    "StopFacts",
    "KafkaOffsetSource",
    "plan_replay",
    "consumer_config",
]

ReplayMode = Literal["to-end", "as-of", "up-to"]


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What one replay reads. Offsets are next_offsets; ``stop`` is exclusive.

    ``offsets_at_as_of_ms`` (as-of/up-to modes) is, per partition, the first offset
    whose timestamp is > T (``offsets_for_times(T + 1)``, or the high watermark):
    where the replay would stop if no event were ever late; reported for operators.
    ``stop_proven`` (as-of mode): True when the stops come from log facts, False when
    the replay reads to the high watermarks because it had none.
    """

    topic: str
    mode: ReplayMode
    as_of_ms: int | None
    start_offsets: Mapping[int, int]
    stop_offsets: Mapping[int, int]
    high_watermarks: Mapping[int, int]
    offsets_at_as_of_ms: Mapping[int, int] | None = None
    partitions: tuple[int, ...] = field(default=())
    stop_proven: bool = False

    def __post_init__(self) -> None:
        if not self.partitions:
            object.__setattr__(self, "partitions", tuple(sorted(self.stop_offsets)))

    def records_to_read(self, partition: int | None = None) -> int:
        """How many offsets lie in [start, stop) (one partition, or all); control records included."""
        parts = self.partitions if partition is None else (partition,)
        return sum(max(0, self.stop_offsets[p] - self.start_offsets[p]) for p in parts)

    def with_start(self, start_offsets: Mapping[int, int]) -> ReplayPlan:
        """The same plan starting at ``start_offsets`` (a snapshot's next offsets).

        A start beyond the stop (a snapshot taken further than this replay reads) means
        nothing to read there; the start is kept so the result's position stays truthful.
        """
        return ReplayPlan(
            topic=self.topic, mode=self.mode, as_of_ms=self.as_of_ms,
            start_offsets=dict(start_offsets), stop_offsets=dict(self.stop_offsets),
            high_watermarks=dict(self.high_watermarks), offsets_at_as_of_ms=self.offsets_at_as_of_ms,
            partitions=self.partitions, stop_proven=self.stop_proven,
        )

    def end_offsets(self) -> dict[int, int]:
        """The next_offsets the replay ends at: max(start, stop) per partition."""
        return {p: max(self.start_offsets[p], self.stop_offsets[p]) for p in self.partitions}


class StopFacts(Protocol):
    """Facts about the log that prove where an as-of replay may stop (:class:`state.replay.logfacts.LogFacts`)."""

    def extend(self, highs: Mapping[int, int]) -> None:
        """Bring the facts up to ``highs`` (next_offsets, per partition)."""
        ...

    def stop_offset(self, partition: int, *, as_of_ms: int, high: int) -> int:
        """The proven stop of ``partition`` for T = ``as_of_ms`` (``high`` when nothing is proven)."""
        ...


class OffsetSource(Protocol):
    """The three broker questions a plan needs (a fake answers them in unit tests)."""

    def partitions(self, topic: str) -> list[int]:
        """Partition ids of ``topic``; ReplayError if it does not exist."""
        ...

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(low, high) watermark: first offset still stored, next offset to be written."""
        ...

    def offsets_for_times(self, topic: str, timestamps_ms: Mapping[int, int]) -> dict[int, int | None]:
        """Per partition, the earliest offset whose timestamp >= the given one (None: no such record)."""
        ...


def consumer_config(bootstrap: str, **extra: object) -> dict[str, object]:
    """Consumer settings for replay: assign() only, never commit, read committed, big fetches."""
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        # A group id is required by librdkafka; assign() without commits never creates the group.
        "group.id": "rewind-replay",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        # Small fetches, a short prefetch queue, and no 1 s back-off when it is full: measured on
        # a 1M-record topic, 3x the records/s of 64 MB fetches at a third of the memory.
        "fetch.max.bytes": 8 * 1024 * 1024,
        "max.partition.fetch.bytes": 1024 * 1024,
        "queued.min.messages": 20_000,
        "queued.max.messages.kbytes": 32 * 1024,
        "fetch.queue.backoff.ms": 5,
        "socket.connection.setup.timeout.ms": 5000,
        "log_level": 3,
    }
    config.update(extra)
    return config


class KafkaOffsetSource:
    """An :class:`OffsetSource` backed by a confluent-kafka Consumer (closed by :meth:`close`)."""

    def __init__(self, bootstrap: str, *, timeout_s: float = 15.0) -> None:
        self._consumer = Consumer(consumer_config(bootstrap))
        self._timeout_s = timeout_s

    def partitions(self, topic: str) -> list[int]:
        try:
            meta = self._consumer.list_topics(topic, timeout=self._timeout_s).topics.get(topic)
        except KafkaException as exc:
            raise ReplayError(f"could not read metadata of topic {topic}: {exc}") from exc
        if meta is None or meta.error is not None or not meta.partitions:
            reason = meta.error if meta is not None and meta.error is not None else "no partitions"
            raise ReplayError(f"topic {topic} cannot be replayed: {reason}")
        return sorted(meta.partitions)

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        try:
            low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=self._timeout_s)
        except KafkaException as exc:
            raise ReplayError(f"could not read the watermarks of {topic}[{partition}]: {exc}") from exc
        return int(low), int(high)

    def offsets_for_times(self, topic: str, timestamps_ms: Mapping[int, int]) -> dict[int, int | None]:
        query = [TopicPartition(topic, p, ts) for p, ts in timestamps_ms.items()]
        try:
            found = self._consumer.offsets_for_times(query, timeout=self._timeout_s)
        except KafkaException as exc:
            raise ReplayError(f"offsets_for_times failed on {topic}: {exc}") from exc
        # librdkafka answers -1 (OFFSET_END) when no record has a timestamp >= the one asked for.
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in found}

    def close(self) -> None:
        """Release the consumer."""
        self._consumer.close()


def _found_or_high(found: Mapping[int, int | None], high: Mapping[int, int]) -> dict[int, int]:
    """An offsets_for_times answer, with "no such record" (None) read as the high watermark."""
    out = {}
    for partition, hi in high.items():
        offset = found.get(partition)
        out[partition] = hi if offset is None else min(hi, offset)
    return out


def plan_replay(
    source: OffsetSource,
    topic: str,
    *,
    mode: ReplayMode,
    as_of_ms: int | None,
    facts: StopFacts | None = None,
) -> ReplayPlan:
    """Plan a replay of ``topic`` from its beginning; steps:

    1. partitions and (low, high) watermarks, captured now: the replay never reads past them;
    2. the stop per partition, by mode (module docstring); as of T, ``facts`` are first
       brought up to the high watermarks (None: no facts, read to the high watermarks);
    3. start = 0 per partition. A low watermark above 0 means records were deleted, so a
       replay from offset zero cannot rebuild the view: :class:`ReplayError`.
    """
    if (mode == "to-end") != (as_of_ms is None):
        raise ConfigError(f"mode {mode} {'takes no' if mode == 'to-end' else 'needs a'} time")
    # Step 1
    partitions = source.partitions(topic)
    marks = {p: source.watermarks(topic, p) for p in partitions}
    high = {p: hi for p, (_, hi) in marks.items()}
    deleted = {p: lo for p, (lo, _) in marks.items() if lo > 0}
    # Step 3 (checked first: nothing else matters if the log lost its beginning)
    if deleted:
        raise ReplayError(
            f"{topic} no longer holds its first records (low watermarks {deleted}); a replay from offset 0 "
            "cannot rebuild the view. The orders topic must keep everything (retention.ms=-1)."
        )
    # Step 2
    at_as_of: dict[int, int] | None = None
    proven = False
    if mode == "to-end":
        stop = dict(high)
    else:
        assert as_of_ms is not None
        at_as_of = _found_or_high(source.offsets_for_times(topic, {p: as_of_ms + 1 for p in partitions}), high)
        if mode == "up-to":
            stop = dict(at_as_of)
        elif facts is None:
            stop = dict(high)
        else:
            facts.extend(high)
            stop = {p: facts.stop_offset(p, as_of_ms=as_of_ms, high=hi) for p, hi in high.items()}
            proven = True
    return ReplayPlan(
        topic=topic, mode=mode, as_of_ms=as_of_ms,
        start_offsets={p: 0 for p in partitions}, stop_offsets=stop, high_watermarks=high,
        offsets_at_as_of_ms=at_as_of, partitions=tuple(partitions), stop_proven=proven,
    )
