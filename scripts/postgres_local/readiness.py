"""Waiting until the server accepts a connection on 127.0.0.1, and the database ``up`` hands out."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from scripts.local_service import poll_until_ready
from scripts.postgres_local.errors import PostgresLocalError
from scripts.postgres_local.paths import DATABASE, HOST, SUPERUSER

if TYPE_CHECKING:
    import psycopg

#: Names ``ensure_database`` accepts: what PostgreSQL takes unquoted and keeps as written (at most 63 bytes).
DATABASE_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_MAINTENANCE_DB = "postgres"

__all__ = ["DATABASE_NAME_RE", "ensure_database", "wait_until_ready"]


def wait_until_ready(port: int, *, timeout_s: float) -> None:
    """Return once the server on 127.0.0.1:``port`` accepts a connection and answers ``SELECT 1``.

    Raises PostgresLocalError after ``timeout_s`` with the last connection error.
    """
    _wait_ready(port, deadline=time.monotonic() + timeout_s, timeout_s=timeout_s, alive=None)


def _wait_ready(port: int, *, deadline: float, timeout_s: float, alive: Callable[[], bool] | None) -> None:
    poll_until_ready(
        lambda call_timeout_s: _answers(port, timeout_s=call_timeout_s),
        deadline=deadline, timeout_s=timeout_s, call_timeout_s=2.0, alive=alive,
        what="PostgreSQL server", not_ready=f"PostgreSQL at {HOST}:{port} did not accept a connection", error=PostgresLocalError,
    )


def _answers(port: int, *, timeout_s: float) -> tuple[bool, str]:
    # Imported here so that status/down and `rewind --help` do not pay for psycopg.
    import psycopg

    try:
        with _connect(port, _MAINTENANCE_DB, timeout_s=timeout_s) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return False, _first_line(exc)
    return True, ""


def ensure_database(port: int, name: str = DATABASE, *, timeout_s: float = 10.0) -> bool:
    """Create database ``name`` on the local server unless it exists; True if this call created it.

    ``name`` must match ``DATABASE_NAME_RE``. Raises PostgresLocalError when
    the server cannot be reached or refuses.
    """
    import psycopg
    from psycopg import sql

    if not DATABASE_NAME_RE.fullmatch(name):
        raise PostgresLocalError(f"invalid database name {name!r}: use 1-63 of a-z 0-9 _, not starting with a digit")
    try:
        with _connect(port, _MAINTENANCE_DB, timeout_s=timeout_s) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.DuplicateDatabase:
        return False  # made meanwhile by another client
    except psycopg.Error as exc:
        raise PostgresLocalError(f"could not create database {name!r} on {HOST}:{port}: {_first_line(exc)}") from exc
    return True


def _connect(port: int, dbname: str, *, timeout_s: float) -> psycopg.Connection[tuple[Any, ...]]:
    import psycopg

    # libpq counts connect_timeout in whole seconds and takes anything below 2 as 2.
    return psycopg.connect(
        host=HOST, port=port, user=SUPERUSER, dbname=dbname, autocommit=True, connect_timeout=max(2, math.ceil(timeout_s))
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
