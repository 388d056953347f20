"""The two time machines agree: the replica's as-of read, the replay as of T, and the oracle give the same row."""

from __future__ import annotations

import random
import uuid

import pytest

from pipelines.readback import data_end_offsets
from pipelines.topics import view_topic
from scripts.workload import Oracle, WorkloadConfig, generate, produce_workload, write_oracle
from scripts.workload.expected_views import expected_customers, expected_order_status, mismatched_keys
from state.replay.engine import ReplayRequest, run_replay
from state.replica import Replica, view_topics
from state.rocks_store import open_store
from tests.integration.support import PipelineProcess, isolated_settings, latest_rows, wait_until

pytestmark = pytest.mark.integration

VIEWS = ("order-status", "customer-summary")
PAIRS_PER_VIEW = 300


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, live_engine: str) -> dict:
    """A workload with late events, clock step-backs, duplicates and poison; live views; a caught-up replica."""
    tmp = tmp_path_factory.mktemp("agree")
    name = f"t-agree-{uuid.uuid4().hex[:8]}"
    settings = isolated_settings(kafka_bootstrap, name, tmp, engine=live_engine)
    workload = generate(WorkloadConfig(seed=31, orders=1200, days=4, poison_rate=0.02, late_rate=0.05, skew_rate=0.02))
    produce_workload(settings, workload, progress=False)
    oracle_path = tmp / "oracle.sqlite"
    write_oracle(workload, oracle_path, topic=settings.orders_topic)
    with Oracle.open(oracle_path) as oracle:
        final = {"order-status": expected_order_status(oracle), "customer-summary": expected_customers(oracle)}
    procs = [PipelineProcess.start(settings, v, group=f"{name}-{v}", state_dir=tmp / v, log_dir=tmp / "logs") for v in VIEWS]
    try:
        for view, proc in zip(VIEWS, procs, strict=True):
            topic = view_topic(view, prefix=settings.view_topic_prefix)

            def caught_up(proc: PipelineProcess = proc, topic: str = topic, view: str = view) -> bool:
                return not proc.alive() or _equal(latest_rows(kafka_bootstrap, topic), final[view])

            wait_until(caught_up, timeout_s=240, what=f"{view} to equal the oracle", interval_s=2)
            assert proc.alive(), proc.output_tail()
    finally:
        for proc in procs:
            proc.stop()
    # The replica consumes the view topics to their end.
    topics = view_topics(prefix=settings.view_topic_prefix, views=VIEWS)
    ends = {t: data_end_offsets(kafka_bootstrap, t) for t in topics}
    store = open_store(tmp / "replica")
    replica = Replica(store, bootstrap=kafka_bootstrap, topics=topics, metadata_refresh_s=0.5)
    replica.start()
    try:
        wait_until(lambda: all(store.position().get(t, {}).get(p, 0) >= o for t, parts in ends.items() for p, o in parts.items()),
                   timeout_s=120, what="the replica to reach the end of the view topics")
    finally:
        replica.stop()
    return {"settings": settings, "oracle": oracle_path, "store": store, "workload": workload, "tmp": tmp}


def _equal(rows: dict, expected: dict) -> bool:
    return not mismatched_keys(rows, expected)


def _random_times(world: dict, rng: random.Random, n: int) -> list[int]:
    """Times inside the history, some of them exactly at an event's occurredAt (the inclusive bound)."""
    records = [r for r in world["workload"].records if r.poison is None]
    times = [rng.choice(records).timestamp_ms for _ in range(n // 2)]
    start, end = records[0].timestamp_ms, max(r.timestamp_ms for r in records)
    times += [rng.randint(start, end) for _ in range(n - len(times))]
    return sorted(times)


def test_order_status_as_of_agrees_three_ways(world: dict) -> None:
    """Scenario: hundreds of random (order, T). We expect replica as-of, replay as-of T, and the oracle to give the same status."""
    rng = random.Random(7)
    settings, store = world["settings"], world["store"]
    order_ids = sorted(world["workload"].orders)
    times = _random_times(world, rng, 6)
    checked = 0
    with Oracle.open(world["oracle"]) as oracle:
        for t in times:
            into = world["tmp"] / f"replay-os-{t}"
            run_replay(ReplayRequest(view="order-status", bootstrap=settings.bootstrap(), topic=settings.orders_topic,
                                     into=into, mode="as-of", as_of_ms=t, max_lateness_ms=settings.max_lateness_ms, workers=0))
            replayed = open_store(into / "view", read_only=True)
            for order_id in rng.sample(order_ids, PAIRS_PER_VIEW // len(times)):
                truth = oracle.order_as_of(order_id, t)
                from_replica = store.get_as_of("order-status", order_id, t)
                from_replay = replayed.get("order-status", order_id)
                if truth is None:
                    assert from_replica is None and from_replay is None, (order_id, t)
                    continue
                for source, answer in (("replica", from_replica), ("replay", from_replay)):
                    if answer is None:
                        hist = [(h.valid_from_ms, h.row["lastSeq"], h.row["status"]) for h in store.history("order-status", order_id)]
                        pytest.fail(f"{source} {order_id} {t} {truth} {hist}")
                    assert (answer.row["status"], answer.row["lastSeq"]) == (str(truth.status), truth.last_seq), (order_id, t)
                assert from_replica.valid_from_ms == truth.valid_from_ms <= t
                checked += 1
            replayed.close()
    assert checked >= 100


def test_customer_summary_as_of_agrees_three_ways(world: dict) -> None:
    """Scenario: random (customer, T), counter view fed out of event-time order. We expect one lifetime value three ways."""
    rng = random.Random(8)
    settings, store = world["settings"], world["store"]
    with Oracle.open(world["oracle"]) as oracle:
        customers = sorted({c.customer_id for c in oracle.customers()})
        for t in _random_times(world, rng, 4):
            into = world["tmp"] / f"replay-cs-{t}"
            run_replay(ReplayRequest(view="customer-summary", bootstrap=settings.bootstrap(), topic=settings.orders_topic,
                                     into=into, mode="as-of", as_of_ms=t, max_lateness_ms=settings.max_lateness_ms, workers=0))
            replayed = open_store(into / "view", read_only=True)
            for customer in rng.sample(customers, min(len(customers), PAIRS_PER_VIEW // 4)):
                truth = oracle.customer_ltv_as_of(customer, t)
                answers = [store.get_as_of("customer-summary", customer, t), replayed.get("customer-summary", customer)]
                values = [a.row["lifetimeValueMinor"] if a is not None else 0 for a in answers]
                assert values == [truth, truth], (customer, t)
            replayed.close()
