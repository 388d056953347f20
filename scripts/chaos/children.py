"""The processes under test: one `rewind run VIEW` per view and one `rewind serve`, each killed and restarted.

A :class:`Supervised` process knows whether it ended because the soak killed it (SIGKILL,
counted as a kill) or on its own (an exit the soak did not cause: counted, its code and
last log lines kept as evidence, and a failure of the run). Every start writes a log of
its own (``logs/<name>.<n>.log``), so the log of the run that died is still there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.live.supervisor import PipelineChild
from pipelines.settings import RewindSettings
from scripts.chaos.config import pipeline_group

__all__ = ["Supervised", "SelfExit", "pipeline_process", "replica_process"]

Launch = Callable[[Path], subprocess.Popen[bytes]]


@dataclass(frozen=True)
class SelfExit:
    """A process that ended without the soak killing it."""

    name: str
    at_s: float
    returncode: int
    log_path: Path
    last_lines: tuple[str, ...]


@dataclass
class Supervised:
    """One process under test, started again after every end."""

    name: str
    launch: Launch
    log_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    starts: int = 0
    kills: int = 0
    started_at: float = 0.0
    self_exits: list[SelfExit] = field(default_factory=list)

    def start(self) -> None:
        """Start it (again), logging to a new file."""
        self.starts += 1
        self.log_path = self.log_dir / f"{self.name}.{self.starts}.log"
        self.proc = self.launch(self.log_path)
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        """True while the current run of it is running."""
        return self.proc is not None and self.proc.poll() is None

    def up_for_s(self) -> float:
        """Seconds since its last start (0 when not running)."""
        return time.monotonic() - self.started_at if self.alive() else 0.0

    def kill9(self) -> None:
        """SIGKILL and reap it: no chance to commit, flush or clean up."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def ended_on_its_own(self, *, at_s: float) -> SelfExit | None:
        """The :class:`SelfExit` if the current run ended and the soak did not end it (recorded once); else None."""
        if self.proc is None or self.proc.poll() is None or (self.self_exits and self.self_exits[-1].log_path == self.log_path):
            return None
        assert self.log_path is not None
        lines = tuple(self.log_path.read_text(errors="replace").splitlines()[-8:])
        ended = SelfExit(self.name, at_s, self.proc.returncode, self.log_path, lines)
        self.self_exits.append(ended)
        return ended

    def stop(self, *, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s`` (then SIGKILL); its exit code (None if it was not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -signal.SIGKILL


def pipeline_process(settings: RewindSettings, view: str, *, state_dir: Path, log_dir: Path) -> Supervised:
    """``view``'s pipeline: `rewind run VIEW` with its own state dir, started as the supervisor starts it."""

    def launch(log_path: Path) -> subprocess.Popen[bytes]:
        child = PipelineChild.start(settings, view, group=pipeline_group(settings, view), state_dir=state_dir, log_path=log_path)
        return child.proc

    return Supervised(view, launch, log_dir)


def replica_process(settings: RewindSettings, *, replica_dir: Path, port: int, log_dir: Path, name: str) -> Supervised:
    """The read replica: `rewind serve` over every view topic of ``settings``, on 127.0.0.1:``port``."""

    def launch(log_path: Path) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap(),
               "REWIND_VIEW_TOPIC_PREFIX": settings.view_topic_prefix}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "scripts.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--replica-dir", str(replica_dir)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )

    return Supervised(name, launch, log_dir)
