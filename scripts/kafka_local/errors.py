"""The one exception the local-broker package raises."""

from __future__ import annotations

from schemas.errors import RewindError


class KafkaLocalError(RewindError):
    """The local broker could not be fetched, started, reached or stopped.

    The first line of the message says what failed and what to do; for a
    failed start, the last lines of the broker log follow.
    """
