"""A broker of a caller's own, on free loopback ports, that the caller may stop and start (outages, chaos).

The test session's broker is shared by every test, and `rewind kafka up`'s by every user,
so nobody may take either down to stage an outage; an outage test or the chaos soak starts
one of these instead, with its run directory under its own tmp or ``.run`` dir.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scripts.kafka_local.lifecycle import down, status, up
from scripts.kafka_local.paths import LocalKafkaPaths
from scripts.local_service.ports import port_free

__all__ = ["PrivateBroker", "private_broker", "free_port_pair"]


def free_port_pair() -> tuple[int, int]:
    """Two consecutive loopback ports that nothing listens on now (broker, controller).

    Drawn from 20000-32767, below Linux's ephemeral range (32768-60999 by default): a port
    the kernel may hand to an outgoing connection could be taken, while the broker is down,
    by a client reconnecting to it (even by its own reconnect, TCP self-connect), and the
    restart would then find its port in use.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32766)
        if port_free(port) and port_free(port + 1):
            return port, port + 1
    raise RuntimeError("no two consecutive free loopback ports found in 20000-32767")


@dataclass
class PrivateBroker:
    """One local broker: ``bootstrap`` stays the same across :meth:`stop`/:meth:`start` (data dir kept)."""

    run_dir: Path
    port: int
    controller_port: int

    @property
    def paths(self) -> LocalKafkaPaths:
        return LocalKafkaPaths(run_dir=self.run_dir)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        """Start (or wait for) the broker; returns once it answers metadata requests."""
        return up(port=self.port, controller_port=self.controller_port, paths=self.paths, heap="384m")

    def stop(self, *, hard: bool = False) -> None:
        """Take the broker down: SIGTERM and wait (``hard``: SIGKILL, as a crashed machine would)."""
        pid = status(paths=self.paths)["pid"]
        if hard and pid is not None:
            os.kill(pid, signal.SIGKILL)
        down(paths=self.paths)

    def running(self) -> bool:
        return bool(status(paths=self.paths)["running"])


@contextmanager
def private_broker(run_dir: Path) -> Iterator[PrivateBroker]:
    """A started private broker under ``run_dir``; stopped on exit whatever happened."""
    port, controller_port = free_port_pair()
    broker = PrivateBroker(run_dir=run_dir, port=port, controller_port=controller_port)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
