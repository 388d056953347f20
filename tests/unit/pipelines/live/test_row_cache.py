"""The live step's in-memory row copy: bounded, and never a substitute for the state store it mirrors."""

from __future__ import annotations

import orjson
import pytest

from pipelines.live import steps as live_steps
from pipelines.live.row_cache import MISSING, RowCache
from pipelines.live.stats import PipelineStats
from pipelines.projections import get_projection
from tests.quix_fakes import FakeContext, FakeState
from tests.unit.state.replay.test_replay_fold import T0, event, records


def test_cache_is_bounded_and_evicts_the_least_recently_written_row() -> None:
    cache = RowCache(max_rows=2)
    cache.put(b"a", {"n": 1})
    cache.put(b"b", {"n": 2})
    cache.put(b"a", {"n": 3})  # rewriting "a" makes "b" the oldest
    cache.put(b"c", {"n": 4})
    assert len(cache) == 2
    assert cache.get(b"b") is MISSING
    assert cache.get(b"a") == {"n": 3} and cache.get(b"c") == {"n": 4}
    cache.clear()
    assert cache.get(b"a") is MISSING and len(cache) == 0


def test_order_step_reads_the_store_when_the_cache_was_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario: the cache is dropped between two events of one order (as on a rebalance).
    We expect the step to continue from the stored row: status PAYMENT_AUTHORIZED, lastSeq 2, nothing rejected."""
    stats = PipelineStats("order-status")
    step = live_steps.OrderStep(get_projection("order-status"), stats, rekeyed=False)
    state = FakeState()
    recs = records(event("OrderPlaced", 1, T0 + 100), event("PaymentAuthorized", 2, T0 + 200), event("PaymentAuthorized", 2, T0 + 200))
    outputs = []
    for r in recs:
        monkeypatch.setattr(live_steps, "message_context", lambda r=r: FakeContext("orders", 0, r.offset()))
        step.rows.clear()
        value = r.value()
        assert value is not None
        outputs.append(step(value, r.key(), r.timestamp()[1], [], state))
    stored = orjson.loads(state.data[live_steps.ORDER_STATE_KEY_BYTES])
    assert (stored["status"], stored["lastSeq"]) == ("PAYMENT_AUTHORIZED", 2)
    assert [len(o) for o in outputs] == [1, 1, 0]  # the redelivered seq 2 is a duplicate, found through the store
    assert (stats.applied, stats.duplicates, stats.dead_lettered) == (2, 1, 0)


def test_order_step_state_key_is_quix_json_form_of_the_old_key() -> None:
    """State written before the bytes-key change (Quix JSON-serialised the str key) must stay readable."""
    assert live_steps.ORDER_STATE_KEY_BYTES == b'"order"'
