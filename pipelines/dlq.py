"""Dead letters: how a bad event is described when it goes to ``orders.dlq``.

The record keeps the original key and bytes untouched (so it can be inspected or
redriven) and says in headers why and where it came from.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DeadLetter", "DLQ_HEADERS", "headers_to_dict"]

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
        return [(name, value.encode()) for name, value in zip(DLQ_HEADERS, values, strict=True)]


def headers_to_dict(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Decode Kafka headers into a str -> str dict (last value wins)."""
    return {name: (value or b"").decode() for name, value in (headers or [])}
