"""The one exception the local-PostgreSQL package raises."""

from __future__ import annotations

from schemas.errors import RewindError


class PostgresLocalError(RewindError):
    """The local PostgreSQL server could not be found, initialised, started, reached or stopped.

    The first line of the message says what failed and what to do (free the port,
    install PostgreSQL 15 with ``scripts/ensure-postgres.sh``, move a data dir
    away); for a failed start, the last lines of the server log follow.
    """
