"""Stand-ins for what Quix hands a live step (per-key State, message context), for broker-free tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

from quixstreams import State

from pipelines.live import steps as live_steps
from state.replay.fold import RawRecord

__all__ = ["FakeState", "FakeContext", "FakeTransaction", "drive_live_step"]


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


def drive_live_step(step: Callable[..., Iterable[Any]], recs: Iterable[RawRecord], *,
                    transactions: dict[int, FakeTransaction] | None = None,
                    states: dict[tuple[int, bytes | None], FakeState] | None = None) -> Iterator[Any]:
    """Every output item of a live step 1 fed ``recs`` as one process's Quix would feed it.

    One FakeTransaction per partition, one FakeState per (partition, key), the message
    context set to each record's position, the record's own timestamp. Pass the same
    ``transactions`` and ``states`` to a second call to model a restart with recovered state.
    """
    transactions = transactions if transactions is not None else {}
    states = states if states is not None else {}
    context = FakeContext("orders", 0, 0)
    with mock.patch.object(live_steps, "message_context", lambda: context):
        for r in recs:
            context.partition, context.offset = r.partition(), r.offset()
            state = states.setdefault((r.partition(), r.key()), FakeState(transactions.setdefault(r.partition(), FakeTransaction())))
            value = r.value()
            assert value is not None, "a live step is never handed a tombstone here"
            yield from step(value, r.key(), r.timestamp()[1], r.headers() or [], state)
