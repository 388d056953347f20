"""Dead letters: how a bad event is described when it goes to ``orders.dlq``.

The record keeps the original key and bytes untouched (so it can be inspected or
redriven) and says in headers why and where it came from.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DeadLetter", "DLQ_HEADERS", "PARKED_BEHIND_HEADER", "REDRIVE_OF_HEADER", "headers_to_dict", "redrive_of"]

#: Header names, in one place.
DLQ_HEADERS = (
    "rewind.reason.class",
    "rewind.reason.message",
    "rewind.source.topic",
    "rewind.source.partition",
    "rewind.source.offset",
    "rewind.pipeline",
    "rewind.dead_lettered_at",
)
#: Optional: on a ``Parked`` letter, ``topic/partition@offset`` of the letter its order is parked behind.
PARKED_BEHIND_HEADER = "rewind.parked.behind"
#: Optional: on a redriven orders record (:mod:`pipelines.dlq_redrive`), and on a letter of one,
#: ``topic/partition@offset`` of the original record it is a copy of.
REDRIVE_OF_HEADER = "rewind.redrive.of"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A bad record plus why (reason class and message) and where it came from."""

    key: bytes | None
    value: bytes | None
    reason_class: str
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    pipeline: str
    timestamp_ms: int
    #: ``topic/partition@offset`` of the letter the order is parked behind (a ``Parked`` letter only).
    parked_behind: str | None = None
    #: The source record's ``rewind.redrive.of`` (the source is a redriven copy of that record).
    redrive_of: str | None = None

    def headers(self, *, now_ms: int | None = None) -> list[tuple[str, bytes]]:
        """Kafka headers that say why and where from (values UTF-8)."""
        values = (
            self.reason_class,
            self.reason,
            self.source_topic,
            str(self.source_partition),
            str(self.source_offset),
            self.pipeline,
            str(now_ms if now_ms is not None else int(time.time() * 1000)),
        )
        headers = [(name, value.encode()) for name, value in zip(DLQ_HEADERS, values, strict=True)]
        if self.parked_behind is not None:
            headers.append((PARKED_BEHIND_HEADER, self.parked_behind.encode()))
        if self.redrive_of is not None:
            headers.append((REDRIVE_OF_HEADER, self.redrive_of.encode()))
        return headers


def headers_to_dict(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Decode Kafka headers into a str -> str dict (last value wins)."""
    return {name: (value or b"").decode() for name, value in (headers or [])}


def redrive_of(headers: Sequence[tuple[str, bytes | None]] | None) -> str | None:
    """The ``rewind.redrive.of`` header of an orders record (None: not a redriven copy). Cheap on the
    hot path: a record without headers costs one test."""
    if not headers:
        return None
    for name, value in headers:
        if name == REDRIVE_OF_HEADER:
            return (value or b"").decode(errors="replace")
    return None
