"""An in-memory partition store for tests that drive the batch engine's stages without RocksDB."""

from __future__ import annotations

from typing import Any

__all__ = ["DictStore"]


class DictStore:
    """A partition store as the batch stages see it (:class:`pipelines.batch.stages.RowStore`), in memory."""

    def __init__(self) -> None:
        self.stream_time_ms: int | None = None
        self.values: dict[bytes, Any] = {}

    def get(self, key: bytes) -> Any:
        return self.values.get(key)

    def put(self, key: bytes, value: Any) -> None:
        self.values[key] = value
