"""Shared fixtures. Integration tests get the real broker: KAFKA_BOOTSTRAP_SERVERS, or the local one started here."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real Kafka broker; starts the project's local broker when none is configured.

    The test broker has its own ports (REWIND_TEST_KAFKA_PORT, default 19092, and the
    next one for its controller) and run directory, so a broker started by
    `rewind kafka up` or the main job on 9092 neither blocks nor serves the tests.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    from scripts import kafka_local

    port = int(os.environ.get("REWIND_TEST_KAFKA_PORT", "19092"))
    paths = kafka_local.LocalKafkaPaths(run_dir=kafka_local.PROJECT_ROOT / ".run" / "kafka-test")
    was_running = kafka_local.status(paths=paths)["running"]
    address = kafka_local.up(port=port, controller_port=port + 1, paths=paths)
    yield address
    if not was_running:
        kafka_local.down(paths=paths)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A topic-safe name unique to this test run, e.g. ``t-test-produce-3f9a1c2e``."""
    base = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")[:60].lower()
    return f"t-{base}-{uuid.uuid4().hex[:8]}"
