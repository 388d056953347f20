"""The Kafka clients' log lines during a broker outage: dropped and counted, so one line per interval can say what they said.

librdkafka logs every failed connection (several lines a second at first). Each process that
talks to Kafka routes its clients' lines through Python logging (Quix's ``quixstreams.*``
loggers, the batch engine's ``rewind.kafka.*``, the replica's own) and filters them with
:class:`ClientNoiseFilter`; its own "broker unreachable" line reports how many it dropped.
"""

from __future__ import annotations

import logging
import re
from typing import Final

__all__ = ["ClientNoiseFilter", "CLIENT_LOGGERS"]

#: Where librdkafka's lines reach Python: Quix's loggers and the batch engine's.
CLIENT_LOGGERS: Final = ("quixstreams", "rewind.kafka")


class ClientNoiseFilter(logging.Filter):
    """Drops the Kafka clients' connection-failure lines (librdkafka's and Quix's error callbacks), counting them.

    Matched by content, among the loggers named ``loggers`` (and their children) only;
    everything else passes, as does anything CRITICAL (a fatal client error), and Quix's one
    line per failed run.
    """

    _NOISE: Final = re.compile(
        r"Connect to ipv[46]#|Connection refused|Disconnected|brokers are down|Broker transport failure"
        r"|Failed to resolve|Timed out|timed out|_TIMED_OUT|TIMED_OUT|SESSTMOUT|REQTMOUT|TXNERR|COORD|GETPID"
        r"|Coordinator load in progress|Coordinator not available|Failed to acquire idempotence PID"
        r'|code="-1(?:95|93|92|87|85)"'
    )

    def __init__(self, loggers: tuple[str, ...] = CLIENT_LOGGERS) -> None:
        super().__init__("rewind.client-noise")
        self._loggers = loggers
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._loggers) or record.levelno >= logging.CRITICAL:
            return True
        if self._NOISE.search(record.getMessage()):
            self.dropped += 1
            return False
        return True

    def install(self) -> None:
        """Attach to every handler of the ``quixstreams`` and root loggers (idempotent; Quix adds its handler when an app is built)."""
        for logger in (logging.getLogger("quixstreams"), logging.getLogger()):
            for handler in logger.handlers:
                if self not in handler.filters:
                    handler.addFilter(self)
