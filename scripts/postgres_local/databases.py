"""A throwaway database on a PostgreSQL server, for tests, benchmarks and crash runs."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from sqlalchemy import create_engine, make_url
from sqlalchemy.pool import NullPool

__all__ = ["fresh_database"]


@contextlib.contextmanager
def fresh_database(server_url: str, *, prefix: str) -> Iterator[str]:
    """A new database ``<prefix><8 hex>`` on the server of ``server_url``; yields its SQLAlchemy URL, drops it on exit.

    The drop is best effort and forced (``WITH (FORCE)`` ends connections a caller
    left open); a database that could not be dropped is only a leftover.
    """
    admin_url = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.set(database=name).render_as_string(hide_password=False)
        finally:
            with contextlib.suppress(Exception), admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
