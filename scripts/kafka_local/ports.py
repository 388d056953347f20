"""The broker's listener ports: valid, distinct, and free on 127.0.0.1."""

from __future__ import annotations

import socket

from scripts.kafka_local.errors import KafkaLocalError
from scripts.kafka_local.paths import HOST


def _port_free(port: int) -> bool:
    """Whether Kafka could listen on HOST:port (bind test, like the broker does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the JVM sets it: ignores TIME_WAIT leftovers of a
        # previous broker, still fails when another socket listens there.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _check_ports(port: int, controller_port: int) -> None:
    for p in (port, controller_port):
        if not 1 <= p <= 65535:
            raise KafkaLocalError(f"invalid port {p}: use 1-65535")
    if port == controller_port:
        raise KafkaLocalError(f"the broker and controller ports must differ (both are {port})")
