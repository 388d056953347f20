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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """SQLAlchemy URL of a maintenance database on the tests' PostgreSQL server; starts one when none is configured.

    REWIND_TEST_DATABASE_URL names an external server (nothing is started); otherwise the
    project's local PostgreSQL 15 runs in `.run/pg-test` on REWIND_TEST_POSTGRES_PORT
    (default 25432), stopped at the end only if this session started it. See
    tests/integration/postgres_support.py.
    """
    from tests.integration.postgres_support import session_server

    with session_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """SQLAlchemy URL of a database made for this test alone, e.g. ``postgresql+psycopg://postgres@127.0.0.1:25432/t_3f9a1c2e``.

    Dropped after the test (best effort, forced).
    """
    from tests.integration.postgres_support import fresh_database

    with fresh_database(postgres_server) as url:
        yield url
