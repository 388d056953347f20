"""Stand-ins for what Quix hands a live step (per-key State, message context), for broker-free tests."""

from __future__ import annotations

from typing import Any

__all__ = ["FakeState", "FakeContext"]


class FakeState:
    """Quix's per-key State over a dict: the calls the live steps make."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def get_bytes(self, key: bytes, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set_bytes(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def exists(self, key: str) -> bool:
        return key in self.data


class FakeContext:
    """``quixstreams.message_context()``: where the current record came from."""

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
