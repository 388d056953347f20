"""Stand-ins for what Quix hands a live step (per-key State, message context), for broker-free tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from quixstreams import State

__all__ = ["FakeState", "FakeContext", "FakeTransaction"]


class FakeTransaction:
    """Quix's PartitionTransaction over a dict keyed by (prefix, key): the calls
    ``quixstreams.state.base.state.TransactionState`` makes (partition-wide state)."""

    def __init__(self) -> None:
        self.data: dict[tuple[bytes, Any], Any] = {}

    def get(self, key: Any, prefix: bytes, default: Any = None, timestamp: int | None = None) -> Any:
        return self.data.get((prefix, key), default)

    def set(self, key: Any, value: Any, prefix: bytes, timestamp: int | None = None, ttl: Any = None) -> None:
        self.data[(prefix, key)] = value


class FakeState(State[Any, Any]):
    """Quix's per-key State over a dict. States of one partition share ``transaction``
    (pass the same one to model that)."""

    def __init__(self, transaction: FakeTransaction | None = None) -> None:
        self.data: dict[Any, Any] = {}
        self._transaction = transaction if transaction is not None else FakeTransaction()

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, ttl: timedelta | None = None) -> None:
        self.data[key] = value

    def get_bytes(self, key: bytes, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set_bytes(self, key: bytes, value: bytes, ttl: timedelta | None = None) -> None:
        self.data[key] = value

    def exists(self, key: str) -> bool:
        return key in self.data

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


class FakeContext:
    """``quixstreams.message_context()``: where the current record came from."""

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
