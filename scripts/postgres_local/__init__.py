"""A local PostgreSQL 15 server on 127.0.0.1, for the order service's event store (REWIND_DATABASE_URL).

Used by ``rewind postgres up|down|status`` and by the test session's
``postgres_server`` fixture (``tests/conftest.py``, run dir ``.run/pg-test``).
It runs the machine's own PostgreSQL 15 programs (``/usr/lib/postgresql/15/bin``
or ``pg_config --bindir``; ``scripts/ensure-postgres.sh`` installs them when
missing) with a cluster of its own: ``initdb -A trust -U postgres`` once, then
``pg_ctl start`` with loopback-only listening, 64 MB of shared buffers and the
Unix socket in the data dir, never in /var/run/postgresql. ``up`` returns the
SQLAlchemy URL of its ``rewind`` database,
``postgresql+psycopg://postgres@127.0.0.1:<port>/rewind`` (no password: trust
authentication, loopback only).

PostgreSQL refuses to run as root: started by root, the programs run as the
``postgres`` OS user (``runuser``) and the data dir and log belong to it.

Files, under the run dir (``<project root>/.run/pg`` by default): ``data/``
(the cluster, kept across down/up; delete it to start empty),
``data/postmaster.pid`` (the server's own lock and pid file), ``postgres.log``
(the previous one as ``postgres.log.1``) and ``.lock``.

Only a server whose ``postmaster.pid`` names a live process started with
``-D <this data dir>`` is ever signalled.
"""

from __future__ import annotations

from scripts.postgres_local.binaries import DEBIAN_BINDIR, PostgresBinaries, find_binaries
from scripts.postgres_local.config import initdb_args, server_options, server_settings
from scripts.postgres_local.errors import PostgresLocalError
from scripts.postgres_local.lifecycle import PostgresStatus, down, status, up
from scripts.postgres_local.paths import (
    DATABASE,
    DEFAULT_PORT,
    PG_MAJOR,
    PROJECT_ROOT,
    SUPERUSER,
    LocalPostgresPaths,
    database_url,
)
from scripts.postgres_local.process import SERVICE_USER, ServiceUser, service_user
from scripts.postgres_local.readiness import DATABASE_NAME_RE, ensure_database, wait_until_ready

__all__ = [
    "DATABASE",
    "DATABASE_NAME_RE",
    "DEBIAN_BINDIR",
    "DEFAULT_PORT",
    "PG_MAJOR",
    "PROJECT_ROOT",
    "SERVICE_USER",
    "SUPERUSER",
    "LocalPostgresPaths",
    "PostgresBinaries",
    "PostgresLocalError",
    "PostgresStatus",
    "ServiceUser",
    "database_url",
    "down",
    "ensure_database",
    "find_binaries",
    "initdb_args",
    "server_options",
    "server_settings",
    "service_user",
    "status",
    "up",
    "wait_until_ready",
]
