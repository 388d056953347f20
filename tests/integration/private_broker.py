"""A broker of a test's own that the test may stop and start: see :mod:`scripts.kafka_local.private_broker`."""

from __future__ import annotations

from scripts.kafka_local.private_broker import PrivateBroker, free_port_pair, private_broker

__all__ = ["PrivateBroker", "private_broker", "free_port_pair"]
