"""The ``down`` every local service has (stop the process of ours, keep its data), and abandoning a failed start."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from schemas.errors import RewindError
from scripts.local_service.files import locked
from scripts.local_service.messages import now
from scripts.local_service.paths import ServicePaths
from scripts.local_service.process import KILL_WAIT_S, stop_pid


def stop_ours(
    paths: ServicePaths,
    *,
    find_pid: Callable[[], int | None],
    timeout_s: float,
    what: str,
    error: type[RewindError],
) -> bool:
    """Stop the service ``find_pid()`` names: SIGTERM, wait, SIGKILL only after ``timeout_s``.

    Returns whether one of ours was running; with none, a stale pid file is
    removed and False returned. Raises ``error`` ("the local ``what`` (pid N)
    did not exit even after SIGKILL") if it survives. Runs under the run
    dir's lock; a line saying how long the stop took is appended to the log
    (services log little or nothing when they stop).
    """
    if not paths.run_dir.is_dir():
        return False
    with locked(paths.lock_file):
        pid = find_pid()
        if pid is None:
            paths.pid_file.unlink(missing_ok=True)  # stale: process gone or not ours
            return False
        started_s = time.monotonic()
        if not stop_pid(pid, timeout_s=timeout_s):
            raise error(f"the local {what} (pid {pid}) did not exit even after SIGKILL")
        paths.pid_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError), open(paths.log_file, "a") as log:
            log.write(f"# {now()} stopped by down() in {time.monotonic() - started_s:.1f} s\n")
        return True


def abandon_start(pid: int, *, pid_file: Path) -> None:
    """Stop a process whose start failed (SIGTERM, SIGKILL after ``KILL_WAIT_S``); drop its pid file once it is gone."""
    if stop_pid(pid, timeout_s=KILL_WAIT_S):
        pid_file.unlink(missing_ok=True)
