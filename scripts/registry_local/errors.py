"""The one exception the local-registry package raises."""

from __future__ import annotations

from schemas.errors import RewindError


class RegistryLocalError(RewindError):
    """The local schema registry could not be fetched, started, reached, configured or stopped.

    The first line of the message says what failed and what to do; for a
    failed start, the last lines of the registry log follow.
    """
