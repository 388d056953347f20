"""Live and replay give the same views and the same late dead letters, for all five views, whatever the
restarts, crashes and instance count of the live pipelines (the kernel decides alike in both).

The oracle of record is the workload's (each view is also checked against it in test_live_projections);
here the two drivers are held to each other on top of that, row for row and late letter for late letter.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from pipelines.dlq import headers_to_dict
from pipelines.projections import VIEW_NAMES
from pipelines.topics import view_topic
from scripts.workload import Oracle, WorkloadConfig, generate, produce_workload, write_oracle
from scripts.workload.expected_views import expected_revenue_windows
from state.replay.engine import ReplayRequest, run_replay
from state.rocks_store import open_store
from tests.integration.support import PipelineProcess, group_caught_up, isolated_settings, latest_rows, read_topic, revenue_with_late, wait_until

pytestmark = pytest.mark.integration

#: revenue-hourly runs with no grace, so that out-of-order deliveries and refunds are late and the late
#: rule has real work: which ones are late must not depend on how the live pipeline ran.
GRACE_ARGS = ("--grace-ms", "0")


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, live_engine: str) -> dict[str, Any]:
    """A workload with late events and clock step-backs; all five views live. revenue-hourly runs as two
    instances in one group, one of which is SIGKILLed mid-way and replaced (a crash, two rebalances)."""
    tmp = tmp_path_factory.mktemp("agreement")
    name = f"t-agree-live-{uuid.uuid4().hex[:8]}"
    settings = isolated_settings(kafka_bootstrap, name, tmp, engine=live_engine)
    workload = generate(WorkloadConfig(seed=77, orders=1000, days=3, poison_rate=0.02, late_rate=0.15, skew_rate=0.02,
                                       max_lateness_ms=40 * 60_000))
    produce_workload(settings, workload, progress=False)
    oracle_path = tmp / "oracle.sqlite"
    write_oracle(workload, oracle_path, topic=settings.orders_topic)
    bootstrap = settings.bootstrap()
    procs: list[PipelineProcess] = []

    def start(view: str, i: int = 0) -> PipelineProcess:
        extra = GRACE_ARGS if view == "revenue-hourly" else ()
        proc = PipelineProcess.start(settings, view, group=f"{name}-{view}", state_dir=tmp / f"{view}-{i}", log_dir=tmp / "logs",
                                     extra_args=extra)
        procs.append(proc)
        return proc

    try:
        for view in VIEW_NAMES:
            start(view)
        crashing = start("revenue-hourly", 1)
        group = f"{name}-revenue-hourly"
        wait_until(lambda: _committed_any(bootstrap, group, settings.orders_topic), timeout_s=180,
                   what="revenue-hourly to commit some progress", interval_s=0.5)
        crashing.kill9()
        start("revenue-hourly", 2)
        for view in VIEW_NAMES:

            def caught_up(view: str = view) -> bool:
                return group_caught_up(bootstrap, f"{name}-{view}", settings.orders_topic)

            wait_until(caught_up, timeout_s=300, what=f"{view} to consume everything", interval_s=1)
        # The re-keyed views publish after their second step: wait until revenue adds up to the oracle's.
        with Oracle.open(oracle_path) as oracle:
            windows = {k: v for k, v in expected_revenue_windows(oracle).items() if v}
        wait_until(lambda: revenue_with_late(settings, oracle_path)[0] == windows, timeout_s=180,
                   what="revenue-hourly + late letters to add up to the oracle", interval_s=2)
    finally:
        for proc in procs:
            if proc.alive():
                proc.stop()
    return {"settings": settings, "tmp": tmp, "oracle": oracle_path}


def _committed_any(bootstrap: str, group: str, topic: str) -> bool:
    from tests.integration.support import committed_total

    return committed_total(bootstrap, group, topic) > 0


def _late_letters(bootstrap: str, topic: str, pipeline_prefix: str = "") -> list[tuple[int, int]]:
    """(source partition, source offset) of every LateEvent dead letter in ``topic``."""
    out = []
    for message in read_topic(bootstrap, topic):
        h = headers_to_dict(message.headers())
        if h["rewind.reason.class"] == "LateEvent":
            assert h["rewind.pipeline"].endswith("revenue-hourly")
            out.append((int(h["rewind.source.partition"]), int(h["rewind.source.offset"])))
    return out





@pytest.mark.parametrize("view", VIEW_NAMES)
def test_replay_equals_live_row_for_row(world: dict[str, Any], view: str) -> None:
    """Scenario: a replay from offset zero next to what the live pipeline published. We expect the same keys and,
    for every key, the same row (validFrom included)."""
    settings = world["settings"]
    live = {k: v["row"] for k, v in latest_rows(settings.bootstrap(), view_topic(view, prefix=settings.view_topic_prefix)).items()}
    result = run_replay(ReplayRequest(view=view, bootstrap=settings.bootstrap(), topic=settings.orders_topic,
                                      into=world["tmp"] / f"replay-{view}", workers=2, grace_ms=0 if view == "revenue-hourly" else None))
    store = open_store(result.output / "view", read_only=True)
    try:
        replayed = {k: dict(r.row) for k in live if (r := store.get(view, k)) is not None}
    finally:
        store.close()
    assert len(live) >= 5
    assert replayed == live


def test_late_letters_are_the_same_live_and_in_replay(world: dict[str, Any]) -> None:
    """Scenario: revenue-hourly with no grace, live through a crash and two rebalances, then replayed with its
    dead letters written to a topic of its own. We expect some late events, each dead-lettered exactly once
    live (exactly-once), and the same records, by source offset, from the replay."""
    settings = world["settings"]
    replay_dlq = f"{settings.orders_topic}.replay-dlq"
    run_replay(ReplayRequest(view="revenue-hourly", bootstrap=settings.bootstrap(), topic=settings.orders_topic,
                             into=world["tmp"] / "replay-late", workers=2, grace_ms=0, dlq_topic=replay_dlq))
    live = _late_letters(settings.bootstrap(), settings.dlq_topic)
    replayed = _late_letters(settings.bootstrap(), replay_dlq)
    assert len(live) >= 5, "the workload should make some deliveries or refunds late"
    assert max(Counter(live).values()) == 1
    assert sorted(replayed) == sorted(live)
