"""A service's ports: valid, distinct, and free on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path

from schemas.errors import RewindError
from scripts.local_service.paths import HOST


def port_free(port: int) -> bool:
    """Whether a JVM could listen on HOST:port (bind test, as the service itself does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the JVM sets it: ignores TIME_WAIT leftovers of a
        # previous run, still fails when another socket listens there.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def check_ports(port: int, other_port: int, *, pair: str, error: type[RewindError]) -> None:
    """Raise ``error`` unless both ports are in 1-65535 and differ; ``pair`` names them ("the broker and controller ports")."""
    for p in (port, other_port):
        if not 1 <= p <= 65535:
            raise error(f"invalid port {p}: use 1-65535")
    if port == other_port:
        raise error(f"{pair} must differ (both are {port})")


def require_free_ports(
    ports: Iterable[int], *, what: str, run_dir: Path, advice: str, error: type[RewindError]
) -> None:
    """Raise ``error`` naming the first port that another process (not a ``what`` of ``run_dir``) listens on."""
    for p in ports:
        if not port_free(p):
            raise error(
                f"port {HOST}:{p} is in use by another process, not by a {what} started "
                f"from {run_dir}; stop that process or {advice}"
            )
