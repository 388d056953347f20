"""A re-keyed view makes progress under a crash loop (issue 12, point 2), checked against the oracle.

customer-summary runs two Quix steps: step 1 (per orderId) forwards changes through the
repartition topic, step 2 (per customer) writes the view. Step 2's records share the consumer's
one prefetch queue with the orders backlog; while that queue was unbounded they waited behind the
whole backlog, so a pipeline killed every ~20 s while catching up committed orders offsets run
after run and no view record until its last run. Each run must now publish view records.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from pipelines.readback import read_to_end
from pipelines.topics import view_topic
from scripts.workload import Oracle, WorkloadConfig, generate, produce_workload, write_oracle
from scripts.workload.expected_views import expected_customers, mismatched_keys
from tests.integration.support import PipelineProcess, committed_total, group_caught_up, isolated_settings, latest_rows, wait_until

pytestmark = pytest.mark.integration

VIEW = "customer-summary"
#: Kills per engine: the batch engine folds this log several times faster, so two kills are what
#: land while it still catches up (a run must last two checkpoints to publish: stage 2 reads
#: the repartition records stage 1 committed in the run's first).
KILLS = {"quix": 3, "batch": 2}
#: Orders per engine: the batch engine folds the 200k events of 44,000 orders in about 5 s here, so
#: it gets three times the log (a run killed at its earliest still committed 110-144k events).
ORDERS = {"quix": 44_000, "batch": 132_000}
#: A batch run publishes its first view records about 3 s after its first orders commit: stage 2's
#: records queue behind the orders records prefetched before them (16 MiB, about 2 s of work), then
#: wait for the next checkpoint. A run killed 2.5 s after its first commit published none once.
MIN_RUN_AFTER_PROGRESS_S_BY_ENGINE = {"quix": 3.0, "batch": 5.0}
#: Each run is killed this long after it started, and no sooner than RUN_AFTER_PROGRESS_S after
#: its first orders commit (on this shared 2-core machine a start alone can take 15 s)...
RUN_S = 20.0
RUN_AFTER_PROGRESS_S = 8.0
#: ... or, on a fast machine, once it has committed this share of the log per kill so far (so that
#: the loop ends before the pipeline has caught up), but never before MIN_RUN_AFTER_PROGRESS_S_BY_ENGINE.
SHARE_PER_KILL = 0.2


def _run_its_share(bootstrap: str, proc: PipelineProcess, *, group: str, topic: str, share: float, min_run_s: float) -> None:
    """Return once ``proc`` has run its share of the crash loop (see RUN_S and SHARE_PER_KILL); fail if it exits."""
    started = time.monotonic()
    before = committed_total(bootstrap, group, topic)
    wait_until(lambda: not proc.alive() or committed_total(bootstrap, group, topic) > before,
               timeout_s=120, what="the run to commit orders offsets", interval_s=0.3)
    progressing = time.monotonic()

    def done() -> bool:
        now = time.monotonic()
        if not proc.alive():
            return True
        if now - progressing < min_run_s:
            return False
        if now - started >= RUN_S and now - progressing >= RUN_AFTER_PROGRESS_S:
            return True
        return committed_total(bootstrap, group, topic) >= share

    wait_until(done, timeout_s=120, what="the run to have run its share", interval_s=0.3)
    assert proc.alive(), proc.output_tail()


def test_customer_summary_killed_every_20s_publishes_view_records_in_every_run(kafka_bootstrap: str, tmp_path: Path, live_engine: str) -> None:
    """Scenario: 200k+ events, customer-summary is kill -9ed about every 20 s while it catches up and restarted at once.
    We expect the committed view records to grow from each kill to the next, and the view to equal the oracle at the end."""
    name = f"t-crashloop-{uuid.uuid4().hex[:8]}"
    settings = isolated_settings(kafka_bootstrap, name, tmp_path, commit_interval_s=1.0, engine=live_engine)
    workload = generate(WorkloadConfig(seed=31, orders=ORDERS[live_engine], days=7, poison_rate=0.01))
    produce_workload(settings, workload, progress=False)
    write_oracle(workload, tmp_path / "oracle.sqlite", topic=settings.orders_topic)
    with Oracle.open(tmp_path / "oracle.sqlite") as oracle:
        expected = expected_customers(oracle)
    total = len(workload.records)
    assert total >= 200_000  # also the crash test of a big log: every kill lands mid-stream, the view must come out exact
    group = f"{settings.orders_topic}-{VIEW}"
    topic = view_topic(VIEW, prefix=settings.view_topic_prefix)

    def committed_view_records() -> int:
        return len(read_to_end(kafka_bootstrap, topic))

    published = [0]
    for kill in range(1, KILLS[live_engine] + 1):
        proc = PipelineProcess.start(settings, VIEW, group=group, state_dir=tmp_path / "state", log_dir=tmp_path / "logs")
        started = time.monotonic()
        try:
            _run_its_share(kafka_bootstrap, proc, group=group, topic=settings.orders_topic, share=kill * SHARE_PER_KILL * total,
                           min_run_s=MIN_RUN_AFTER_PROGRESS_S_BY_ENGINE[live_engine])
        finally:
            if proc.alive():
                proc.kill9()  # the crash (also when the run failed)
        published.append(committed_view_records())
        done = committed_total(kafka_bootstrap, group, settings.orders_topic)
        print(f"\nkill {kill} after {time.monotonic() - started:.0f}s: {done}/{total} orders records committed, "
              f"{published[-1]} committed view records")
        assert done < total, "caught up before the crash loop ended: make the workload bigger"
        assert published[-1] > published[-2], f"run {kill} published no view record: {published}"
    final = PipelineProcess.start(settings, VIEW, group=group, state_dir=tmp_path / "state", log_dir=tmp_path / "logs")
    try:
        wait_until(lambda: group_caught_up(kafka_bootstrap, group, settings.orders_topic) or not final.alive(),
                   timeout_s=300, what="the last run to catch up", interval_s=1)
        assert final.alive(), final.output_tail()
        wait_until(lambda: not mismatched_keys(latest_rows(kafka_bootstrap, topic), expected),
                   timeout_s=120, what=f"{VIEW} to equal the oracle", interval_s=2)
        final.terminate()
    finally:
        if final.alive():
            final.kill9()
