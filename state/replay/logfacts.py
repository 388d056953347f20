"""Facts about the orders log that prove where a replay as of T may stop reading.

The contract
------------
A *range fact* of partition p is ``(start, end, min_event_ms)``: among the records at
offsets ``[start, end)`` (next_offset convention: ``end`` is not in the range), the
smallest ``occurredAt`` of any record that decodes is ``min_event_ms`` (None: none
decodes). A Kafka log is append-only, so a range fact never goes stale: whoever scans
the same offsets writes the same fact, and a fact file can be merged, re-read or lost
without ever being wrong (losing one only costs a rescan). The facts are about the
log, not about a view, so a view that has never run live gets exact answers too.
Facts are per topic *id*: a topic deleted and created again under the same name has
other records at the same offsets, and none of the old facts.

Per partition the facts are contiguous ranges from offset 0 up to ``covered_end``.
:meth:`LogFacts.extend` scans ``[covered_end, high)`` to bring them up to a high
watermark, in ranges of at most ``range_records`` offsets.

The stop rule, and why it is exact
----------------------------------
:meth:`LogFacts.stop_offset` answers, for T and a partition read up to ``high``: the
smallest range start ``s`` such that every range from ``s`` up to ``high`` has
``min_event_ms`` None or > T (``high`` itself when the last range does not qualify).
A replay as of T that reads ``[0, s)`` and stops gives the same view as one that reads
``[0, high)``. Proof, for any record r at an offset in ``[s, high)``, by the kernel's
steps (:mod:`pipelines.kernel`):

1. r does not decode, or its key is not its orderId: a dead letter; no order row and no
   view change depends on it.
2. r's order is already cut (its as-of prefix has ended): ``beyond``; nothing changes.
3. The order fold says duplicate or rejects r: the order row is unchanged, no change.
4. The fold applies r: the new row's validFrom is the running max of occurredAt, so it
   is >= r.occurredAt > T (the facts): r is ``beyond`` and cuts its order, which by 2
   makes every later record of that order a no-op too.

So no record in ``[s, high)`` changes an order row or emits a view change, whatever its
record timestamp says: a late event, a record stamped hours ahead of its neighbours, or
one stamped by the wall clock because its producer gave no timestamp are each judged
by their ``occurredAt``. Only what a replay counts (events in, beyond, dead letters)
differs from a read to ``high``, never the view. No lateness bound is assumed anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

from schemas.errors import CodecError
from state.errors import ReplayError
from state.replay.reader import BoundedReader, PartitionRange

__all__ = ["RangeFact", "LogFacts", "RecordSource", "DEFAULT_RANGE_RECORDS", "facts_path"]

log = logging.getLogger(__name__)

#: Offsets per range fact: finer ranges let a replay stop nearer to T; coarser ones keep the file small.
DEFAULT_RANGE_RECORDS = 2048

#: Reads ``(partition, offset, value)`` of every record in ``{partition: (start, stop)}``
#: (stop exclusive), in offset order within each partition.
RecordSource = Callable[[Mapping[int, tuple[int, int]]], Iterable[tuple[int, int, bytes | None]]]


@dataclass(frozen=True, slots=True)
class RangeFact:
    """Among the records at offsets ``[start, end)`` of one partition, the smallest occurredAt
    (epoch ms) of any that decodes; None when none decodes (or the range holds no data records)."""

    start: int
    end: int
    min_event_ms: int | None


def facts_path(root: Path, topic: str, topic_id: str) -> Path:
    """Where the facts of ``topic`` (with Kafka topic id ``topic_id``) live under ``root``."""
    return Path(root) / f"{topic}.{topic_id}.json"


class LogFacts:
    """The range facts of one topic, kept in a JSON file (None: in memory only).

    Not thread-safe; two processes may share a file: each merges what is on disk before
    it writes (facts are deterministic, so either side's fact for a range is right).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        read: RecordSource,
        decode: Callable[[bytes], Mapping[str, Any]],
        range_records: int = DEFAULT_RANGE_RECORDS,
    ) -> None:
        if range_records < 1:
            raise ValueError(f"range_records must be >= 1, got {range_records}")
        self.path = path
        self._read = read
        self._decode = decode
        self._range_records = range_records
        self.ranges: dict[int, list[RangeFact]] = self._load() if path is not None else {}
        #: Records scanned by this object (for progress and benchmarks).
        self.records_scanned = 0

    def covered_end(self, partition: int) -> int:
        """The next_offset up to which ``partition`` has facts (0: none)."""
        ranges = self.ranges.get(partition)
        return ranges[-1].end if ranges else 0

    def extend(self, highs: Mapping[int, int]) -> None:
        """Scan each partition from its covered end up to ``highs[p]`` (exclusive), in one read, and save."""
        todo = {p: (self.covered_end(p), high) for p, high in highs.items() if self.covered_end(p) < high}
        if not todo:
            return
        scans = {p: _RangeScan(start, self._range_records) for p, (start, _) in todo.items()}
        decode = self._decode
        for partition, offset, value in self._read(todo):
            self.records_scanned += 1
            occurred_at = None
            if value is not None:
                try:
                    occurred_at = decode(value)["envelope"]["occurredAt"]
                except CodecError:
                    pass  # a dead letter in every replay: it has no event time to prove anything with
            scans[partition].add(offset, occurred_at)
        for partition, scan in scans.items():
            self.ranges.setdefault(partition, []).extend(scan.finish(todo[partition][1]))
        if self.path is not None:
            self._save()

    def stop_offset(self, partition: int, *, as_of_ms: int, high: int) -> int:
        """Where a replay as of ``as_of_ms`` may stop reading ``partition`` (module docstring: the
        stop rule). ``high`` when the facts do not reach ``high`` or prove nothing."""
        ranges = self.ranges.get(partition, [])
        if self.covered_end(partition) < high:
            return high
        stop = high
        for fact in reversed(ranges):
            if fact.start >= high:
                continue  # facts scanned past this replay's high watermark
            if fact.min_event_ms is not None and fact.min_event_ms <= as_of_ms:
                break
            stop = fact.start
        return stop

    def _load(self) -> dict[int, list[RangeFact]]:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable log facts %s (%s); they will be rescanned", self.path, exc)
            return {}
        out: dict[int, list[RangeFact]] = {}
        for partition, items in data.get("partitions", {}).items():
            ranges = [RangeFact(int(s), int(e), None if m is None else int(m)) for s, e, m in items]
            if _contiguous_from_zero(ranges):
                out[int(partition)] = ranges
            else:
                log.warning("ignoring non-contiguous log facts of partition %s in %s", partition, self.path)
        return out

    def _save(self) -> None:
        """Merge with what is on disk (the longer coverage per partition wins), then write atomically."""
        assert self.path is not None
        on_disk = self._load()
        for partition, ranges in on_disk.items():
            if ranges[-1].end > self.covered_end(partition):
                self.ranges[partition] = ranges
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"version": 1, "partitions": {str(p): [[f.start, f.end, f.min_event_ms] for f in r] for p, r in sorted(self.ranges.items())}}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(body, out, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class _RangeScan:
    """Builds the range facts of one partition from its records, in offset order."""

    def __init__(self, start: int, size: int) -> None:
        self._size = size
        self._start = start
        self._lowest: int | None = None
        self.facts: list[RangeFact] = []

    def add(self, offset: int, occurred_at: int | None) -> None:
        """One record (``occurred_at`` None: it does not decode)."""
        while offset >= self._start + self._size:  # close the full ranges before this record
            self._close(self._start + self._size)
        if occurred_at is not None and (self._lowest is None or occurred_at < self._lowest):
            self._lowest = occurred_at

    def finish(self, high: int) -> list[RangeFact]:
        """Close every range up to ``high`` (control records and gaps included) and return them all."""
        while self._start < high:
            self._close(min(self._start + self._size, high))
        return self.facts

    def _close(self, end: int) -> None:
        self.facts.append(RangeFact(self._start, end, self._lowest))
        self._start, self._lowest = end, None


def _contiguous_from_zero(ranges: list[RangeFact]) -> bool:
    expected = 0
    for fact in ranges:
        if fact.start != expected or fact.end <= fact.start:
            return False
        expected = fact.end
    return True


def kafka_record_source(bootstrap: str, topic: str) -> RecordSource:
    """A :data:`RecordSource` over a Kafka topic (read_committed, assign only, no commits)."""
    def read(ranges: Mapping[int, tuple[int, int]]) -> Iterator[tuple[int, int, bytes | None]]:
        reader = BoundedReader(bootstrap, topic, [PartitionRange(p, a, b) for p, (a, b) in ranges.items()], batch_size=5_000)
        for batch in reader.batches():
            for record in batch:
                yield record.partition(), record.offset(), record.value()

    return read


def kafka_topic_id(bootstrap: str, topic: str, *, timeout_s: float = 15.0) -> str:
    """The Kafka topic id of ``topic`` (:class:`ReplayError` when it cannot be described)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    try:
        future = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout_s)[topic]
        return str(future.result(timeout=timeout_s).topic_id)
    except KafkaException as exc:
        raise ReplayError(f"could not describe topic {topic}: {exc}") from exc
