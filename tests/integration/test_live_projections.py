"""The five live projections against the workload oracle, on the real broker: views, dead letters, counts."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from pipelines.dlq import headers_to_dict
from pipelines.topics import view_topic
from scripts.workload import Oracle, WorkloadConfig, generate, produce_workload, write_oracle
from scripts.workload.expected_views import (
    DLQ_REASONS,
    expected_customers,
    expected_dead_letters,
    expected_order_status,
    expected_payments_daily,
    expected_revenue_windows,
    expected_skus,
    mismatched_keys,
    subset,
)
from tests.integration.support import (
    PipelineProcess,
    for_engine,
    group_caught_up,
    isolated_settings,
    latest_rows,
    read_topic,
    revenue_with_late,
    wait_until,
)

pytestmark = pytest.mark.integration

VIEWS = ("order-status", "customer-summary", "product-sales", "revenue-hourly", "payments-daily")


def _mismatches(actual: dict, expected: dict) -> list:
    """(key, view fields, oracle fields) for every row that differs, for readable failures."""
    return [(k, subset(actual.get(k, {}).get("row", {}), expected.get(k, {})), expected.get(k))
            for k in mismatched_keys(actual, expected)]


@pytest.fixture(scope="module")
def produced(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    name = f"t-live-{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("live")
    settings = isolated_settings(kafka_bootstrap, name, tmp)
    workload = generate(WorkloadConfig(seed=5, orders=2500, days=7, poison_rate=0.02))
    produce_workload(settings, workload, progress=False)
    oracle_path = tmp / "oracle.sqlite"
    write_oracle(workload, oracle_path, topic=settings.orders_topic)
    return settings, oracle_path, tmp, len(workload.records)


@pytest.fixture(scope="module")
def ran(produced: tuple, live_engine: str) -> dict:
    """Run all four pipelines of ``live_engine`` at once until each view equals the oracle, then SIGTERM them;
    their settings (own view topics and DLQ) and the counters each printed."""
    settings, oracle_path, tmp, _ = produced
    settings = for_engine(settings, live_engine)
    tmp = tmp / live_engine
    with Oracle.open(oracle_path) as oracle:
        expected = {
            "order-status": expected_order_status(oracle), "customer-summary": expected_customers(oracle),
            "product-sales": expected_skus(oracle), "payments-daily": expected_payments_daily(oracle),
        }
        expected_windows = expected_revenue_windows(oracle)

    procs = {v: PipelineProcess.start(settings, v, group=f"{settings.orders_topic}-{live_engine}-{v}", state_dir=tmp / v, log_dir=tmp / "logs")
             for v in VIEWS}
    bootstrap = settings.bootstrap()
    try:
        # Done = every orders record processed and committed, and the views (written after
        # the re-key step) equal the oracle; revenue-hourly is checked in its test.
        for view in VIEWS:
            group = f"{settings.orders_topic}-{live_engine}-{view}"
            def consumed(group: str = group, view: str = view) -> bool:
                return group_caught_up(bootstrap, group, settings.orders_topic) or not procs[view].alive()

            wait_until(consumed, timeout_s=300, what=f"{view} to consume everything", interval_s=1)
            assert procs[view].alive(), procs[view].output_tail()
        for view, exp in expected.items():
            topic = view_topic(view, prefix=settings.view_topic_prefix)
            def matches(topic: str = topic, exp: dict[str, Any] = exp, view: str = view) -> bool:
                return not _mismatches(latest_rows(bootstrap, topic), exp) or not procs[view].alive()

            wait_until(matches, timeout_s=120, what=f"{view} to match the oracle", interval_s=2)
        wait_until(lambda: revenue_with_late(settings, oracle_path)[0] == _nonzero(expected_windows), timeout_s=120,
                   what="revenue-hourly windows + late events to match the oracle", interval_s=2)
        stats = {v: procs[v].terminate() for v in VIEWS}
    finally:
        for p in procs.values():
            if p.alive():
                p.kill9()
    return {"settings": settings, "stats": stats}


def test_views_equal_the_oracle(produced: tuple, ran: dict) -> None:
    """Scenario: a poisoned workload through all four pipelines. We expect every row equal to the oracle's."""
    _, oracle_path, _, _ = produced
    settings = ran["settings"]
    with Oracle.open(oracle_path) as oracle:
        checks = {
            "order-status": expected_order_status(oracle), "customer-summary": expected_customers(oracle),
            "product-sales": expected_skus(oracle), "payments-daily": expected_payments_daily(oracle),
        }
        windows = expected_revenue_windows(oracle)

    for view, expected in checks.items():
        actual = latest_rows(settings.bootstrap(), view_topic(view, prefix=settings.view_topic_prefix))
        assert set(actual) == set(expected), view
        assert not _mismatches(actual, expected), f"{view}: {_mismatches(actual, expected)[:3]}"
    # Revenue windows: what the windows hold plus what was dead-lettered as late must equal the oracle exactly.
    revenue, late = revenue_with_late(settings, oracle_path)
    assert revenue == _nonzero(windows)
    assert late == ran["stats"]["revenue-hourly"]["late"]


def _nonzero(windows: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in windows.items() if v}





def test_every_poison_event_is_dead_lettered_with_its_reason(produced: tuple, ran: dict) -> None:
    """Scenario: poison in the log. We expect each non-duplicate poison in the DLQ once per pipeline, with where it came from."""
    _, oracle_path, _, _ = produced
    settings = ran["settings"]
    with Oracle.open(oracle_path) as oracle:
        expected = expected_dead_letters(oracle)
    records = read_topic(settings.bootstrap(), settings.dlq_topic)
    for view in VIEWS:
        seen: Counter = Counter()
        for msg in records:
            h = headers_to_dict(msg.headers())
            if h["rewind.pipeline"] != view or h["rewind.reason.class"] == "LateEvent":
                continue
            assert h["rewind.source.topic"] == settings.orders_topic
            assert int(h["rewind.source.offset"]) >= 0 and 0 <= int(h["rewind.source.partition"]) < 12
            assert h["rewind.reason.message"] and int(h["rewind.dead_lettered_at"]) > 0
            kind = next(k for k, reasons in DLQ_REASONS.items() if h["rewind.reason.class"] in reasons)
            seen[(msg.key().decode(), kind)] += 1
        assert seen == expected, view


def test_counts_add_up(produced: tuple, ran: dict) -> None:
    """Scenario: per pipeline, in = applied + duplicates + dead-lettered. We expect each term to match the generator's lists."""
    _, oracle_path, _, total = produced
    with Oracle.open(oracle_path) as oracle:
        poison = Counter(p.kind for p in oracle.poison())
        good = sum(oracle.event_type_counts().values())
    for view, stats in ran["stats"].items():
        assert stats["events_in"] == total, view
        assert stats["events_in"] == stats["applied"] + stats["duplicates"] + stats["dead_lettered"], view
        assert stats["duplicates"] == poison["duplicate"], view
        assert stats["dead_lettered"] == total - good - poison["duplicate"], view
        assert stats["applied"] == good, view
