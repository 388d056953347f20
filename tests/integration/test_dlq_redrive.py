"""Per-order parking and `rewind dlq redrive`, end to end on the real broker (issue 15, point 3).

A realistic, fixable poison: a producer upgraded before the pipelines writes some OrderShipped events
as v2, a schema the pipelines' build does not know (tests/schema_builds.py). The batch engine parks
those orders; the fix is deploying the newer build (the same engines restarted with its decoder),
then `rewind dlq redrive`, run twice. The expected views are the workload oracle's, which knows the
events and nothing of the fold.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipelines.dlq import PARKED_BEHIND_HEADER, REDRIVE_OF_HEADER, headers_to_dict
from pipelines.kernel import PARKED
from pipelines.projections import get_projection
from pipelines.settings import RewindSettings
from pipelines.topics import admin_client, view_topic
from schemas.codec import EventCodec
from schemas.fast_decode import FastDecoder
from scripts.workload import Oracle, WorkloadConfig, generate, produce_workload, write_oracle
from scripts.workload.expected_views import expected_order_status, expected_revenue_windows, mismatched_keys
from state.replay.fold import OrderFolder
from tests.integration.support import PipelineProcess, committed_total, for_engine, isolated_settings, latest_rows, read_topic, wait_until
from tests.integration.test_batch_engine import RunningEngine
from tests.schema_builds import as_newer, newer_codec, newer_decoder

pytestmark = pytest.mark.integration

VIEWS = ("order-status", "revenue-hourly")
POISONED = 3


def _poison(records: list[Any], newer: EventCodec) -> tuple[list[Any], dict[str, int]]:
    """``records`` with the OrderShipped of ``POISONED`` orders that have a later event rewritten by the newer
    build; returns them and each poisoned order's OrderShipped seq."""
    codec = EventCodec()
    last_seq: dict[str, int] = {}
    for r in records:
        last_seq[r.order_id] = max(last_seq.get(r.order_id, 0), r.seq or 0)
    chosen: dict[str, int] = {}
    out = []
    for r in records:
        if r.event_type == "OrderShipped" and len(chosen) < POISONED and r.order_id not in chosen and last_seq[r.order_id] > r.seq:
            chosen[r.order_id] = r.seq
            r = r._replace(value=newer.encode(as_newer(dict(codec.decode(r.value)))))
        out.append(r)
    assert len(chosen) == POISONED
    return out, chosen


def _redrive(settings: RewindSettings, *selection: str) -> str:
    """`rewind dlq redrive` (default: ``--reason UnknownSchemaError``), as an operator runs it (a process of its own)."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap(), "REWIND_ORDERS_TOPIC": settings.orders_topic,
           "REWIND_DLQ_TOPIC": settings.dlq_topic}
    done = subprocess.run([sys.executable, "-m", "scripts.cli", "dlq", "redrive", *(selection or ("--reason", "UnknownSchemaError"))],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _start(settings: RewindSettings, tmp_path: Path, **options: Any) -> dict[str, RunningEngine]:
    return {view: RunningEngine(settings, view, tmp_path / view, group=f"{settings.orders_topic}-{view}", **options) for view in VIEWS}


def _caught_up(settings: RewindSettings, total: int) -> None:
    for view in VIEWS:
        group = f"{settings.orders_topic}-{view}"
        wait_until(lambda: committed_total(settings.bootstrap(), group, settings.orders_topic) == total,  # noqa: B023  # called at once
                   timeout_s=60, what=f"{view} to commit every record")


def test_parked_orders_redriven_after_the_fix_equal_the_oracle_and_nothing_applies_twice(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    """Scenario: 3 orders' OrderShipped written by a newer build, folded by this build; a redrive before the fix; then
    the newer build deployed and redrive run twice. We expect, before the fix: one UnknownSchemaError per poisoned order
    and its later events Parked behind it (no SequenceGap), its row stopped before OrderShipped, and the early redrive's
    copies dead-lettered again (the copy of the poison with its reason, the rest Parked behind that copy); after:
    order-status and revenue-hourly equal to the oracle (the redriven deliveries' windows not late), each good event
    applied once, no view record published twice; a replay fold over the same log with the same builds giving the same
    letters and rows (and the Quix engine the same letters as the batch engine, up to the fix); a redrive of an order
    with no letters saying so, exit 0; one to a missing orders topic refused in one line, the topic not created."""
    settings = isolated_settings(kafka_bootstrap, unique_name, tmp_path, commit_interval_s=0.3)
    generated = generate(WorkloadConfig(seed=21, orders=120, days=2, late_rate=0.0, skew_rate=0.0))
    newer = newer_codec(tmp_path)
    records, poisoned = _poison(list(generated.records), newer)
    produce_workload(settings, records, progress=False)
    oracle_path = tmp_path / "oracle.sqlite"
    write_oracle(generated, oracle_path, topic=settings.orders_topic)
    total = len(records)
    bootstrap = settings.bootstrap()

    # Step 1: this build. Each poisoned order: its own letter, then Parked behind it; the row stops before OrderShipped.
    # The Quix engine (a `rewind run` process, this build, its own DLQ) folds the same log alongside, up to step 2's copies.
    quix_settings = for_engine(settings, "quix")
    quix_group = f"{settings.orders_topic}-quix"
    quix = PipelineProcess.start(quix_settings, "order-status", group=quix_group, state_dir=tmp_path / "quix", log_dir=tmp_path)
    engines = _start(settings, tmp_path)
    _caught_up(settings, total)
    letters = [(m.key().decode(), headers_to_dict(m.headers())) for m in read_topic(bootstrap, settings.dlq_topic)]
    redriven = sum(1 for r in records if r.order_id in poisoned and r.seq >= poisoned[r.order_id])
    for view in VIEWS:
        mine = [(key, h) for key, h in letters if h["rewind.pipeline"] == view]
        assert {key for key, _ in mine} == set(poisoned)
        for order_id, shipped_seq in poisoned.items():
            of_order = [h for key, h in mine if key == order_id]
            first = of_order[0]
            assert first["rewind.reason.class"] == "UnknownSchemaError" and PARKED_BEHIND_HEADER not in first
            where = f"{settings.orders_topic}/{first['rewind.source.partition']}@{first['rewind.source.offset']}"
            later = [r.seq for r in records if r.order_id == order_id and r.seq > shipped_seq]
            assert [(h["rewind.reason.class"], h[PARKED_BEHIND_HEADER]) for h in of_order[1:]] == [(PARKED, where)] * len(later)
    # Step 2: a dry run appends nothing; a redrive before the fix: the copies are refused again, with their own
    # letters; the orders stay parked.
    assert f"would redrive {redriven} records of {POISONED} orders" in _redrive(settings, "--reason", "UnknownSchemaError", "--dry-run")
    assert len(read_topic(bootstrap, settings.orders_topic)) == total
    assert f"redrove {redriven} records of {POISONED} orders" in _redrive(settings)
    _caught_up(settings, total + redriven)
    before = {view: engine.stop() for view, engine in engines.items()}
    rows = latest_rows(bootstrap, view_topic("order-status", prefix=settings.view_topic_prefix))
    assert {o: rows[o]["row"]["lastSeq"] for o in poisoned} == {o: seq - 1 for o, seq in poisoned.items()}
    again = [(key, h) for key, h in ((m.key().decode(), headers_to_dict(m.headers())) for m in read_topic(bootstrap, settings.dlq_topic))
             if REDRIVE_OF_HEADER in h and h["rewind.pipeline"] == "order-status"]
    for order_id in poisoned:
        of_order = [h for key, h in again if key == order_id]
        copy = f"{settings.orders_topic}/{of_order[0]['rewind.source.partition']}@{of_order[0]['rewind.source.offset']}"
        assert [h["rewind.reason.class"] for h in of_order] == ["UnknownSchemaError"] + [PARKED] * (len(of_order) - 1)
        assert all(h[PARKED_BEHIND_HEADER] == copy for h in of_order[1:])
    first_read = {(m.partition(), m.offset()) for m in read_topic(bootstrap, settings.orders_topic)}
    wait_until(lambda: committed_total(bootstrap, quix_group, settings.orders_topic) == total + redriven, timeout_s=60,
               what="the Quix pipeline to commit every record")
    quix.terminate()

    def positions(dlq: str, pipeline: str) -> list[tuple[Any, ...]]:
        return sorted((m.key(), h["rewind.source.partition"], h["rewind.source.offset"], h["rewind.reason.class"], h.get(PARKED_BEHIND_HEADER),
                       h.get(REDRIVE_OF_HEADER)) for m in read_topic(bootstrap, dlq)
                      if (h := headers_to_dict(m.headers()))["rewind.pipeline"] == pipeline)

    assert positions(quix_settings.dlq_topic, "order-status") == positions(settings.dlq_topic, "order-status")  # the engines agree

    # Step 3: the newer build deployed (same groups, same state), then the redrive, twice.
    fixed = newer_decoder(tmp_path)
    engines = _start(settings, tmp_path, decode=fixed)
    assert f"redrove {redriven} records of {POISONED} orders" in _redrive(settings)  # one per original, not per copy
    _redrive(settings)
    _caught_up(settings, total + 3 * redriven)
    with Oracle.open(oracle_path) as oracle:
        expected_rows = expected_order_status(oracle)
        windows = {k: v for k, v in expected_revenue_windows(oracle).items() if v}
        good_events = sum(1 for e in oracle.events() if e.poison_kind is None)
    status_topic = view_topic("order-status", prefix=settings.view_topic_prefix)
    revenue_topic = view_topic("revenue-hourly", prefix=settings.view_topic_prefix)
    wait_until(lambda: not mismatched_keys(latest_rows(bootstrap, status_topic), expected_rows), timeout_s=30,
               what="order-status to equal the oracle")
    wait_until(lambda: {k: v["row"]["revenueMinor"] for k, v in latest_rows(bootstrap, revenue_topic).items()
                        if v["row"]["revenueMinor"]} == windows, timeout_s=30, what="revenue-hourly to equal the oracle")
    after = {view: engine.stop() for view, engine in engines.items()}
    for view in VIEWS:
        assert before[view].applied + after[view].applied == good_events, view  # each good event applied once
        assert (after[view].applied, after[view].duplicates, after[view].dead_lettered) == (redriven, redriven, 0), view
        assert before[view].late == after[view].late == 0, view
        published: Counter[tuple[Any, ...]] = Counter()
        for m in read_topic(bootstrap, view_topic(view, prefix=settings.view_topic_prefix)):
            change = orjson.loads(m.value())["change"]
            published[(m.key(), change["orderId"], change["seq"])] += 1
        assert [k for k, n in published.items() if n > 1] == [], view

    # Step 4: the replay fold over the same log, with the build each record was first read by, agrees record for record.
    log = read_topic(bootstrap, settings.orders_topic)
    assert sum(1 for m in log if headers_to_dict(m.headers()).get(REDRIVE_OF_HEADER)) == 3 * redriven
    replay_letters: list[Any] = []
    folder = OrderFolder(get_projection("order-status"), topic=settings.orders_topic, decode=FastDecoder().decode,
                         on_dead_letter=replay_letters.append, partition_count=settings.orders_partitions)
    folder.fold([m for m in log if (m.partition(), m.offset()) in first_read], [])
    folder._decode = fixed  # the same replay, restarted on the newer build where live was
    folder.fold([m for m in log if (m.partition(), m.offset()) not in first_read], [])
    live = sorted((key, h["rewind.source.partition"], h["rewind.source.offset"], h["rewind.reason.class"], h.get(PARKED_BEHIND_HEADER))
                  for key, h in ((m.key().decode(), headers_to_dict(m.headers())) for m in read_topic(bootstrap, settings.dlq_topic))
                  if h["rewind.pipeline"] == "order-status")
    assert sorted((d.key.decode(), str(d.source_partition), str(d.source_offset), d.reason_class, d.parked_behind)
                  for d in replay_letters) == live
    assert folder.counters.applied == good_events
    for order_id in poisoned:
        p = next(r for r in records if r.order_id == order_id)
        assert folder.rows.get(order_id, next(m.partition() for m in log if m.key() == p.key)) == \
            latest_rows(bootstrap, status_topic)[order_id]["row"]
    assert "nothing to redrive for order no-such-order" in _redrive(settings, "--order", "no-such-order")
    missing = f"{unique_name}.no-such-orders"
    refused = subprocess.run([sys.executable, "-m", "scripts.cli", "dlq", "redrive", "--order", "o", "--orders-topic", missing,
                              "--dlq-topic", settings.dlq_topic], env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
        f"error: orders topic {missing!r} does not exist on {bootstrap} (REWIND_ORDERS_TOPIC / --orders-topic)"]
    assert missing not in admin_client(bootstrap).list_topics(timeout=10).topics  # looking it up did not create it
