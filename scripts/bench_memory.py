"""Benchmark (issue 14, point 5): peak RSS of `rewind run VIEW` over a small and a large backlog.

For each size, in one session: a fresh topic of that many events, then `rewind run VIEW
--engine ENGINE --idle-timeout-s 10` as a child process that folds the whole backlog and
stops. The child's peak resident set is the kernel's high-water mark (``VmHWM`` in
``/proc/PID/status``, reset at exec), read until it exits. Not ``os.wait4``'s rusage: that
counts the forked child before its exec, i.e. this process with the whole generated workload
in memory (it made a 2M-event run look like 1.4 GB). Bounded memory means the peak stays flat
as the backlog grows.

    .venv/bin/python -m scripts.bench_memory --sizes 250000,2000000 --engines batch,quix
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import typer

from scripts.bench_common import make_topic

IDLE_S = 10.0


def run_child(env: dict[str, str], view: str, engine: str, state_dir: Path) -> tuple[float, float, str]:
    """(peak RSS MiB, wall seconds, the run's summary line) of one ``rewind run`` over the whole topic."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "run", view, "--engine", engine, "--state-dir", str(state_dir),
         "--idle-timeout-s", str(IDLE_S), "--progress-interval-s", "30"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert child.stdout is not None
    peak_kb = [0]

    def watch() -> None:  # the high-water mark only grows: the last reading before the exit is the peak
        status = Path(f"/proc/{child.pid}/status")
        while child.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kb[0] = max(peak_kb[0], int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = child.stdout.read()
    child.wait()
    watcher.join(timeout=5)
    if child.returncode != 0:
        raise SystemExit(f"rewind run {view} --engine {engine} exited {child.returncode}: {output[-2000:]}")
    summary = next((line for line in reversed(output.splitlines()) if line.strip()), "")
    return peak_kb[0] / 1024, time.perf_counter() - started - IDLE_S, summary


def main(
    sizes: str = typer.Option("250000,2000000", help="Comma-separated backlog sizes (events)."),
    engines: str = typer.Option("batch", help="Comma-separated engines: batch, quix."),
    view: str = typer.Option("order-status", help="The view to run."),
) -> None:
    counts = [int(size) for size in sizes.split(",")]
    chosen = [engine.strip() for engine in engines.split(",")]
    rows: list[tuple[int, str, float, float]] = []
    for count in counts:
        topic, _ = make_topic(events=count, prefix="bench-mem")
        settings = topic.settings
        typer.echo(f"topic {settings.orders_topic}: {topic.records:,} records")
        for engine in chosen:
            env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap(), "REWIND_ORDERS_TOPIC": settings.orders_topic,
                   "REWIND_DLQ_TOPIC": settings.dlq_topic, "REWIND_VIEW_TOPIC_PREFIX": f"{settings.view_topic_prefix}{engine}."}
            with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
                env["REWIND_BATCH_SNAPSHOT_DIR"] = str(Path(tmp) / "snapshots")
                peak, seconds, summary = run_child(env, view, engine, Path(tmp) / "state")
            rows.append((topic.records, engine, peak, seconds))
            typer.echo(f"  {engine:5} {view}: peak RSS {peak:,.0f} MiB, {topic.records / seconds:,.0f} events/s  ({summary})")
    typer.echo("\nevents      engine  peak RSS MiB")
    for records, engine, peak, _ in rows:
        typer.echo(f"{records:>10,}  {engine:6}  {peak:>10,.0f}")
    for engine in chosen:
        peaks = [peak for _, e, peak, _ in rows if e == engine]
        if len(peaks) > 1:
            typer.echo(f"{engine}: largest/smallest backlog peak RSS = {peaks[-1] / peaks[0]:.2f}x")


if __name__ == "__main__":
    typer.run(main)
