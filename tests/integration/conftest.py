"""Fixtures of the integration tests: the live engine every live test runs once per value of."""

from __future__ import annotations

import pytest

#: The live engines (`rewind run NAME --engine ...`); every live test runs against each.
LIVE_ENGINES = ("quix", "batch")


@pytest.fixture(scope="module", params=LIVE_ENGINES)
def live_engine(request: pytest.FixtureRequest) -> str:
    """The engine of the live pipelines a test starts (module scope: a module's shared world is built once per engine)."""
    engine: str = request.param
    return engine
