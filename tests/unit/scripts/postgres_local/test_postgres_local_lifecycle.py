"""up/down/status: the checks that run before any server starts, and never signalling a process that is not ours.

No PostgreSQL runs here: a stand-in process started with ``-D <data dir>`` plays the postmaster.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import postgres_local as pl
from scripts.postgres_local.process import ServiceUser, _wait_dead_postmaster_reaped
from scripts.postgres_local.storage import _check_data_dir

# Exits 42 on SIGINT (PostgreSQL's fast shutdown), 43 on SIGTERM (its smart shutdown, which waits for clients).
_STAND_IN = """
import signal, sys, time
signal.signal(signal.SIGINT, lambda *_: sys.exit(42))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(43))
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def _me() -> ServiceUser:
    return ServiceUser(name="me", uid=os.geteuid(), gid=os.getegid(), prefix=())


def test_status_and_down_of_a_fresh_run_dir(paths: pl.LocalPostgresPaths) -> None:
    assert pl.status(paths=paths) == pl.PostgresStatus(
        running=False, pid=None, port=None, url=None, log=paths.run_dir / "postgres.log", data_dir=paths.run_dir / "data"
    )
    assert pl.down(paths=paths) is False
    assert not paths.run_dir.exists()


def test_a_pid_file_naming_another_process_is_never_signalled_nor_removed(paths: pl.LocalPostgresPaths) -> None:
    """Scenario: postmaster.pid names a live process that is not our server (this test). We expect it untouched, file kept.

    The file is PostgreSQL's own lock: a server whose postmaster.pid vanished shuts itself down.
    """
    paths.data_dir.mkdir(parents=True)
    paths.pid_file.write_text(f"{os.getpid()}\n{paths.data_dir}\n0\n15432\n")
    assert pl.status(paths=paths).running is False
    assert pl.down(paths=paths, timeout_s=0.1) is False  # we are still here, so nothing was signalled
    assert paths.pid_file.exists()


@pytest.fixture
def stand_in(paths: pl.LocalPostgresPaths) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose argv says ``-D <data dir>`` and that exits on SIGINT, as the postmaster's fast shutdown does."""
    paths.data_dir.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", _STAND_IN, "-D", str(paths.data_dir)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"  # its handlers are in place
    paths.pid_file.write_text(f"{proc.pid}\n{paths.data_dir}\n0\n15444\n")
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def test_down_stops_our_server_with_a_fast_shutdown_and_keeps_the_data_dir(
    paths: pl.LocalPostgresPaths, stand_in: subprocess.Popen[bytes]
) -> None:
    """Scenario: a process of ours runs. We expect status to see it, down to stop it with SIGINT, the data dir kept."""
    info = pl.status(paths=paths)
    assert (info.running, info.pid, info.port, info.url) == (True, stand_in.pid, 15444, "postgresql+psycopg://postgres@127.0.0.1:15444/rewind")
    started = time.monotonic()
    assert pl.down(paths=paths, timeout_s=20.0) is True
    assert time.monotonic() - started < 10.0  # SIGINT, not a wait for the SIGQUIT fallback
    assert stand_in.wait(timeout=5) == 42  # SIGINT
    assert paths.data_dir.is_dir()
    assert "stopped by down()" in paths.log_file.read_text()
    assert pl.down(paths=paths) is False


def test_up_on_another_port_than_our_running_server_is_refused(paths: pl.LocalPostgresPaths, stand_in: subprocess.Popen[bytes]) -> None:
    with pytest.raises(pl.PostgresLocalError, match=r"already running on port 15444 .*run `rewind postgres down` before starting it on port 15445"):
        pl.up(port=15445, paths=paths, timeout_s=1.0)
    assert stand_in.poll() is None


def test_up_refuses_a_port_someone_else_listens_on_before_making_any_file(paths: pl.LocalPostgresPaths) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        with pytest.raises(pl.PostgresLocalError, match=f"port 127.0.0.1:{taken} is in use by another process"):
            pl.up(port=taken, paths=paths)
    assert not paths.run_dir.exists()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"port": 0}, "invalid port 0"),
        ({"port": 70000}, "invalid port 70000"),
        ({"port": 80}, "below"),  # root may listen there, but the server never runs as root
        ({"timeout_s": 0.0}, "invalid timeout"),
    ],
)
def test_up_rejects_bad_arguments_before_starting_anything(paths: pl.LocalPostgresPaths, kwargs: dict[str, object], message: str) -> None:
    if kwargs.get("port") == 80 and Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text().strip() == "0":
        pytest.skip("this machine lets anyone listen on port 80")
    with pytest.raises(pl.PostgresLocalError, match=message):
        pl.up(paths=paths, **kwargs)  # type: ignore[arg-type]  # deliberately bad values
    assert not paths.run_dir.exists()


def test_a_run_dir_that_cannot_be_made_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a directory\n")
    paths = pl.LocalPostgresPaths(run_dir=tmp_path / "afile" / "pg")
    with pytest.raises(pl.PostgresLocalError, match=r"run dir .*afile/pg is not usable .*choose another run dir"):
        pl.up(port=15446, paths=paths)


class TestDataDirChecks:
    """What `up` finds in the data dir before it runs initdb or the server."""

    def test_none_yet_or_empty_means_initialise(self, paths: pl.LocalPostgresPaths) -> None:
        assert _check_data_dir(paths, _me()) is False
        paths.data_dir.mkdir(parents=True)
        assert _check_data_dir(paths, _me()) is False
        assert not paths.data_dir.exists()  # initdb makes it again, through its staging dir

    def test_a_postgresql_15_cluster_of_ours_is_used(self, paths: pl.LocalPostgresPaths) -> None:
        paths.data_dir.mkdir(parents=True)
        paths.version_file.write_text("15\n")
        assert _check_data_dir(paths, _me()) is True

    @pytest.mark.parametrize(
        "make,message",
        [
            (lambda p: p.data_dir.write_text("x"), "is not a directory"),
            (lambda p: (p.data_dir.mkdir(), (p.data_dir / "notes.txt").write_text("x")), r"holds no PostgreSQL cluster \(no PG_VERSION\)"),
            (lambda p: (p.data_dir.mkdir(), p.version_file.write_text("14\n")), "initialised by PostgreSQL 14, and this runs PostgreSQL 15"),
        ],
        ids=["file", "not-a-cluster", "version-14"],
    )
    def test_anything_else_is_refused_with_what_to_do(self, paths: pl.LocalPostgresPaths, make: object, message: str) -> None:
        paths.run_dir.mkdir(parents=True)
        make(paths)  # type: ignore[operator]  # one of the lambdas above
        with pytest.raises(pl.PostgresLocalError, match=message):
            _check_data_dir(paths, _me())

    def test_a_cluster_of_another_user_is_refused(self, paths: pl.LocalPostgresPaths) -> None:
        paths.data_dir.mkdir(parents=True)
        paths.version_file.write_text("15\n")
        other = ServiceUser(name="postgres", uid=os.geteuid() + 1, gid=os.getegid(), prefix=())
        with pytest.raises(pl.PostgresLocalError, match=r"belongs to uid \d+, but the server runs as postgres .*chown -R postgres"):
            _check_data_dir(paths, other)


@pytest.mark.parametrize("pid", ["999999999", "self"], ids=["gone", "someone-elses"])
def test_up_does_not_wait_for_a_pid_that_is_gone_or_a_live_process_of_someone_else(paths: pl.LocalPostgresPaths, pid: str) -> None:
    """Scenario: postmaster.pid names no process, or a live one that is not ours. We expect no wait (only a dying or zombie postmaster is waited for)."""
    paths.data_dir.mkdir(parents=True)
    paths.pid_file.write_text(f"{os.getpid() if pid == 'self' else pid}\n{paths.data_dir}\n0\n15432\n")
    started = time.monotonic()
    _wait_dead_postmaster_reaped(paths, timeout_s=30.0)
    assert time.monotonic() - started < 1.0


def test_ensure_database_refuses_a_name_it_would_have_to_quote() -> None:
    with pytest.raises(pl.PostgresLocalError, match="invalid database name 'Bad-Name'"):
        pl.ensure_database(1, "Bad-Name")  # refused before any connection (port 1 would be refused too)
