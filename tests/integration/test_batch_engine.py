"""The batch live engine (pipelines.batch) on the real broker: every view against the workload's oracle.

Covers the exactly-once protocol of :mod:`pipelines.batch.engine`: a clean run, a stop
and restart of the same instance, and a lost state directory (step 1 refolds with
outputs muted), each checked against the oracle and for records published twice.
"""

from __future__ import annotations

import shutil
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipelines.batch.engine import BatchEngine
from pipelines.batch.snapshots import PartitionSnapshots
from pipelines.dlq import headers_to_dict
from pipelines.errors import InstanceFencedError
from pipelines.live.stats import PipelineStats
from pipelines.settings import RewindSettings
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
)
from tests.integration.support import committed_total, isolated_settings, latest_rows, read_topic, revenue_with_late, wait_until

pytestmark = pytest.mark.integration

EXPECTED: dict[str, Callable[[Oracle], dict[str, dict[str, Any]]]] = {
    "order-status": expected_order_status, "customer-summary": expected_customers, "product-sales": expected_skus,
    "payments-daily": expected_payments_daily,
}


class RunningEngine:
    """A BatchEngine in a thread of this process, stopped through its stop event."""

    def __init__(self, settings: RewindSettings, view: str, state_dir: Path, *, group: str, instance_id: str = "i0", **options: Any) -> None:
        options.setdefault("commit_interval_s", 0.5)
        self.engine = BatchEngine(settings, view, state_dir=state_dir, instance_id=instance_id, group_id=group, progress_interval_s=3600,
                                  **options)
        self.stop_event = threading.Event()
        self.stats: PipelineStats | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.stats = self.engine.run(self.stop_event)
        except BaseException as exc:  # re-raised by stop(), in the test's thread
            self.error = exc

    def finished(self) -> bool:
        return not self.thread.is_alive()

    def running(self) -> bool:
        """True while the engine runs; raises what stopped it if it stopped on its own (a wait then fails with the cause)."""
        if self.thread.is_alive():
            return True
        if self.error is not None:
            raise AssertionError(f"the engine stopped with {self.error!r}") from self.error
        raise AssertionError("the engine stopped before it was told to")

    def describe(self) -> str:
        """Where the engine is, for a wait that timed out: its positions, stores, counts and the stack of its thread."""
        engine = self.engine
        frame = sys._current_frames().get(self.thread.ident or -1)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(thread ended)"
        stores = {f"{t}[{p}]": store.applied for (t, p), store in sorted(engine._stores.items())}
        return (f"in transaction: {engine._in_transaction}; positions: {engine._positions}; stores applied: {stores}; "
                f"stats: {engine.stats}; pending: {engine._pending}\nengine thread:\n{stack}")

    def wait_for_commits(self, group: str, topic: str, total: int, *, what: str, timeout_s: float = 120) -> None:
        """Poll until ``group`` has committed ``total`` records of ``topic``; on a timeout, say where the engine was."""
        bootstrap = self.engine._bootstrap
        try:
            wait_until(lambda: self.running() and committed_total(bootstrap, group, topic) == total, timeout_s=timeout_s, what=what)
        except AssertionError as exc:
            if self.thread.is_alive():
                raise AssertionError(f"{exc}\n{self.describe()}") from None
            raise

    def stop(self) -> PipelineStats:
        self.stop_event.set()
        self.thread.join(timeout=120)
        assert not self.thread.is_alive(), "the engine did not stop within 120 s"
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats


@pytest.fixture
def workload(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> tuple[RewindSettings, Path, int]:
    settings = isolated_settings(kafka_bootstrap, unique_name, tmp_path, commit_interval_s=0.5)
    generated = generate(WorkloadConfig(seed=11, orders=800, days=4, poison_rate=0.03))
    produce_workload(settings, generated, progress=False)
    oracle_path = tmp_path / "oracle.sqlite"
    write_oracle(generated, oracle_path, topic=settings.orders_topic)
    return settings, oracle_path, len(generated.records)


def _wait_for_oracle(settings: RewindSettings, oracle_path: Path, view: str) -> None:
    """Poll until ``view``'s topic equals the oracle (a re-keyed view's stage 2 trails its orders offsets)."""
    bootstrap = settings.bootstrap()
    with Oracle.open(oracle_path) as oracle:
        if view == "revenue-hourly":
            windows = {k: v for k, v in expected_revenue_windows(oracle).items() if v}
        else:
            expected_rows = EXPECTED[view](oracle)
    if view == "revenue-hourly":
        wait_until(lambda: revenue_with_late(settings, oracle_path)[0] == windows, timeout_s=120, what="revenue windows + late to match")
    else:
        topic = view_topic(view, prefix=settings.view_topic_prefix)
        wait_until(lambda: not mismatched_keys(latest_rows(bootstrap, topic), expected_rows), timeout_s=120,
                   what=f"{view} to match the oracle")


def _assert_view_and_dlq_match(settings: RewindSettings, oracle_path: Path, view: str, stats: PipelineStats) -> None:
    bootstrap = settings.bootstrap()
    with Oracle.open(oracle_path) as oracle:
        expected_letters = expected_dead_letters(oracle)
        if view == "revenue-hourly":
            windows = {k: v for k, v in expected_revenue_windows(oracle).items() if v}
        else:
            expected_rows = EXPECTED[view](oracle)
    if view == "revenue-hourly":  # what the windows hold plus the late letters' revenue is the oracle's, exactly
        wait_until(lambda: revenue_with_late(settings, oracle_path)[0] == windows, timeout_s=60, what="revenue windows + late to match")
        assert revenue_with_late(settings, oracle_path)[1] == stats.late
    else:
        topic = view_topic(view, prefix=settings.view_topic_prefix)
        wait_until(lambda: not mismatched_keys(latest_rows(bootstrap, topic), expected_rows), timeout_s=60, what=f"{view} to match the oracle")
    seen: Counter[tuple[str, str]] = Counter()
    for msg in read_topic(bootstrap, settings.dlq_topic):
        h = headers_to_dict(msg.headers())
        assert h["rewind.pipeline"] == view and h["rewind.source.topic"] == settings.orders_topic
        if h["rewind.reason.class"] == "LateEvent":
            continue
        kind = next(k for k, reasons in DLQ_REASONS.items() if h["rewind.reason.class"] in reasons)
        seen[(msg.key().decode(), kind)] += 1
    assert seen == expected_letters


def _published_twice(settings: RewindSettings, view: str) -> list[tuple[Any, ...]]:
    """(view key, orderId, seq) published more than once to the committed view topic."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for msg in read_topic(settings.bootstrap(), view_topic(view, prefix=settings.view_topic_prefix)):
        value = orjson.loads(msg.value())
        counts[(msg.key(), value["change"]["orderId"], value["change"]["seq"])] += 1
    return [k for k, n in counts.items() if n > 1]


#: One view of each shape: per order; re-keyed counters; re-keyed windows with the late rule. The kernel fuzz
#: test compares the batch stage with the Quix step and the replay fold on every view, record for record.
@pytest.mark.parametrize("view", ["order-status", "customer-summary", "revenue-hourly"])
def test_a_run_equals_the_oracle_and_counts_add_up(view: str, workload: tuple[RewindSettings, Path, int], tmp_path: Path) -> None:
    """Scenario: a poisoned workload through the batch engine. We expect the oracle's rows, its dead letters, and in = applied + dup + dead."""
    settings, oracle_path, total = workload
    group = f"{settings.orders_topic}-batch"
    running = RunningEngine(settings, view, tmp_path / "state", group=group)
    running.wait_for_commits(group, settings.orders_topic, total, what="the batch engine to commit every record")
    _wait_for_oracle(settings, oracle_path, view)
    stats = running.stop()
    assert stats.events_in == total == stats.applied + stats.duplicates + stats.dead_lettered
    _assert_view_and_dlq_match(settings, oracle_path, view, stats)
    assert _published_twice(settings, view) == []


@pytest.mark.parametrize("view", ["customer-summary"])  # both stages: orders and repartition stores refolded
def test_a_restart_and_a_lost_state_dir_publish_nothing_twice(view: str, workload: tuple[RewindSettings, Path, int], tmp_path: Path) -> None:
    """Scenario: stop after a first checkpoint, lose the state dir, restart. We expect the oracle's rows and no record published twice."""
    settings, oracle_path, total = workload
    group = f"{settings.orders_topic}-batch"
    state = tmp_path / "state"
    bootstrap = settings.bootstrap()
    first = RunningEngine(settings, view, state, group=group)
    wait_until(lambda: first.running() and committed_total(bootstrap, group, settings.orders_topic) > 0, timeout_s=60, what="a first checkpoint")
    first_stats = first.stop()
    committed_first = committed_total(bootstrap, group, settings.orders_topic)
    assert 0 < committed_first <= total

    shutil.rmtree(state)  # the disk is lost: step 1 must refold what was committed, without publishing it again
    second = RunningEngine(settings, view, state, group=group)
    wait_until(lambda: second.running() and committed_total(bootstrap, group, settings.orders_topic) == total, timeout_s=120,
               what="the restarted engine to commit every record")
    _wait_for_oracle(settings, oracle_path, view)
    second_stats = second.stop()
    assert first_stats.events_in + second_stats.events_in == total
    assert second.engine.refolded[settings.orders_topic] == committed_first  # every committed orders record refolded once, muted
    second_stats.late += first_stats.late
    _assert_view_and_dlq_match(settings, oracle_path, view, second_stats)
    assert _published_twice(settings, view) == []


@pytest.mark.parametrize("view", ["customer-summary"])  # both stages: orders and repartition stores restored
def test_a_lost_state_dir_restarts_from_snapshots_and_refolds_only_the_tail(
    view: str, workload: tuple[RewindSettings, Path, int], tmp_path: Path
) -> None:
    """Scenario: snapshots every checkpoint; the newest snapshot of each store is lost with the state dir.
    We expect each store restored from its older snapshot, only the records after it refolded (muted), the oracle's rows,
    and nothing published twice."""
    settings, oracle_path, total = workload
    group, bootstrap, state = f"{settings.orders_topic}-batch", settings.bootstrap(), tmp_path / "state"
    snapshots = PartitionSnapshots(tmp_path / "snapshots")
    # Small batches, a checkpoint and a snapshot after each: most stores get several snapshots.
    first = RunningEngine(settings, view, state, group=group, snapshots=snapshots, snapshot_interval_s=0.0, batch_size=200,
                          commit_interval_s=0.01)
    wait_until(lambda: first.running() and committed_total(bootstrap, group, settings.orders_topic) == total, timeout_s=120, what="every record committed")
    first_stats = first.stop()

    shutil.rmtree(state)
    kept: dict[str, int] = {}  # store -> applied of the snapshot it must restart from (the newest but one)
    for folder in sorted((tmp_path / "snapshots").iterdir()):
        offsets = snapshots.offsets(folder.name)
        shutil.rmtree(folder / f"{offsets[-1]:020d}")
        if len(offsets) > 1:
            kept[folder.name] = offsets[-2]
    assert any(name.startswith("p") for name in kept), "no orders store had two snapshots: the test proves nothing"
    second = RunningEngine(settings, view, state, group=group, snapshots=PartitionSnapshots(tmp_path / "snapshots"))
    _wait_for_oracle(settings, oracle_path, view)
    second_stats = second.stop()

    assert second_stats.events_in == 0  # everything was committed before: restart work is muted refolding only
    assert second.engine.restored.get(settings.orders_topic, 0) == sum(name.startswith("p") for name in kept)
    # Each orders store refolds from its snapshot (from the log start where none was left) to the group's offset.
    assert second.engine.refolded.get(settings.orders_topic, 0) == total - sum(o for name, o in kept.items() if name.startswith("p"))
    _assert_view_and_dlq_match(settings, oracle_path, view, first_stats)
    assert _published_twice(settings, view) == []


@pytest.mark.parametrize("view", ["customer-summary"])  # both stages move: orders and repartition partitions
def test_a_second_instance_joins_then_the_first_leaves(view: str, workload: tuple[RewindSettings, Path, int], tmp_path: Path) -> None:
    """Scenario: instance a runs, b joins (cooperative rebalance), a leaves. We expect the oracle's rows and nothing published twice."""
    settings, oracle_path, total = workload
    group = f"{settings.orders_topic}-batch"
    bootstrap = settings.bootstrap()
    a = RunningEngine(settings, view, tmp_path / "a", group=group, instance_id="a")
    wait_until(lambda: a.running() and committed_total(bootstrap, group, settings.orders_topic) > 0, timeout_s=60, what="a's first checkpoint")
    b = RunningEngine(settings, view, tmp_path / "b", group=group, instance_id="b")
    wait_until(lambda: b.engine._stores, timeout_s=60, what="b to be given partitions")
    a_stats = a.stop()
    wait_until(lambda: b.running() and committed_total(bootstrap, group, settings.orders_topic) == total, timeout_s=120, what="every record committed")
    _wait_for_oracle(settings, oracle_path, view)
    b_stats = b.stop()
    assert a_stats.events_in + b_stats.events_in == total
    b_stats.late += a_stats.late
    _assert_view_and_dlq_match(settings, oracle_path, view, b_stats)
    assert _published_twice(settings, view) == []


def test_a_process_with_the_same_identity_fences_the_first(workload: tuple[RewindSettings, Path, int], tmp_path: Path) -> None:
    """Scenario: a zombie: another process starts as the same instance.
    We expect the first to stop with InstanceFencedError, the oracle's rows, nothing twice."""
    settings, oracle_path, total = workload
    view, group, bootstrap = "customer-summary", f"{settings.orders_topic}-batch", settings.bootstrap()
    first = RunningEngine(settings, view, tmp_path / "first", group=group, instance_id="same")
    wait_until(lambda: first.running() and committed_total(bootstrap, group, settings.orders_topic) > 0, timeout_s=60, what="a first checkpoint")
    second = RunningEngine(settings, view, tmp_path / "second", group=group, instance_id="same")
    wait_until(first.finished, timeout_s=90, what="the first instance to be fenced")
    with pytest.raises(InstanceFencedError, match="fenced"):
        first.stop()
    wait_until(lambda: second.running() and committed_total(bootstrap, group, settings.orders_topic) == total, timeout_s=120, what="every record committed")
    _wait_for_oracle(settings, oracle_path, view)
    second.stop()
    assert _published_twice(settings, view) == []
