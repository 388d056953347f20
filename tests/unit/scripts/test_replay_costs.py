"""The replay cost model (scripts/replay_costs.py) runs every replay step on a small log, no broker."""

from __future__ import annotations

import pytest

from pipelines.projections import VIEW_NAMES
from scripts.replay_costs import STEPS, view_costs
from tests.unit.state.replay.test_replay_rowwrites import _log


@pytest.mark.parametrize("view", VIEW_NAMES)
def test_every_step_after_consume_is_measured(view: str) -> None:
    """Scenario: the cost model on a 20-record log, for each view. We expect a CPU time for every step after consume."""
    log = _log()
    costs = view_costs(view, "orders", log, {0: log[-1].offset() + 1}, partition_count=1, batch_size=4)
    assert set(costs) == set(STEPS) - {"consume"}
    assert all(seconds >= 0 for seconds in costs.values())
