"""Where local services keep their files: the project root, the user cache, and a run dir's fixed files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

#: Every local service listens on loopback only: nothing outside this machine can reach it.
HOST = "127.0.0.1"

# scripts/ is the parent of this package, and the repo root is its parent.
SCRIPTS_DIR = Path(__file__).resolve().parent.parent
PROJECT_ROOT = SCRIPTS_DIR.parent

#: How often to look again while waiting: for a process to exit, for a service to answer.
POLL_INTERVAL_S = 0.1


def user_cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/rewind/<name>`` (``~/.cache`` when unset): outside git, shared by all checkouts."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "rewind" / name


@dataclass(frozen=True)
class ServicePaths:
    """A service's run dir, made absolute, and the lock, pid and log files in it.

    Subclasses name the pid and log files (``PID_NAME``, ``LOG_NAME``), give
    ``run_dir`` its default, add their own fields, and list every path field
    in ``ABSOLUTE_FIELDS``: those are made absolute because they go into the
    service's command line, which is how ``our_pid`` recognises the process.
    """

    run_dir: Path

    PID_NAME: ClassVar[str]
    LOG_NAME: ClassVar[str]
    ABSOLUTE_FIELDS: ClassVar[tuple[str, ...]] = ("run_dir",)

    def __post_init__(self) -> None:
        for name in self.ABSOLUTE_FIELDS:
            object.__setattr__(self, name, Path(getattr(self, name)).expanduser().resolve())

    @property
    def log_file(self) -> Path:
        return self.run_dir / self.LOG_NAME

    @property
    def pid_file(self) -> Path:
        return self.run_dir / self.PID_NAME

    @property
    def lock_file(self) -> Path:
        return self.run_dir / ".lock"
