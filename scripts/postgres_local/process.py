"""The server as processes: which OS user runs it, running its programs as that user, whether a pid is ours, stopping it.

PostgreSQL refuses to run as root. Started by root, every program (initdb,
pg_ctl, hence the server) runs as the ``postgres`` OS user through
``runuser -u postgres --``, and the files it writes (the data dir, the log)
belong to that user; started by anyone else, they run as that user directly.
"""

from __future__ import annotations

import contextlib
import math
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.local_service import KILL_WAIT_S, POLL_INTERVAL_S, cmdline, is_alive, now, tail
from scripts.postgres_local.binaries import PostgresBinaries
from scripts.postgres_local.config import server_options
from scripts.postgres_local.errors import PostgresLocalError
from scripts.postgres_local.paths import LocalPostgresPaths

#: The OS user the server runs as when root starts it (the one Debian's package creates).
SERVICE_USER = "postgres"

__all__ = ["SERVICE_USER", "ServiceUser", "can_write", "run_as", "service_user"]


@dataclass(frozen=True)
class ServiceUser:
    """Who runs the server: ``prefix`` goes before every server program's argv (empty when we run it ourselves)."""

    name: str
    uid: int
    gid: int
    prefix: tuple[str, ...]

    def owns(self, path: Path) -> None:
        """Give ``path`` to this user (no-op when that is us already)."""
        if self.prefix:
            os.chown(path, self.uid, self.gid)


def service_user() -> ServiceUser:
    """The user to run initdb/pg_ctl as: ``postgres`` via runuser when we are root, else ourselves."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return ServiceUser(name=me.pw_name, uid=me.pw_uid, gid=me.pw_gid, prefix=())
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError as exc:
        raise PostgresLocalError(
            f"running as root, but there is no {SERVICE_USER!r} OS user to run PostgreSQL as (it refuses root): "
            f"run scripts/ensure-postgres.sh (the postgresql package creates it) or run this as another user"
        ) from exc
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if runuser is None:
        raise PostgresLocalError(
            f"running as root, but runuser (util-linux) is missing, so PostgreSQL cannot be run as {SERVICE_USER!r}: "
            f"install util-linux or run this as another user"
        )
    return ServiceUser(
        name=SERVICE_USER, uid=entry.pw_uid, gid=entry.pw_gid, prefix=(runuser, "-u", SERVICE_USER, "--")
    )


def _our_pid(paths: LocalPostgresPaths) -> int | None:
    """The postmaster's pid (first line of ``data/postmaster.pid``) if it runs and serves this data dir.

    Its argv (``postgres -D <data dir> ...``, as pg_ctl starts it; the
    postmaster keeps it) is what keeps a reused pid, or another checkout's
    server, from ever being signalled. (``local_service.our_pid`` reads a pid
    file that holds the pid alone; this one holds seven more lines.)
    """
    lines = _pid_file_lines(paths)
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None
    if pid <= 0 or not is_alive(pid):
        return None
    argv = cmdline(pid)
    data_dir = str(paths.data_dir)
    ours = any(a == "-D" and b == data_dir for a, b in zip(argv, argv[1:], strict=False))
    return pid if ours else None


def _pid_file_lines(paths: LocalPostgresPaths) -> list[str]:
    try:
        return paths.pid_file.read_text().splitlines()
    except OSError:
        return []


def _wait_dead_postmaster_reaped(paths: LocalPostgresPaths, *, timeout_s: float) -> None:
    """Wait (at most ``timeout_s``) until a dead postmaster that ``postmaster.pid`` names is gone from /proc.

    A postmaster killed with SIGKILL is a dying process (its command line
    already empty, its port maybe still bound), then a zombie until its parent
    (init, or a container's first process, which may take a second or two)
    reaps it; PostgreSQL takes either for a live server ("lock file
    postmaster.pid already exists") and refuses to start. Once the pid is
    gone, PostgreSQL replaces the stale file itself and replays its WAL. A
    live process (one with a command line) is not waited for: ours is
    handled by ``up``'s step 1, and someone else's (a reused pid) is named by
    PostgreSQL's own error.
    """
    try:
        pid = int(_pid_file_lines(paths)[0])
    except (IndexError, ValueError):
        return
    deadline = time.monotonic() + timeout_s
    while pid > 0 and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        if is_alive(pid) and any(cmdline(pid)):
            return  # a live process: ours is up's step 1, someone else's is named by PostgreSQL's error
        time.sleep(POLL_INTERVAL_S)


def _running_port(paths: LocalPostgresPaths) -> int | None:
    """The port in ``postmaster.pid`` (its fourth line), as the running server wrote it."""
    try:
        return int(_pid_file_lines(paths)[3])
    except (ValueError, IndexError):
        return None


def _stop_server(pid: int, *, timeout_s: float) -> bool:
    """Shut the postmaster down; True once it is gone.

    Steps:
    1. SIGINT, PostgreSQL's "fast" shutdown: open transactions are rolled
       back, clients disconnected, a checkpoint written (SIGTERM would be
       "smart" shutdown, which waits for every client to leave).
    2. After ``timeout_s``: SIGQUIT, "immediate" shutdown; nothing committed is
       lost, the next start replays the WAL.
    3. After ``KILL_WAIT_S`` more: SIGKILL. False only if it is still there
       ``KILL_WAIT_S`` later.
    """
    for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGQUIT, KILL_WAIT_S), (signal.SIGKILL, KILL_WAIT_S)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while is_alive(pid):
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_INTERVAL_S)
        else:
            return True
    return False


def run_as(user: ServiceUser, cmd: list[str], *, cwd: Path, timeout_s: float, what: str) -> str:
    """Run ``cmd`` as ``user`` and return its output (stdout and stderr together); PostgresLocalError if it fails.

    ``what`` names the step in the error ("initdb"), which carries the
    program's last output lines.
    """
    argv = [*user.prefix, *cmd]
    try:
        proc = subprocess.run(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=timeout_s, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PostgresLocalError(f"{what} did not finish within {timeout_s:g} s") from exc
    except OSError as exc:
        raise PostgresLocalError(f"could not run {what} ({argv[0]}): {exc}") from exc
    if proc.returncode != 0:
        raise PostgresLocalError(f"{what} failed (exit {proc.returncode}):\n{tail(proc.stdout)}")
    return proc.stdout


def can_write(user: ServiceUser, directory: Path, *, cwd: Path) -> bool:
    """Whether ``user`` can create files in ``directory`` (for root, asked as that user: root passes any check)."""
    if not user.prefix:
        return os.access(directory, os.W_OK | os.X_OK)
    probe = subprocess.run(
        [*user.prefix, "test", "-w", str(directory), "-a", "-x", str(directory)],
        cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=30.0, check=False,
    )
    return probe.returncode == 0


def _start_server(
    paths: LocalPostgresPaths, binaries: PostgresBinaries, user: ServiceUser, *, port: int, fsync: bool, timeout_s: float
) -> None:
    """``pg_ctl start -w`` as ``user``: returns once the server says it is ready; PostgresLocalError otherwise.

    pg_ctl starts the postmaster in its own session (it outlives the caller)
    with its output appended to ``postgres.log``. The previous log is kept as
    ``postgres.log.1``, so a tail of the log shows this run only; its first line
    is the command.
    """
    options = server_options(port=port, paths=paths, fsync=fsync)
    cmd = [
        binaries.pg_ctl, "start", "-D", str(paths.data_dir), "-w", "-t", str(max(1, math.ceil(timeout_s))),
        "-l", str(paths.log_file), "-o", options,
    ]
    log = paths.log_file
    if log.exists():
        log.replace(log.with_name(log.name + ".1"))
    log.write_text(f"# {now()} {' '.join(cmd)}\n")
    user.owns(log)  # pg_ctl appends to it as the server's user
    # A little longer than pg_ctl's own wait, which reports a slow start itself.
    run_as(user, cmd, cwd=paths.run_dir, timeout_s=timeout_s + 15.0, what="pg_ctl start")
