"""`rewind postgres up/status/down` with the machine's real PostgreSQL 15, used through psycopg and SQLAlchemy.

No Kafka here, so no ``integration`` marker (that one means "needs the real broker").
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from scripts import postgres_local
from tests.integration.postgres_support import PostgresCli, free_port


@pytest.fixture
def postgres_cli() -> Iterator[PostgresCli]:
    """The CLI bound to a fresh run dir and port; the server is stopped and the run dir removed at teardown.

    The run dir is under the project's .run/, not pytest's tmp dir: run as root, the server
    runs as the postgres OS user, which cannot enter /tmp/pytest-of-root (mode 0700).
    """
    run_root = postgres_local.PROJECT_ROOT / ".run"
    run_root.mkdir(exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="pg-it-", dir=run_root))
    os.chmod(run_dir, 0o755)  # mkdtemp makes it 0700; the postgres OS user must pass through it
    cli = PostgresCli(run_dir=postgres_local.LocalPostgresPaths(run_dir=run_dir).run_dir / "pg", port=free_port())
    try:
        yield cli
    finally:
        cli.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def test_up_status_query_up_again_down(postgres_cli: PostgresCli) -> None:
    """Scenario: up in a fresh run dir, status, a query through psycopg, up again, down twice, status.

    We expect: up prints the `rewind` database's URL; status says running with that URL; the
    database answers and keeps a committed row; the second up returns the same URL with the same
    pid; down stops it (again: a no-op); status then says stopped with exit 3.
    """
    url = f"postgresql+psycopg://postgres@127.0.0.1:{postgres_cli.port}/rewind"
    up = postgres_cli.run("up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == url

    status = postgres_cli.run("status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("running ") and f" url={url} " in status.stdout
    pid = postgres_local.status(paths=postgres_local.LocalPostgresPaths(run_dir=postgres_cli.run_dir)).pid
    assert pid is not None

    with psycopg.connect(host="127.0.0.1", port=postgres_cli.port, user="postgres", dbname="rewind", autocommit=True) as conn:
        assert conn.execute("SELECT current_database(), current_setting('listen_addresses'), current_setting('fsync')").fetchone() == (
            "rewind", "127.0.0.1", "on"
        )
        conn.execute("CREATE TABLE probe (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO probe VALUES (1, 'kept')")

    again = postgres_cli.run("up")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == url
    assert postgres_local.status(paths=postgres_local.LocalPostgresPaths(run_dir=postgres_cli.run_dir)).pid == pid

    other_port = postgres_cli.run("up", "--port", str(free_port()))
    assert other_port.returncode == 1
    assert other_port.stderr.strip().splitlines() == [
        f"error: the local PostgreSQL server is already running on port {postgres_cli.port} (pid {pid}); "
        f"run `rewind postgres down` before starting it on port {other_port.args[-1]}"
    ]

    down = postgres_cli.run("down")
    assert down.returncode == 0 and "PostgreSQL stopped" in down.stderr, down.stderr
    again_down = postgres_cli.run("down")
    assert again_down.returncode == 0 and "was not running" in again_down.stderr, again_down.stderr
    stopped = postgres_cli.run("status")
    assert stopped.returncode == 3
    assert stopped.stdout.startswith("stopped pid=None url=None ")

    # The cluster outlives down/up: the committed row is still there.
    assert postgres_cli.run("up").returncode == 0
    with psycopg.connect(host="127.0.0.1", port=postgres_cli.port, user="postgres", dbname="rewind") as conn:
        assert conn.execute("SELECT note FROM probe WHERE id = 1").fetchone() == ("kept",)


def test_a_server_killed_with_sigkill_comes_back_with_every_committed_row(postgres_cli: PostgresCli) -> None:
    """Scenario: commit a row, kill -9 the postmaster, `up` at once (twice over). We expect the server back on the same URL with every row.

    `up` must wait for the dead postmaster to be reaped (PostgreSQL takes a zombie for a live
    server) and then let PostgreSQL replay its WAL; fsync is on for every server but the tests'.
    """
    paths = postgres_local.LocalPostgresPaths(run_dir=postgres_cli.run_dir)
    url = postgres_local.up(port=postgres_cli.port, paths=paths)
    for round_ in range(2):
        with psycopg.connect(host="127.0.0.1", port=postgres_cli.port, user="postgres", dbname="rewind", autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS probe (id int PRIMARY KEY)")
            conn.execute("INSERT INTO probe VALUES (%s)", (round_,))
        pid = postgres_local.status(paths=paths).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert postgres_local.up(port=postgres_cli.port, paths=paths) == url
        assert postgres_local.status(paths=paths).pid not in (None, pid)
    with psycopg.connect(host="127.0.0.1", port=postgres_cli.port, user="postgres", dbname="rewind") as conn:
        assert conn.execute("SELECT id FROM probe ORDER BY id").fetchall() == [(0,), (1,)]


def test_postgres_url_fixture_gives_a_database_of_its_own(postgres_url: str) -> None:
    """Scenario: a test asks for `postgres_url` and makes a table in it. We expect an empty t_<8 hex> database on loopback that SQLAlchemy can use."""
    name = postgres_url.rsplit("/", 1)[1]
    assert postgres_url.startswith("postgresql+psycopg://") and name.startswith("t_") and len(name) == 10
    engine = create_engine(postgres_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar_one() == 0
            conn.execute(text("CREATE TABLE events (id bigint PRIMARY KEY, body text NOT NULL)"))
            conn.execute(text("INSERT INTO events VALUES (1, 'placed')"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database(), body FROM events")).one() == (name, "placed")
    finally:
        engine.dispose()
