"""The test session's PostgreSQL server, a fresh database per test, and `rewind postgres` run as a subprocess.

The session's server is the project's own local one (``scripts.postgres_local``) in
``.run/pg-test`` on REWIND_TEST_POSTGRES_PORT (default 25432), so a server started by
`rewind postgres up` on 15432 neither blocks nor serves the tests; or, with
REWIND_TEST_DATABASE_URL set, the server of that URL (its user must be allowed to
CREATE DATABASE), and nothing is started. Every test that asks for ``postgres_url``
gets a database of its own on it, dropped afterwards.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scripts import postgres_local
from scripts.local_service.ports import port_free

#: The test server's own port and run dir.
TEST_PORT = int(os.environ.get("REWIND_TEST_POSTGRES_PORT", "25432"))
TEST_RUN_DIR = postgres_local.PROJECT_ROOT / ".run" / "pg-test"
_CLI_TIMEOUT_S = 180.0


@contextmanager
def session_server() -> Iterator[str]:
    """The SQLAlchemy URL of a maintenance database on the tests' server (see the module docstring).

    The local test server is started unless it runs, and stopped on exit only if
    this call started it. It runs with ``fsync=off``: a commit still reaches the
    OS before it returns, so killing the server or a client loses nothing; only
    an OS crash would, and the tests do not crash the OS.
    """
    external = os.environ.get("REWIND_TEST_DATABASE_URL")
    if external:
        yield external
        return
    paths = postgres_local.LocalPostgresPaths(run_dir=TEST_RUN_DIR)
    found = postgres_local.status(paths=paths)
    was_running = found.running
    port = found.port if was_running and found.port is not None else TEST_PORT
    if not was_running and "REWIND_TEST_POSTGRES_PORT" not in os.environ and not port_free(port):
        # The default port is held by something else, e.g. another checkout's test server: take a free one
        # rather than fail every PostgreSQL test (a port set on purpose is used as set, and fails loudly).
        port = free_port()
    postgres_local.up(port=port, paths=paths, fsync=False)
    try:
        yield postgres_local.database_url(port, "postgres")
    finally:
        if not was_running:
            postgres_local.down(paths=paths)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new database ``t_<8 hex>`` on the server of ``server_url`` (:func:`scripts.postgres_local.databases.fresh_database`)."""
    from scripts.postgres_local.databases import fresh_database as fresh

    with fresh(server_url, prefix="t_") as url:
        yield url

def free_port() -> int:
    """A loopback port nothing listens on now, from 20000-32767 (below Linux's ephemeral range, see private_broker)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        if port_free(port):
            return port
    raise RuntimeError("no free loopback port found in 20000-32767")


@dataclass(frozen=True)
class PostgresCli:
    """`rewind postgres` for one run dir and port; every call is a fresh `python -m scripts.cli` process."""

    run_dir: Path
    port: int

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "REWIND_POSTGRES_RUN_DIR": str(self.run_dir), "REWIND_POSTGRES_PORT": str(self.port)}
        env.pop("REWIND_DATABASE_URL", None)
        return subprocess.run(
            [sys.executable, "-m", "scripts.cli", "postgres", *args],
            cwd=postgres_local.PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=_CLI_TIMEOUT_S, check=False,
        )

    def stop(self) -> None:
        """Teardown: stop the server of this run dir whatever the test did."""
        postgres_local.down(paths=postgres_local.LocalPostgresPaths(run_dir=self.run_dir))
