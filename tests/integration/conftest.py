"""Fixtures of the integration tests: the live engine every live test runs once per value of."""

from __future__ import annotations

import pytest

from tests.integration.support import LIVE_ENGINES


@pytest.fixture(scope="module", params=LIVE_ENGINES)
def live_engine(request: pytest.FixtureRequest) -> str:
    """The engine of the live pipelines a test starts (module scope: a module's shared world is built once per engine)."""
    engine: str = request.param
    return engine
