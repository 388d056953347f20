"""Where the local PostgreSQL server's files live, its URL, and the constants the other modules share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from scripts.local_service.paths import HOST, PROJECT_ROOT, ServicePaths

#: The major version this package runs; a data dir is only ever opened by the version that made it.
PG_MAJOR = "15"
#: Same default as ``RewindSettings.postgres_port`` (REWIND_POSTGRES_PORT).
DEFAULT_PORT = 15432
#: The database ``up`` creates and whose URL it returns.
DATABASE = "rewind"
#: The superuser ``initdb -U`` creates; loopback clients log in as it without a password (``-A trust``).
SUPERUSER = "postgres"
#: Longest Unix socket path Linux accepts (``sun_path`` is 108 bytes with its NUL).
MAX_SOCKET_PATH = 107

__all__ = [
    "DATABASE", "DEFAULT_PORT", "HOST", "MAX_SOCKET_PATH", "PG_MAJOR", "PROJECT_ROOT", "SUPERUSER",
    "LocalPostgresPaths", "database_url",
]


def database_url(port: int, database: str = DATABASE, *, host: str = HOST) -> str:
    """The SQLAlchemy URL of ``database`` on a local server: ``postgresql+psycopg://postgres@127.0.0.1:PORT/DB``."""
    return f"postgresql+psycopg://{SUPERUSER}@{host}:{port}/{database}"


def _default_run_dir() -> Path:
    return PROJECT_ROOT / ".run" / "pg"


@dataclass(frozen=True)
class LocalPostgresPaths(ServicePaths):
    """Where the local server keeps its cluster (``data/``), log (``postgres.log``) and lock.

    The pid file is PostgreSQL's own ``data/postmaster.pid`` (pid, data dir, start
    time, port, socket dir, listen address, shared memory key, status), which
    the server writes and removes itself: nothing here ever deletes it, because a
    running server shuts itself down when its lock file goes away.
    """

    PID_NAME: ClassVar[str] = "postmaster.pid"
    LOG_NAME: ClassVar[str] = "postgres.log"

    run_dir: Path = field(default_factory=_default_run_dir)

    @property
    def data_dir(self) -> Path:
        """The cluster (``initdb -D``); made once, kept across down/up."""
        return self.run_dir / "data"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / self.PID_NAME

    @property
    def version_file(self) -> Path:
        """``PG_VERSION``: the major version that initialised the data dir."""
        return self.data_dir / "PG_VERSION"

    def socket_dir(self, port: int) -> Path | None:
        """Where the server puts its Unix socket (the data dir), or None when that path would be too long for one.

        Clients here use TCP on 127.0.0.1; the socket is only for ``psql -h <data dir>``.
        Without a socket dir of its own the server would use /var/run/postgresql,
        which a system cluster owns, so a path too long means no socket at all.
        """
        if len(str(self.data_dir / f".s.PGSQL.{port}")) > MAX_SOCKET_PATH:
            return None
        return self.data_dir
