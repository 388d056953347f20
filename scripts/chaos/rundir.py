"""The soak's run directory: one soak at a time per directory, a fresh sub-directory per run, leftovers cleared.

Layout: ``<run dir>/soak.lock`` (held while a soak runs) and ``<run dir>/<UTC stamp>-seed<S>/`` per run, with
``broker/`` (its private broker), ``state/<view>/``, ``replica/``, ``logs/``, ``oracle.sqlite``, ``summary.json``
and ``children.pids``. A soak that was itself killed -9 leaves its broker and children running: the next
soak in the same directory stops them (only a broker this package started there, only a pid whose command
line still names that run's directory), deletes their data (broker log dir, pipeline state, replica store; their logs,
oracle and summary stay), then removes all but the newest :data:`KEEP_RUNS` runs.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from schemas.errors import ConfigError
from scripts.kafka_local import LocalKafkaPaths, down, status

__all__ = ["new_run", "note_child", "KEEP_RUNS"]

#: Older runs are deleted (their logs with them) beyond this many.
KEEP_RUNS = 3
_PIDS = "children.pids"


@contextmanager
def new_run(root: Path, *, seed: int) -> Iterator[Path]:
    """Hold ``root``'s lock, clear what earlier soaks left running, and yield a new empty run directory."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    with (root / "soak.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ConfigError(f"--run-dir {str(root)!r}: another soak is running there; wait for it or give another --run-dir") from exc
        earlier = sorted(p for p in root.iterdir() if p.is_dir() and "-seed" in p.name)
        for old in earlier:
            _stop_leftovers(old)
            for bulky in (old / "broker" / "data", old / "state", old / "replica"):  # ~800 MB after 20 min; logs and summary stay
                shutil.rmtree(bulky, ignore_errors=True)
        for old in earlier[: max(0, len(earlier) - (KEEP_RUNS - 1))]:
            shutil.rmtree(old, ignore_errors=True)
        run = root / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-seed{seed}"
        run.mkdir()
        yield run


def note_child(run: Path, pid: int) -> None:
    """Remember a child's pid, so that a later soak can stop it if this one dies without doing so."""
    with (run / _PIDS).open("a") as f:
        f.write(f"{pid}\n")


def _stop_leftovers(run: Path) -> None:
    try:
        pids = [int(line) for line in (run / _PIDS).read_text().split()]
    except (OSError, ValueError):
        pids = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(run).encode() in cmdline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    paths = LocalKafkaPaths(run_dir=run / "broker")
    if status(paths=paths)["running"]:
        down(paths=paths)
