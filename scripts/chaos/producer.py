"""The load generator: a workload's records, in order, at a steady rate, through broker outages.

Not under test. It must neither lose nor duplicate a record, because the oracle is the
workload's prefix that was sent: the producer is idempotent (``acks=all``, retries without
end, ``message.timeout.ms=0``: a record waits in librdkafka's queue for as long as the
broker is down, then goes out in order, once). Every delivery report is counted; a single
failed one makes the run's oracle untrustworthy, and the soak says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from scripts.workload import Emitted, producer_config

__all__ = ["PacedProducer"]


class PacedProducer:
    """Sends ``records`` to ``topic`` at ``rate`` records/s from a thread of its own, until stopped or done."""

    def __init__(self, bootstrap: str, topic: str, records: Sequence[Emitted], *, rate: float) -> None:
        self._topic = topic
        self._records = records
        self._rate = rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-producer", daemon=True)
        self._producer = Producer({
            **producer_config(bootstrap),
            "delivery.report.only.error": False,  # count acknowledgements, not only failures
            "message.timeout.ms": 0,  # never give up on a record: wait out any outage
            "linger.ms": 50,
            "log_level": 0,  # an outage is expected here; librdkafka would log every refused connect
        })
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self.first_error: str | None = None

    def start(self) -> None:
        """Begin sending (record i is due at start + i / rate)."""
        self._thread.start()

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.acked += 1
        else:
            self.failed += 1
            self.first_error = self.first_error or str(err)

    def _run(self) -> None:
        produce, poll, delivered = self._producer.produce, self._producer.poll, self._delivered
        chunk = max(1, int(self._rate / 20))  # pace in steps of ~50 ms
        start = time.monotonic()
        for i, r in enumerate(self._records):
            if self._stop.is_set():
                return
            while True:
                try:
                    produce(self._topic, r.value, r.key, timestamp=r.timestamp_ms, on_delivery=delivered)
                    break
                except BufferError:
                    poll(0.1)  # the local queue is full (a long outage): wait for room
            self.sent = i + 1
            if self.sent % chunk == 0:
                poll(0)
                ahead_s = start + self.sent / self._rate - time.monotonic()
                if ahead_s > 0 and self._stop.wait(ahead_s):
                    return

    def stop(self, *, flush_timeout_s: float = 300.0) -> int:
        """Stop sending, wait until every sent record is acknowledged (or failed); return how many are still in flight."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        remaining: int = self._producer.flush(flush_timeout_s)
        return remaining

    @property
    def done(self) -> bool:
        """True once every record was sent (the workload ran out before the clock)."""
        return self.sent == len(self._records)

    def figures(self) -> dict[str, Any]:
        """sent / acked / failed so far."""
        return {"sent": self.sent, "acked": self.acked, "failed": self.failed, "first_error": self.first_error}
