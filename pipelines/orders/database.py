"""Opening the event store's database and bringing its schema up to date.

SQLite (a file, no server) is the default; any SQLAlchemy URL of PostgreSQL
(``postgresql+psycopg://user@127.0.0.1:5432/db``) works the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from schemas.errors import RewindError

__all__ = ["DatabaseError", "DEFAULT_DATABASE_PATH", "default_database_url", "open_database", "migrate", "is_sqlite"]

#: The default event store: a SQLite file under the project's run directory.
DEFAULT_DATABASE_PATH = Path(".run/orders.sqlite")
#: How long a client waits for the database before giving up (seconds): a database that is down
#: turns into an error within this bound, never a hang.
CONNECT_TIMEOUT_S = 3
#: How long SQLite waits on another writer's lock before failing (ms).
SQLITE_BUSY_TIMEOUT_MS = 5_000
#: Any key will do, as long as every migrator uses the same one: PostgreSQL advisory lock id.
_MIGRATION_LOCK = 0x5E3D_0001

_MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseError(RewindError):
    """The database URL is unusable, or the database cannot be reached or migrated."""


def default_database_url(path: Path = DEFAULT_DATABASE_PATH) -> str:
    """The SQLAlchemy URL of the default SQLite event store at ``path``."""
    return f"sqlite:///{path}"


def is_sqlite(engine: Engine) -> bool:
    """Whether ``engine`` is a SQLite database (one writer at a time; no SKIP LOCKED)."""
    return engine.dialect.name == "sqlite"


def open_database(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for ``url`` (SQLite or PostgreSQL), with bounded connect and lock waits.

    SQLite runs in WAL mode (readers never block the writer) and begins every transaction
    with ``BEGIN IMMEDIATE``, so a read-then-write command takes the write lock up front
    instead of failing on a lock upgrade; its parent directory is created. DatabaseError for
    a URL that is not SQLite or PostgreSQL, or cannot be parsed. Nothing is connected yet.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"database URL {url!r} cannot be parsed: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=pool_size,
            # No pre-ping (a round trip per checkout, on every command): a connection the server dropped
            # fails its request once, and SQLAlchemy then discards the pool's stale connections.
            pool_timeout=CONNECT_TIMEOUT_S,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
        )
    raise DatabaseError(f"database URL {url!r}: only sqlite:/// and postgresql:// are supported, not {backend}")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level: SQLAlchemy's "begin" event below issues the BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (creating it on an empty database).

    Safe to call from several processes at once: on PostgreSQL they take turns under an
    advisory lock; on SQLite the write lock serialises them. DatabaseError when the database
    cannot be reached.
    """
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except (OSError, DBAPIError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__  # psycopg's spans several
        raise DatabaseError(f"cannot migrate the event store at {engine.url.render_as_string(hide_password=True)}: {first_line}") from None
