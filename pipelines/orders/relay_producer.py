"""The relay's Kafka side: its producer's settings, and the rows of one batch on their way to the broker.

The relay sends a batch, then waits for a delivery report per record (:class:`SentBatch`). Only
acknowledged rows may be marked published, and of an order only those before its first row
not acknowledged (:meth:`SentBatch.markable`): a later row marked while an earlier one is
published again would put the order's records out of seq order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from confluent_kafka import KafkaError, Message

from pipelines.orders.relay_outbox import OutboxRow

__all__ = ["PURGED", "ProducerLike", "SentBatch", "relay_producer_config"]

#: Where the relay's librdkafka lines go (a ``rewind.kafka`` logger: ClientNoiseFilter counts its outage noise).
client_log = logging.getLogger("rewind.kafka.relay")
#: Delivery errors that are the relay's own doing (a purge when it abandons a batch), not the row's.
PURGED: Final = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)


def relay_producer_config(bootstrap: str) -> dict[str, Any]:
    """The relay's producer: idempotent, ``acks=all``, Java placement, retrying for as long as it takes.

    ``message.timeout.ms`` 0: a record is never given up for a broker outage (the producer
    reconnects with backoff up to ``reconnect.backoff.max.ms``), so a batch is delayed,
    never lost nor reordered. ``allow.auto.create.topics`` off: the relay creates the topic
    itself, with the configured partitions (:func:`~pipelines.topics.ensure_topic`).
    """
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "message.timeout.ms": 0,
        "linger.ms": 5,
        "compression.type": "lz4",
        "allow.auto.create.topics": False,
        "reconnect.backoff.ms": 250,
        "reconnect.backoff.max.ms": 5000,
        "socket.connection.setup.timeout.ms": 5000,
        "logger": client_log,
    }



class ProducerLike(Protocol):
    """The part of confluent_kafka's Producer the relay uses (a fake one in unit tests)."""

    def produce(self, topic: str, value: bytes, key: bytes, *, timestamp: int, on_delivery: Callable[[Any, Any], None]) -> None: ...
    def flush(self, timeout: float) -> int: ...
    def poll(self, timeout: float) -> int: ...
    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None: ...


class SentBatch:
    """Rows handed to the producer: which were acknowledged, which failed and why (filled by the delivery reports)."""

    __slots__ = ("rows", "acked", "errors", "sent", "outstanding", "sent_at")

    def __init__(self, rows: list[OutboxRow]) -> None:
        self.rows = rows
        self.acked = [False] * len(rows)
        self.errors: dict[int, KafkaError] = {}
        self.sent = 0  # records handed to the producer
        self.outstanding = 0  # of those, not yet reported delivered or failed
        self.sent_at = time.monotonic()

    def delivered(self, index: int, err: KafkaError | None, _msg: Message) -> None:
        self.outstanding -= 1
        if err is None:
            self.acked[index] = True
        else:
            self.errors[index] = err

    def markable(self) -> list[int]:
        """Ids of acknowledged rows whose order has every earlier row of this batch acknowledged too."""
        broken: set[str] = set()
        ids = []
        for row, acked in zip(self.rows, self.acked, strict=True):
            if acked and row.order_id not in broken:
                ids.append(row.id)
            else:
                broken.add(row.order_id)
        return ids
