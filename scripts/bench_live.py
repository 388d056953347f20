"""Benchmark (issue: live projections), in one run on one topic of N events:

1. raw consume+decode events/s (the ceiling);
2. `order-status` exactly-once events/s (the Quix adapter); 2b. the same view on the batch
   engine (:mod:`pipelines.batch.engine`), exactly-once;
3. `order-status` at-least-once events/s;
4. a plain Quix Streams application written the obvious way (State.get/set of a dict per
   order, default settings, at-least-once) doing a simpler fold; 4b. the same with our
   fold (``order_step``) under our guarantee (exactly-once): the fair comparison;
5. the Quix floor: the same exactly-once application settings as ours with no decoding and
   no fold at all, just one state read, one state write and one produce per event (what
   any stateful exactly-once Quix pipeline pays before doing its own work);
and peak memory after each step, then the ratios to the ceiling. ``--instances 2`` also
runs two `order-status` processes in one consumer group (scale-out on the same cores).

    .venv/bin/python scripts/bench_live.py --events 1000000
    .venv/bin/python scripts/bench_live.py --events 200000 --view customer-summary   # a re-keyed view: steps 1, 2, 2b
"""

from __future__ import annotations

import logging
import multiprocessing
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import typer
from quixstreams import Application, State

from pipelines.live import build_pipeline, run_pipeline
from pipelines.live.application import ROCKSDB_OPTIONS
from pipelines.projections import VIEW_NAMES, OrderFoldResult, order_step
from pipelines.settings import RewindSettings
from schemas import CodecError, EventCodec
from scripts.bench_common import make_topic, peak_rss_mb, raw_consume_decode

IDLE_S = 5.0


def run_ours(settings: RewindSettings, guarantee: Literal["exactly-once", "at-least-once"], state_dir: Path, view: str = "order-status") -> float:
    """Run the real ``view`` pipeline (the Quix adapter) until idle; events/s between its first and last event."""
    pipeline = build_pipeline(settings, view, group_id=f"bench-{uuid.uuid4().hex[:8]}", state_dir=state_dir,
                              guarantee=guarantee, progress_interval_s=30)
    stats = run_pipeline(pipeline, idle_timeout_s=IDLE_S)
    return stats.events_per_s()


def run_batch_engine(settings: RewindSettings, state_dir: Path, view: str = "order-status") -> float:
    """Run ``view`` on the batch engine until idle; events/s between its first and last batch."""
    import threading

    from pipelines.batch.engine import BatchEngine

    engine = BatchEngine(settings, view, state_dir=state_dir, instance_id="bench", group_id=f"bench-batch-{uuid.uuid4().hex[:8]}",
                         progress_interval_s=30)
    return engine.run(threading.Event(), idle_timeout_s=IDLE_S).events_per_s()


class _EventClock:
    """Counts events and keeps the times of the first and the last, for an events/s figure."""

    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None

    def tick(self, value: object) -> object:
        """Record one event; returns ``value`` (usable as a Quix apply step)."""
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += 1
        return value

    def rate(self) -> float:
        """Events per second between the first and the last event (0 if there is no span)."""
        if self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return self.count / (self.last - self.first)


def run_plain_quix(settings: RewindSettings, state_dir: Path) -> float:
    """The obvious Quix Streams app: decode, State.get/set a dict per order, to_topic; Quix defaults."""
    codec = EventCodec()
    app = Application(broker_address=settings.bootstrap(), consumer_group=f"bench-plain-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", state_dir=str(state_dir), loglevel="WARNING")
    source = app.topic(settings.orders_topic, value_deserializer="bytes")
    out = app.topic(f"{settings.orders_topic}.plain-out")
    clock = _EventClock()

    def fold(value: bytes, state: State[str, Any]) -> dict[str, Any] | None:
        try:
            event = codec.decode(value)
        except CodecError:
            return None
        env = event["envelope"]
        row = state.get("order") or {"orderId": env["orderId"], "lastSeq": 0}
        if env["seq"] <= row["lastSeq"]:
            return None
        row["lastSeq"] = env["seq"]
        row["status"] = env["eventType"]
        row[env["eventType"]] = env["occurredAt"]
        if env["eventType"] == "OrderPlaced":
            row.update(customerId=event["customerId"], totalMinor=event["total"]["amountMinor"], currency=event["total"]["currency"])
        state.set("order", row)
        return row

    sdf = app.dataframe(source).apply(clock.tick).apply(fold, stateful=True).filter(lambda row: row is not None)
    sdf.to_topic(out)
    app.run(timeout=IDLE_S, collect=False)  # collecting outputs would grow memory per event
    return clock.rate()


def run_plain_quix_same_fold(settings: RewindSettings, state_dir: Path) -> float:
    """The obvious Quix Streams app doing *our* fold under *our* guarantee: exactly-once, decode with the
    codec, ``order_step`` on a dict kept with State.get/set per order, duplicates skipped, the new row
    produced to a topic; Quix defaults otherwise. What a user of plain Quix would write for order-status."""
    codec = EventCodec()
    app = Application(broker_address=settings.bootstrap(), consumer_group=f"bench-plain-eos-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", state_dir=str(state_dir), loglevel="WARNING",
                      processing_guarantee="exactly-once")
    source = app.topic(settings.orders_topic, value_deserializer="bytes")
    out = app.topic(f"{settings.orders_topic}.plain-eos-out")
    clock = _EventClock()

    def fold(value: bytes, state: State[str, Any]) -> dict[str, Any] | None:
        try:
            event = codec.decode(value)
        except CodecError:
            return None
        after = order_step(state.get("order"), event)
        if isinstance(after, OrderFoldResult):
            return None
        state.set("order", after)
        return after

    sdf = app.dataframe(source).apply(clock.tick).apply(fold, stateful=True).filter(lambda row: row is not None)
    sdf.to_topic(out)
    app.run(timeout=IDLE_S, collect=False)
    return clock.rate()


def run_quix_floor(settings: RewindSettings, state_dir: Path) -> float:
    """Quix with our exactly-once settings doing no work of its own: get/set bytes state, produce the value."""
    app = Application(broker_address=settings.bootstrap(), consumer_group=f"bench-floor-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", state_dir=str(state_dir), loglevel="WARNING",
                      processing_guarantee="exactly-once", rocksdb_options=ROCKSDB_OPTIONS,
                      consumer_extra_config={"fetch.max.bytes": 8 * 1024 * 1024}, producer_extra_config={"linger.ms": 20})
    source = app.topic(settings.orders_topic, value_deserializer="bytes", key_deserializer="bytes")
    out = app.topic(f"{settings.orders_topic}.floor-out", value_serializer="bytes", key_serializer="bytes")
    clock = _EventClock()

    def touch(value: bytes, state: State[Any, Any]) -> bytes:
        clock.tick(value)
        state.get_bytes(b"o")
        state.set_bytes(b"o", value)
        return value

    app.dataframe(source).apply(touch, stateful=True).to_topic(out)
    app.run(timeout=IDLE_S, collect=False)
    return clock.rate()


def _instance(settings: RewindSettings, group: str, state_dir: Path, results: multiprocessing.Queue[tuple[int, float, float]]) -> None:
    pipeline = build_pipeline(settings, "order-status", group_id=group, state_dir=state_dir, guarantee="exactly-once", progress_interval_s=60)
    stats = run_pipeline(pipeline, idle_timeout_s=IDLE_S + 3)  # longer: the first member idles while the group rebalances
    results.put((stats.events_in, stats.first_event_at or 0.0, stats.last_event_at or 0.0))


def run_scaled_out(settings: RewindSettings, instances: int, state_dir: Path) -> float:
    """``instances`` order-status processes in one group; events/s from the first event any saw to the last."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    group = f"bench-scale-{uuid.uuid4().hex[:8]}"
    procs = [ctx.Process(target=_instance, args=(settings, group, state_dir / str(i), results)) for i in range(instances)]
    for proc in procs:
        proc.start()
    got = [results.get() for _ in procs]  # CLOCK_MONOTONIC is system-wide, so the times compare across processes
    for proc in procs:
        proc.join()
    first, last = min(g[1] for g in got if g[0]), max(g[2] for g in got)
    return sum(g[0] for g in got) / (last - first)


def main(
    events: int = typer.Option(1_000_000, min=1000, help="Approximate number of events."),
    instances: int = typer.Option(1, min=1, max=4, help="Also run this many order-status processes in one group (when > 1)."),
    quick: bool = typer.Option(False, help="Only steps 1, 2 and 2b (the ceiling, the Quix adapter and the batch engine)."),
    view: str = typer.Option("order-status", help="Steps 2 and 2b on this view (a re-keyed one goes through its repartition topic); "
                                                  "any other than order-status implies --quick."),
) -> None:
    """Run the measurements on one topic and print rates, ratios and memory."""
    logging.basicConfig(level=logging.WARNING)
    if view not in VIEW_NAMES:
        raise typer.BadParameter(f"--view {view!r}: one of {', '.join(VIEW_NAMES)}")
    quick = quick or view != "order-status"
    topic, workload = make_topic(events=events)
    del workload  # memory of the later steps should be the pipeline's, not the generator's
    settings = topic.settings
    typer.echo(f"topic {settings.orders_topic}: {topic.records:,} records (produced at {topic.records / topic.produce_s:,.0f}/s)")
    ceiling = raw_consume_decode(settings, expected=topic.records)
    typer.echo(f"1. raw consume+decode:              {ceiling:,.0f} events/s   peak RSS {peak_rss_mb():,.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        eos = run_ours(settings, "exactly-once", Path(tmp) / "eos", view)
        typer.echo(f"2. {view} exactly-once (Quix adapter): {eos:,.0f} events/s   peak RSS {peak_rss_mb():,.0f} MiB")
        batch = run_batch_engine(settings, Path(tmp) / "batch", view)
        typer.echo(f"2b. batch engine exactly-once:      {batch:,.0f} events/s   peak RSS {peak_rss_mb():,.0f} MiB")
        typer.echo(f"batch engine: {batch / ceiling:.2f}x raw consume+decode (aim >= 0.4), {batch / eos:.2f}x the Quix adapter (aim >= 3)")
        if quick:
            return
        alo = run_ours(settings, "at-least-once", Path(tmp) / "alo")
        typer.echo(f"3. order-status at-least-once:      {alo:,.0f} events/s   peak RSS {peak_rss_mb():,.0f} MiB")
        plain = run_plain_quix(settings, Path(tmp) / "plain")
        typer.echo(f"4. plain Quix Streams (defaults):   {plain:,.0f} events/s   peak RSS {peak_rss_mb():,.0f} MiB")
        plain_eos = run_plain_quix_same_fold(settings, Path(tmp) / "plain-eos")
        typer.echo(f"4b. plain Quix, our fold, EOS:      {plain_eos:,.0f} events/s   peak RSS {peak_rss_mb():,.0f} MiB")
        floor = run_quix_floor(settings, Path(tmp) / "floor")
        typer.echo(f"5. Quix floor (EOS, no work):       {floor:,.0f} events/s   peak RSS {peak_rss_mb():,.0f} MiB")
        if instances > 1:
            scaled = run_scaled_out(settings, instances, Path(tmp) / "scaled")
            typer.echo(f"6. order-status EOS x{instances} processes:    {scaled:,.0f} events/s (all processes together)")
    typer.echo(f"ratios to the ceiling: exactly-once {eos / ceiling:.2f}, at-least-once {alo / ceiling:.2f}, plain Quix {plain / ceiling:.2f}, "
               f"Quix floor {floor / ceiling:.2f}")
    typer.echo(f"order-status exactly-once vs plain Quix: {eos / plain:.2f}x (at-least-once, a simpler fold)")
    typer.echo(f"order-status exactly-once vs plain Quix doing the same fold exactly-once: {eos / plain_eos:.2f}x (aim: >= 1.1)")


if __name__ == "__main__":
    typer.run(main)
