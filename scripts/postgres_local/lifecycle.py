"""``up``, ``down`` and ``status`` of the local PostgreSQL server: the steps, in order, under the run dir's lock."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.local_service import (
    KILL_WAIT_S,
    is_alive,
    keep_out_of_git,
    locked,
    log_tail_block,
    now,
    require_free_ports,
    say,
)
from scripts.postgres_local.binaries import find_binaries
from scripts.postgres_local.errors import PostgresLocalError
from scripts.postgres_local.paths import DEFAULT_PORT, HOST, LocalPostgresPaths, database_url
from scripts.postgres_local.process import (
    _our_pid,
    _running_port,
    _start_server,
    _stop_server,
    _wait_dead_postmaster_reaped,
    service_user,
)
from scripts.postgres_local.readiness import _wait_ready, ensure_database
from scripts.postgres_local.storage import _init_once

_WHAT = "PostgreSQL server"
_PORT_ADVICE = "choose another port (--port or REWIND_POSTGRES_PORT)"
_UNPRIVILEGED_PORT_START = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")

__all__ = ["PostgresStatus", "down", "status", "up"]


@dataclass(frozen=True)
class PostgresStatus:
    """What ``status`` found. ``pid``, ``port`` and ``url`` are None when the server is stopped."""

    running: bool
    pid: int | None
    port: int | None
    #: The SQLAlchemy URL of the ``rewind`` database (what REWIND_DATABASE_URL takes).
    url: str | None
    log: Path
    data_dir: Path


def up(
    *,
    port: int = DEFAULT_PORT,
    paths: LocalPostgresPaths | None = None,
    fsync: bool = True,
    timeout_s: float = 60.0,
    console: Any = None,
) -> str:
    """Start the local server unless ours is already running; return the SQLAlchemy URL of its ``rewind`` database.

    ``fsync=False`` is for a throwaway test server only (see ``config``): a
    committed transaction survives the server's or a client's death, not the
    machine's. It applies when this call starts the server; a running one keeps
    the settings it was started with.

    Steps:
    1. If a server of ours runs on ``port``, wait until it answers, then go
       to step 6; one of ours on another port is refused. If ours died, or
       dies meanwhile (kill -9), wait until its process is gone
       (``process._wait_dead_postmaster_reaped``) and start it again.
    2. Refuse a port that something else listens on (also checked before the
       run dir is made, so a busy port leaves no file behind).
    3. Find PostgreSQL 15's programs and the OS user to run them as
       (``postgres`` when we are root: PostgreSQL refuses root).
    4. Initialise the data dir once (see ``storage._init_once``).
    5. ``pg_ctl start -w`` as that user (the server outlives the caller),
       logging to ``postgres.log``, then wait until it accepts a connection on
       127.0.0.1:``port``; ``timeout_s`` counts from here (or from step 1).
    6. Create the database ``rewind`` unless it exists.
    On a failure in steps 5-6 of a server started here, it is stopped and
    PostgresLocalError carries the last lines of its log.
    """
    paths = paths or LocalPostgresPaths()
    if not 1 <= port <= 65535:
        raise PostgresLocalError(f"invalid port {port}: use 1-65535")
    if not timeout_s > 0:
        raise PostgresLocalError(f"invalid timeout {timeout_s!r} s: use a positive number")
    if port < (first := _first_unprivileged_port()):
        raise PostgresLocalError(
            f"port {port} is below {first}, which only root may listen on, and PostgreSQL never runs as root: choose a port of {first} or above"
        )
    # Step 2, early: before the run dir is made, so a busy port leaves no file behind.
    if _our_pid(paths) is None:
        _wait_dead_postmaster_reaped(paths, timeout_s=KILL_WAIT_S)  # a server killed just now still holds its port
        require_free_ports((port,), what=_WHAT, run_dir=paths.run_dir, advice=_PORT_ADVICE, error=PostgresLocalError)
    _prepare_run_dir(paths)
    with locked(paths.lock_file):
        _up_locked(paths, port=port, fsync=fsync, timeout_s=timeout_s, console=console)
    return database_url(port)


def _first_unprivileged_port() -> int:
    """The lowest port a non-root process may listen on (Linux's ``ip_unprivileged_port_start``; 1024 elsewhere)."""
    try:
        return int(_UNPRIVILEGED_PORT_START.read_text().strip())
    except (OSError, ValueError):
        return 1024


def _prepare_run_dir(paths: LocalPostgresPaths) -> None:
    try:
        paths.run_dir.mkdir(parents=True, exist_ok=True)
        keep_out_of_git(paths.run_dir)
        paths.lock_file.touch()
    except OSError as exc:
        raise PostgresLocalError(f"run dir {paths.run_dir} is not usable ({exc.strerror or exc}): choose another run dir") from exc


def _up_locked(paths: LocalPostgresPaths, *, port: int, fsync: bool, timeout_s: float, console: Any) -> None:
    """Steps 1-6 of ``up``, under the run dir's lock."""
    # Step 1
    pid = _our_pid(paths)
    if pid is not None:
        running_port = _running_port(paths)
        if running_port != port:
            raise PostgresLocalError(
                f"the local PostgreSQL server is already running on port {running_port} (pid {pid}); "
                f"run `rewind postgres down` before starting it on port {port}"
            )
        running_pid = pid
        try:
            _wait_ready(port, deadline=time.monotonic() + timeout_s, timeout_s=timeout_s, alive=lambda: is_alive(running_pid))
            ensure_database(port)  # Step 6
            return
        except PostgresLocalError as exc:
            if is_alive(running_pid):
                raise PostgresLocalError(
                    f"the local PostgreSQL server (pid {pid}) is running but {exc}; run `rewind postgres down` and try again"
                    + log_tail_block(paths.log_file, what=_WHAT)
                ) from exc
            # It was dying (killed just before): start it again below.
    _wait_dead_postmaster_reaped(paths, timeout_s=KILL_WAIT_S)

    # Step 2
    require_free_ports((port,), what=_WHAT, run_dir=paths.run_dir, advice=_PORT_ADVICE, error=PostgresLocalError)

    # Step 3
    binaries = find_binaries()
    user = service_user()

    # Step 4
    if _init_once(paths, binaries, user):
        say(console, f"Initialised a PostgreSQL {binaries.version} cluster in {paths.data_dir} (owner {user.name})")

    # Step 5
    say(console, f"Starting PostgreSQL {binaries.version} at {HOST}:{port} (log: {paths.log_file}) ...")
    deadline = time.monotonic() + timeout_s
    try:
        _start_server(paths, binaries, user, port=port, fsync=fsync, timeout_s=timeout_s)
        started = _our_pid(paths)
        if started is None:
            raise PostgresLocalError("pg_ctl said it started, but no server of ours runs")
        _wait_ready(port, deadline=deadline, timeout_s=timeout_s, alive=lambda: is_alive(started))
        ensure_database(port)  # Step 6
    except PostgresLocalError as exc:
        leftover = _our_pid(paths)
        if leftover is not None:
            _stop_server(leftover, timeout_s=KILL_WAIT_S)
        raise PostgresLocalError(f"the local PostgreSQL server did not start: {exc}" + log_tail_block(paths.log_file, what=_WHAT)) from exc


def down(*, paths: LocalPostgresPaths | None = None, timeout_s: float = 30.0) -> bool:
    """Stop the server we started: fast shutdown, immediate after ``timeout_s``, SIGKILL last (see ``process._stop_server``).

    Returns whether a server of ours was running; calling it again is a no-op
    that returns False. The data dir is kept; a line saying how long the stop
    took is appended to the log.
    """
    paths = paths or LocalPostgresPaths()
    if not paths.run_dir.is_dir():
        return False
    with locked(paths.lock_file):
        pid = _our_pid(paths)
        if pid is None:
            return False
        started_s = time.monotonic()
        try:
            stopped = _stop_server(pid, timeout_s=timeout_s)
        except PermissionError as exc:
            raise PostgresLocalError(
                f"the local PostgreSQL server (pid {pid}) belongs to another user; run `rewind postgres down` as root or as that user"
            ) from exc
        if not stopped:
            raise PostgresLocalError(f"the local PostgreSQL server (pid {pid}) did not exit even after SIGKILL")
        with contextlib.suppress(OSError), open(paths.log_file, "a") as log:
            log.write(f"# {now()} stopped by down() in {time.monotonic() - started_s:.1f} s\n")
        return True


def status(*, paths: LocalPostgresPaths | None = None) -> PostgresStatus:
    """Whether the server we started runs, its pid, port and URL. Cheap: reads ``postmaster.pid`` and /proc only."""
    paths = paths or LocalPostgresPaths()
    pid = _our_pid(paths)
    port = _running_port(paths) if pid is not None else None
    return PostgresStatus(
        running=pid is not None,
        pid=pid,
        port=port,
        url=database_url(port) if port is not None else None,
        log=paths.log_file,
        data_dir=paths.data_dir,
    )
