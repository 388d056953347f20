"""Scale-out of a re-keyed live projection, checked against the oracle (crashes: test_crash_loop_progress, test_soak)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from pipelines.live.supervisor import group_members_with_partitions
from pipelines.settings import RewindSettings
from pipelines.topics import view_topic
from scripts.workload import Oracle, WorkloadConfig, generate, produce_workload, write_oracle
from scripts.workload.expected_views import expected_customers, mismatched_keys
from tests.integration.support import (
    PipelineProcess,
    committed_total,
    group_caught_up,
    isolated_settings,
    latest_rows,
    wait_until,
)

pytestmark = pytest.mark.integration

VIEW = "customer-summary"


def _produce(bootstrap: str, tmp_path: Path, *, orders: int, seed: int, engine: str) -> tuple:
    """Generate the workload and produce its first half; returns (settings, expected rows, the second half, still to produce)."""
    name = f"t-crash-{uuid.uuid4().hex[:8]}"
    # Checkpoints every second, so kills land between commits often and progress is visible early.
    settings = isolated_settings(bootstrap, name, tmp_path, commit_interval_s=1.0, engine=engine)
    workload = generate(WorkloadConfig(seed=seed, orders=orders, days=7, poison_rate=0.01))
    half = len(workload.records) // 2
    produce_workload(settings, workload.records[:half], progress=False)
    write_oracle(workload, tmp_path / "oracle.sqlite", topic=settings.orders_topic)
    with Oracle.open(tmp_path / "oracle.sqlite") as oracle:
        expected = expected_customers(oracle)
    return settings, expected, workload.records[half:]


def _assert_view_equals(settings: RewindSettings, expected: dict) -> None:
    def matches() -> bool:
        rows = latest_rows(settings.bootstrap(), view_topic(VIEW, prefix=settings.view_topic_prefix))
        return not mismatched_keys(rows, expected)

    wait_until(matches, timeout_s=120, what=f"{VIEW} to equal the oracle", interval_s=2)


def _sole_member_holds_every_orders_partition(bootstrap: str, group: str, settings: RewindSettings) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    members = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=10).members
    if len(members) != 1 or members[0].assignment is None:
        return False
    held = {tp.partition for tp in members[0].assignment.topic_partitions if tp.topic == settings.orders_topic}
    return len(held) == settings.orders_partitions


def test_second_instance_joins_and_first_leaves(kafka_bootstrap: str, tmp_path: Path, live_engine: str) -> None:
    """Scenario: instance B joins the group mid-run, then instance A stops (SIGTERM). We expect B to take over every partition at once
    (A leaves the group), and the views to equal the oracle."""
    settings, expected, second_half = _produce(kafka_bootstrap, tmp_path, orders=40_000, seed=22, engine=live_engine)
    group = f"{settings.orders_topic}-{VIEW}"
    first = PipelineProcess.start(settings, VIEW, group=group, state_dir=tmp_path / "a", log_dir=tmp_path / "logs")
    second = None
    try:
        wait_until(lambda: not first.alive() or committed_total(kafka_bootstrap, group, settings.orders_topic) > 0,
                   timeout_s=300, what="first instance to make progress", interval_s=0.3)
        assert first.alive(), first.output_tail()
        second = PipelineProcess.start(settings, VIEW, group=group, state_dir=tmp_path / "b", log_dir=tmp_path / "logs")
        # Joined = the group has two members that each hold partitions (the range assignor splits the 12).
        wait_until(lambda: not second.alive() or group_members_with_partitions(kafka_bootstrap, group) == 2,
                   timeout_s=120, what="second instance to get partitions", interval_s=0.3)
        assert second.alive(), second.output_tail()
        # The rest of the log arrives only now, so both instances have work after the join however fast the first one was
        # (the batch engine finished all 40k orders before the second joined once in CI).
        produce_workload(settings, second_half, progress=False)
        assert first.alive(), first.output_tail()
        first_stats = first.terminate()
        assert first_stats["events_in"] > 0
        # A clean stop leaves the group: a static member that did not would hold its partitions for session.timeout.ms (45 s).
        stopped = time.monotonic()
        wait_until(lambda: _sole_member_holds_every_orders_partition(kafka_bootstrap, group, settings), timeout_s=20,
                   what="the second instance to take over every partition", interval_s=0.3)
        print(f"\nthe second instance held every partition {time.monotonic() - stopped:.1f} s after the first exited")
        wait_until(lambda: group_caught_up(kafka_bootstrap, group, settings.orders_topic) or not second.alive(),
                   timeout_s=300, what="the second instance to finish", interval_s=1)
        assert second.alive(), second.output_tail()
        _assert_view_equals(settings, expected)
        second_stats = second.terminate()
        assert second_stats["events_in"] > 0, "the second instance never got partitions"
    finally:
        for p in (first, second):
            if p is not None and p.alive():
                p.kill9()
