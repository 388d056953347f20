"""Replay as of T is exact whatever the lateness or timestamps in the log (log facts, :mod:`state.replay.logfacts`).

Expected answers are written by hand from ../shared/DESIGN.md "Time, precisely": an order as of
T is the longest prefix of its events in seq order whose occurredAt are all <= T.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from pipelines.partitioning import partition_for
from pipelines.topics import ORDERS_TOPIC_CONFIG, ensure_topic
from state.replay.engine import ReplayRequest, run_replay
from state.rocks_store import open_store
from tests.unit.state.replay.test_replay_fold import CODEC, event

pytestmark = pytest.mark.integration

MIN = 60_000
BASE = 1_700_000_000_000 - 1_700_000_000_000 % (60 * MIN)
T = BASE + 60 * MIN


def on(partition: int, name: str) -> str:
    """``name``, or ``name`` with the first suffix that puts it on ``partition`` of the 2 (murmur2, as Kafka's producers
    place keys): the records below are produced to a partition by hand, and one on another partition than its key's
    would be a WrongPartition dead letter."""
    candidates = (name if n == 0 else f"{name}.{n}" for n in itertools.count())
    return next(c for c in candidates if partition_for(c.encode(), 2) == partition)


A1, B1, B2 = on(0, "a1"), on(1, "b1"), on(1, "b2")


def order(order_id: str, *times: int) -> list[dict[str, Any]]:
    """The first len(times) events of a happy order, the i-th occurring at times[i]."""
    kinds = ["OrderPlaced", "PaymentAuthorized", "InventoryReserved", "OrderShipped"]
    return [event(kinds[i], i + 1, t, order_id=order_id, customer=f"c-{order_id}") for i, t in enumerate(times)]


def fillers(prefix: str, n: int, start: int, *, partition: int) -> list[dict[str, Any]]:
    """``n`` one-event orders of ``partition`` occurring after T (placed at start, start + 1 s, ...)."""
    return [e for i in range(n) for e in order(on(partition, f"{prefix}{i}"), start + i * 1000)]


def produce(bootstrap: str, topic: str, partition: int, events: list[dict[str, Any]], *, no_timestamp: set[int]) -> None:
    """Produce ``events`` in order; CreateTime = occurredAt, except the indexes in ``no_timestamp``
    (produced without one: the record is stamped with the wall clock)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0})
    for i, e in enumerate(events):
        kwargs: dict[str, Any] = {} if i in no_timestamp else {"timestamp": e["envelope"]["occurredAt"]}
        producer.produce(topic, key=e["envelope"]["orderId"].encode(), value=CODEC.encode(e), partition=partition, **kwargs)
    assert producer.flush(30) == 0


@pytest.fixture(scope="module")
def anomalous_log(kafka_bootstrap: str) -> dict[str, Any]:
    """Partition 0: a1's third event arrives 40 min after records stamped T + 30 min, then only records after T.
    Partition 1: a record stamped 2 h ahead (b2), then b1's second event at its true time, then b1's third
    event produced without a timestamp (stamped now, years after T), then only records after T."""
    import uuid

    topic = f"t-exact-as-of-{uuid.uuid4().hex[:8]}.orders"
    ensure_topic(kafka_bootstrap, topic, partitions=2, config=ORDERS_TOPIC_CONFIG)
    a1 = order(A1, BASE + 10 * MIN, BASE + 20 * MIN, BASE + 50 * MIN, T + 1)
    part0 = a1[:2] + fillers("f", 30, T + 30 * MIN, partition=0) + [a1[2]] + fillers("g", 60, T + 31 * MIN, partition=0) + [a1[3]]
    b1 = order(B1, BASE + 5 * MIN, BASE + 15 * MIN, BASE + 30 * MIN, T + 5)
    b2 = order(B2, T + 120 * MIN)
    part1 = [b1[0]] + b2 + [b1[1], b1[2]] + fillers("h", 60, T + 40 * MIN, partition=1) + [b1[3]]
    produce(kafka_bootstrap, topic, 0, part0, no_timestamp=set())
    produce(kafka_bootstrap, topic, 1, part1, no_timestamp={3})
    return {"topic": topic, "bootstrap": kafka_bootstrap, "sizes": {0: len(part0), 1: len(part1)}}


# By hand: a1 has Placed, Paid, Reserved at or before T (Reserved 40 min late in the log); b1 likewise
# (Paid after a record stamped 2 h ahead, Reserved stamped by the wall clock); b2 and every filler after T.
EXPECTED_AT_T = {A1: (3, BASE + 50 * MIN), B1: (3, BASE + 30 * MIN), B2: None, on(0, "f0"): None, on(0, "g5"): None, on(1, "h7"): None}


def answers(into: Path) -> dict[str, tuple[int, int] | None]:
    store = open_store(into / "view", read_only=True)
    try:
        out = {}
        for key in EXPECTED_AT_T:
            row = store.get("order-status", key)
            out[key] = None if row is None else (row.row["lastSeq"], row.row["validFrom"])
        return out
    finally:
        store.close()


def test_as_of_with_log_facts_is_exact_and_stops_early(anomalous_log: dict[str, Any], tmp_path: Path) -> None:
    """Scenario: as of T over a log with an event 40 min late, a record stamped 2 h ahead and one stamped by the
    wall clock. We expect the hand-written answer, and partition 0 proven safe to stop before its end."""
    request = ReplayRequest(view="order-status", bootstrap=anomalous_log["bootstrap"], topic=anomalous_log["topic"],
                            into=tmp_path / "with-facts", mode="as-of", as_of_ms=T, workers=0, facts_dir=tmp_path / "facts",
                            facts_range_records=16)
    result = run_replay(request)
    assert answers(result.output) == EXPECTED_AT_T
    plan = result.plan
    assert plan.stop_proven
    # Ranges of 16 offsets. Partition 0: a1's late third event is at offset 32, so [32, 48) is read and
    # everything from 48 on occurred after T. Partition 1: b1's events are at offsets 0-3.
    assert dict(plan.stop_offsets) == {0: 48, 1: 16}
    assert dict(plan.high_watermarks) == anomalous_log["sizes"]
    assert list((tmp_path / "facts").iterdir()), "the facts were saved for the next replay"
    again = run_replay(ReplayRequest(view="order-status", bootstrap=anomalous_log["bootstrap"], topic=anomalous_log["topic"],
                                     into=tmp_path / "again", mode="as-of", as_of_ms=BASE + 12 * MIN, workers=0,
                                     facts_dir=tmp_path / "facts", facts_range_records=16))
    assert answers(again.output) == EXPECTED_AT_T | {A1: (1, BASE + 10 * MIN), B1: (1, BASE + 5 * MIN)}


def test_as_of_without_facts_reads_everything_and_agrees(anomalous_log: dict[str, Any], tmp_path: Path) -> None:
    """Scenario: the same question with no log facts. We expect the same answer, read to the high watermarks."""
    result = run_replay(ReplayRequest(view="order-status", bootstrap=anomalous_log["bootstrap"], topic=anomalous_log["topic"],
                                      into=tmp_path / "no-facts", mode="as-of", as_of_ms=T, workers=2))
    assert answers(result.output) == EXPECTED_AT_T
    assert dict(result.plan.stop_offsets) == dict(result.plan.high_watermarks) and not result.plan.stop_proven
    # A timestamp-based stop (the first record stamped after T) would have cut both partitions before the answer.
    assert result.plan.offsets_at_as_of_ms is not None and result.plan.offsets_at_as_of_ms[1] == 1
