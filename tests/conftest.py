"""Shared fixtures. Integration tests get the real broker: KAFKA_BOOTSTRAP_SERVERS, or the local one started here."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real Kafka broker; starts the project's local broker when none is configured."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    from scripts import kafka_local

    was_running = kafka_local.status()["running"]
    address = kafka_local.up()
    yield address
    if not was_running:
        kafka_local.down()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A topic-safe name unique to this test run, e.g. ``t-test-produce-3f9a1c2e``."""
    base = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")[:60].lower()
    return f"t-{base}-{uuid.uuid4().hex[:8]}"
