"""A service's JVM as a process: java, a detached start, liveness, its command line, whether it is ours, stopping it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from schemas.errors import RewindError
from scripts.local_service.files import write_atomic
from scripts.local_service.messages import now
from scripts.local_service.paths import POLL_INTERVAL_S

#: How long a process gets to vanish after SIGKILL, and a failed start after SIGTERM.
KILL_WAIT_S = 10.0

# Popen objects of processes started by this process, so that is_alive() can
# reap one that exited (a zombie still answers os.kill(pid, 0)).
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def find_java(*, error: type[RewindError]) -> str:
    """``$JAVA_HOME/bin/java`` if it exists, else ``java`` on PATH; raises ``error`` saying how to get one."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise error(
            "java not found: install a JDK/JRE 17+ (e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"
        )
    return java


def start_detached(cmd: list[str], *, cwd: Path, log_file: Path, pid_file: Path) -> int:
    """Start ``cmd`` in its own session, logging to ``log_file``; write and return its pid.

    The previous log is kept as ``<log>.1`` for post-mortems, so a tail of
    the log shows this run only; its first line is the command. Own session:
    no SIGHUP/SIGINT from the caller's terminal, and the process lives on
    after the caller exits.
    """
    if log_file.exists():
        log_file.replace(log_file.with_name(log_file.name + ".1"))
    with open(log_file, "wb") as log:
        log.write(f"# {now()} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=cwd, start_new_session=True,
        )
    _STARTED[proc.pid] = proc
    # Outliving the caller is the point; don't let Popen.__del__ warn about it.
    warnings.filterwarnings("ignore", message=f"subprocess {proc.pid} is still running", category=ResourceWarning)
    write_atomic(pid_file, f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid: int, *, timeout_s: float) -> bool:
    """SIGTERM (the service shuts down cleanly), then SIGKILL after ``timeout_s``; True once gone.

    False only if the process is still there ``KILL_WAIT_S`` after SIGKILL.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_exit(pid, timeout_s):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not _wait_exit(pid, KILL_WAIT_S):
            return False
    _STARTED.pop(pid, None)
    return True


def _wait_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it has exited and only waits to be reaped)."""
    # A process started by this very process turns into a zombie when it
    # exits, which os.kill(pid, 0) still reports as alive: reap it first,
    # through its Popen so that Popen knows it has exited.
    proc = _STARTED.get(pid)
    if proc is not None and proc.poll() is not None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        # /proc/<pid>/stat: "pid (comm) state ..."; comm may contain spaces.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    """The argv of ``pid`` (``/proc``, else ``ps``, space-split); empty when it cannot be read."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        pass
    # No /proc (macOS): ps prints the command line space-joined.
    try:
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return []
    return out.split()


def our_pid(pid_file: Path, *, is_ours: Callable[[list[str]], bool]) -> int | None:
    """The pid in ``pid_file`` if that process is alive and ``is_ours(its argv)``; else None.

    The argv check is what keeps a reused pid, or another checkout's
    service, from ever being signalled.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or not is_alive(pid):
        return None
    return pid if is_ours(cmdline(pid)) else None
