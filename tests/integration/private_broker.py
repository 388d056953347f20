"""A broker of a test's own, on free loopback ports, that the test may stop and start (outages, chaos).

The session broker (``kafka_bootstrap``) is shared by every test, so no test may take it
down; a test that needs an outage starts one of these instead. It is the project's own
local broker (:mod:`scripts.kafka_local`), with its run directory under the test's tmp dir.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scripts import kafka_local

__all__ = ["PrivateBroker", "private_broker", "free_port_pair"]


def free_port_pair() -> tuple[int, int]:
    """Two consecutive loopback ports that nothing listens on now (broker, controller)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port, port + 1
    raise RuntimeError("no two consecutive free loopback ports found")


@dataclass
class PrivateBroker:
    """One local broker: ``bootstrap`` stays the same across :meth:`stop`/:meth:`start` (data dir kept)."""

    run_dir: Path
    port: int
    controller_port: int

    @property
    def paths(self) -> kafka_local.LocalKafkaPaths:
        return kafka_local.LocalKafkaPaths(run_dir=self.run_dir)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        """Start (or wait for) the broker; returns once it answers metadata requests."""
        return kafka_local.up(port=self.port, controller_port=self.controller_port, paths=self.paths, heap="384m")

    def stop(self, *, hard: bool = False) -> None:
        """Take the broker down: SIGTERM and wait (``hard``: SIGKILL, as a crashed machine would)."""
        pid = kafka_local.status(paths=self.paths)["pid"]
        if hard and pid is not None:
            os.kill(pid, signal.SIGKILL)
        kafka_local.down(paths=self.paths)

    def running(self) -> bool:
        return bool(kafka_local.status(paths=self.paths)["running"])


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
