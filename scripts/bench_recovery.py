"""Benchmark (issue 14, point 3): how long a pipeline takes to process again after losing its state directory.

In one session, on one topic of N events (default 1M), for one view (default order-status):

1. the batch engine folds the topic (snapshots every ``--snapshot-interval-s``) and stops;
2. its state directory is deleted; it restarts from its newest snapshots plus the log tail;
3. state directory *and* snapshots deleted: it restarts by refolding from the log start (what
   the engine did before snapshots, and the worst case);
4. the Quix adapter folds the same topic, its state directory is deleted, and it restarts by
   restoring its changelog topics (Quix's own recovery).

"Processes again" is measured the same way for every row: the last records of the workload
are held back, a few hundred per row; the restarted process is started, that row's records
are produced at once, and the figure is the time from the process start to the first new
record in the view topic (read uncommitted, past the end offsets taken before the start).
Interpreter start-up, joining the group, restoring and refolding are all inside it.

    .venv/bin/python -m scripts.bench_recovery --events 1000000
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import typer

from pipelines.settings import RewindSettings
from pipelines.topics import view_topic
from scripts.restart_times import end_offsets, wait_for_record
from scripts.workload import Emitted, WorkloadConfig, generate, produce_workload

#: Records held back per measured restart (the probe that must come out the other end).
PROBE_RECORDS = 300
IDLE_S = 10.0


def _command(view: str, engine: str, state_dir: Path, *, idle_timeout_s: float) -> list[str]:
    return [sys.executable, "-m", "scripts.cli", "run", view, "--engine", engine, "--state-dir", str(state_dir),
            "--idle-timeout-s", str(idle_timeout_s), "--progress-interval-s", "30"]


def fold_all(env: dict[str, str], view: str, engine: str, state_dir: Path) -> float:
    """Run ``engine`` over the whole topic until it idles; its wall seconds (idle time excluded)."""
    started = time.perf_counter()
    subprocess.run(_command(view, engine, state_dir, idle_timeout_s=IDLE_S), env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started - IDLE_S


def time_to_process(settings: RewindSettings, env: dict[str, str], view: str, engine: str, state_dir: Path,
                    probe: Sequence[Emitted]) -> tuple[float, list[str]]:
    """Start ``engine``, produce ``probe``, and return the seconds from the start to its first new view record,
    with the lines it logged about snapshots and refolds; then stop it with SIGTERM."""
    topic = view_topic(view, prefix=env["REWIND_VIEW_TOPIC_PREFIX"])
    after = end_offsets(settings.bootstrap(), [topic])
    started = time.monotonic()
    child = subprocess.Popen(_command(view, engine, state_dir, idle_timeout_s=0), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert child.stderr is not None
        lines.extend(line.rstrip() for line in child.stderr)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        produce_workload(settings, probe, progress=False)
        arrived = wait_for_record(settings.bootstrap(), [topic], after=after, timeout_s=1800)
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=120)
        reader.join(timeout=10)
    return arrived - started, [line for line in lines if "refolded" in line or "snapshot" in line]


def main(
    events: int = typer.Option(1_000_000, min=2000, help="Approximate number of events."),
    view: str = typer.Option("order-status", help="The view to run."),
    snapshot_interval_s: float = typer.Option(20.0, min=0.0, help="The batch engine's snapshot interval while it folds (step 1)."),
    quix: bool = typer.Option(True, "--quix/--no-quix", help="Also measure the Quix adapter's changelog recovery (step 4)."),
) -> None:
    name = f"bench-recovery-{uuid.uuid4().hex[:8]}"
    settings = RewindSettings(orders_topic=f"{name}.orders", dlq_topic=f"{name}.orders.dlq")
    records = generate(WorkloadConfig(seed=1, orders=max(1, int(events / 4.6)), days=7, poison_rate=0.0)).records
    body, probes = records[: -3 * PROBE_RECORDS], records[-3 * PROBE_RECORDS:]
    produce_workload(settings, body, progress=False)
    typer.echo(f"topic {settings.orders_topic}: {len(body):,} records, then {PROBE_RECORDS} more per measured restart")
    base_env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap(), "REWIND_ORDERS_TOPIC": settings.orders_topic,
                "REWIND_DLQ_TOPIC": settings.dlq_topic}
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        root = Path(tmp)
        env = {**base_env, "REWIND_VIEW_TOPIC_PREFIX": f"{name}.batch.",
               "REWIND_BATCH_SNAPSHOT_DIR": str(root / "snapshots"), "REWIND_BATCH_SNAPSHOT_INTERVAL_S": str(snapshot_interval_s)}
        state = root / "batch-state"
        seconds = fold_all(env, view, "batch", state)
        typer.echo(f"1. batch engine folded {len(body):,} events in {seconds:,.1f}s ({len(body) / seconds:,.0f}/s)")
        shutil.rmtree(state)
        ready_s, notes = time_to_process(settings, env, view, "batch", state, probes[:PROBE_RECORDS])
        typer.echo(f"2. batch, state dir lost, from snapshots + log tail: processes again after {ready_s:,.1f}s")
        for note in notes[-3:]:
            typer.echo(f"     {note}")
        shutil.rmtree(state)
        shutil.rmtree(root / "snapshots")
        ready_s, notes = time_to_process(settings, env, view, "batch", state, probes[PROBE_RECORDS: 2 * PROBE_RECORDS])
        typer.echo(f"3. batch, state dir and snapshots lost, refold from the log start: processes again after {ready_s:,.1f}s")
        for note in notes[-3:]:
            typer.echo(f"     {note}")
        if quix:
            env = {**base_env, "REWIND_VIEW_TOPIC_PREFIX": f"{name}.quix."}
            state = root / "quix-state"
            seconds = fold_all(env, view, "quix", state)
            typer.echo(f"4. Quix adapter folded {len(body) + 2 * PROBE_RECORDS:,} events in {seconds:,.1f}s")
            shutil.rmtree(state)
            ready_s, _ = time_to_process(settings, env, view, "quix", state, probes[2 * PROBE_RECORDS:])
            typer.echo(f"   Quix, state dir lost, restored from its changelog topic: processes again after {ready_s:,.1f}s")


if __name__ == "__main__":
    typer.run(main)
