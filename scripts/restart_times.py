"""How long a live pipeline takes to process again after a restart (issue 12, point 1).

A `rewind run VIEW` child processes a steady trickle of orders; it is stopped (kill -9, or
SIGTERM and a clean exit) and started again at once, ``--count`` times each. The figure is
the time from starting the new process to the first record it writes to any of its output
topics (``view.<name>``, its changelogs and its repartition hop: :func:`output_topics`):
read uncommitted, from their end offsets taken when the old process was gone, so only the
new process's output counts, and transaction markers (e.g. the abort of the dead process's
open transaction) never do.

    .venv/bin/python -m scripts.restart_times --count 5
    .venv/bin/python -m scripts.restart_times --count 3 --view customer-summary

Prints one line per restart and a summary; uses the local broker (or KAFKA_BOOTSTRAP_SERVERS)
and topics of its own.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import typer
from confluent_kafka import Consumer, KafkaError, TopicPartition

from pipelines.live.supervisor import PipelineChild
from pipelines.settings import RewindSettings
from pipelines.topics import view_topic
from scripts.workload import WorkloadConfig, generate, produce_workload

__all__ = ["Trickle", "RestartTimer", "StopHow", "end_offsets", "main", "output_topics", "wait_for_record"]

StopHow = Literal["kill", "term"]
_HOWS: tuple[tuple[StopHow, str], ...] = (("kill", "kill -9"), ("term", "SIGTERM"))


class Trickle:
    """Produces a generated workload to the settings' orders topic at ``rate`` records/s, in a
    daemon thread, so that a pipeline always has new work (and, under exactly-once, an open
    transaction when it is killed). Generates ``rate * max_s`` records; stops at :meth:`stop`."""

    def __init__(self, settings: RewindSettings, *, rate: float, max_s: float, seed: int = 7) -> None:
        self._settings = settings
        self._rate = rate
        records = generate(WorkloadConfig(seed=seed, orders=max(10, int(rate * max_s / 4.6)), days=7)).records
        self._records = records
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="restart-times-trickle", daemon=True)

    def start(self) -> Trickle:
        """Start producing; returns self."""
        self._thread.start()
        return self

    def _run(self) -> None:
        slice_n = max(1, int(self._rate))  # one second of records per produce call: stop() takes effect within ~1 s
        try:
            for i in range(0, len(self._records), slice_n):
                if self._stop.is_set():
                    return
                produce_workload(self._settings, self._records[i:i + slice_n], rate=self._rate, progress=False)
        except BaseException as exc:  # reported by the caller through .error, never swallowed
            self.error = exc

    def stop(self) -> None:
        """Stop after the slice being produced and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=30)


def _view_consumer(bootstrap: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"restart-times-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "isolation.level": "read_uncommitted", "log_level": 0, "enable.partition.eof": False,
    })


def output_topics(bootstrap: str, *, view_topic_name: str, group: str) -> list[str]:
    """The topics a pipeline writes to, of those that exist: ``view_topic_name`` and the Quix
    topics of ``group`` (changelogs and the repartition hop, named ``changelog__<group>--...``
    and ``repartition__<group>--...``). Step 1 writes its changelog for every event it applies,
    so a new record on any of them means the pipeline processes again; a re-keyed view's own
    record only follows step 1's first commit (up to a commit interval later)."""
    consumer = _view_consumer(bootstrap)
    try:
        names = consumer.list_topics(timeout=10).topics
    finally:
        consumer.close()
    internal = (f"changelog__{group}--", f"repartition__{group}--")
    return sorted(t for t in names if t == view_topic_name or t.startswith(internal))


def end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """High watermark per (topic, partition) of ``topics`` (topics that do not exist are left out)."""
    consumer = _view_consumer(bootstrap)
    try:
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if metadata is None or metadata.error is not None:
                continue
            for p in metadata.partitions:
                ends[topic, p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return ends
    finally:
        consumer.close()


def wait_for_record(bootstrap: str, topics: list[str], *, after: dict[tuple[str, int], int], timeout_s: float,
                    alive: PipelineChild | None = None) -> float:
    """Wait for a data record of any of ``topics`` at or past ``after`` (per topic and partition;
    one missing from ``after`` is read from 0); returns ``time.monotonic()`` when it arrived.
    Topics are read once the first of them exists. Raises TimeoutError after ``timeout_s``,
    RuntimeError as soon as ``alive`` has exited."""
    deadline = time.monotonic() + timeout_s
    consumer = _view_consumer(bootstrap)
    what = ", ".join(topics)
    try:
        while True:
            existing = consumer.list_topics(timeout=10).topics
            partitions = [TopicPartition(t, p, after.get((t, p), 0)) for t in topics
                          if t in existing and existing[t].error is None for p in existing[t].partitions]
            if partitions:
                break
            _check(deadline, alive, what)
            time.sleep(0.1)
        consumer.assign(partitions)
        while True:
            msg = consumer.poll(0.05)
            if msg is not None and msg.error() is None:
                return time.monotonic()
            if msg is not None and msg.error().code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(f"reading {msg.topic()}: {msg.error()}")
            _check(deadline, alive, what)
    finally:
        consumer.close()


def _check(deadline: float, alive: PipelineChild | None, topic: str) -> None:
    if alive is not None and not alive.alive():
        raise RuntimeError(f"the pipeline exited ({alive.proc.returncode}) before writing to {topic}:\n{alive.log_tail(30)}")
    if time.monotonic() > deadline:
        raise TimeoutError(f"no new record on {topic}")


@dataclass
class RestartTimer:
    """Starts, stops and restarts one pipeline instance (one group, one state dir) and times
    each restart. The caller keeps new work flowing (e.g. a :class:`Trickle`)."""

    settings: RewindSettings
    view: str
    group: str
    state_dir: Path
    log_dir: Path
    #: How long the pipeline runs between a restart's first record and the next stop: long enough
    #: to open a transaction with records and offsets in it (the case that used to block a restart).
    run_s: float = 3.0
    child: PipelineChild | None = None

    def start(self, *, timeout_s: float = 120.0) -> float:
        """Start the instance; return seconds until its first new output record (see :func:`output_topics`)."""
        bootstrap = self.settings.bootstrap()
        topics = output_topics(bootstrap, view_topic_name=view_topic(self.view, prefix=self.settings.view_topic_prefix), group=self.group)
        if not topics:  # a first start: the view topic is created first, and the pipeline writes to it
            topics = [view_topic(self.view, prefix=self.settings.view_topic_prefix)]
        before = end_offsets(bootstrap, topics)
        started = time.monotonic()
        self.child = PipelineChild.start(self.settings, self.view, group=self.group, state_dir=self.state_dir,
                                         log_path=self.log_dir / f"{self.view}-{time.monotonic_ns()}.log")
        return wait_for_record(bootstrap, topics, after=before, timeout_s=timeout_s, alive=self.child) - started

    def stop(self, how: StopHow) -> None:
        """kill -9 (no chance to commit or leave), or SIGTERM and wait for the clean exit."""
        child = self.child
        assert child is not None, "not started"
        if how == "kill":
            child.proc.kill()
            child.proc.wait(timeout=30)
        else:
            child.stop(timeout_s=60)
            if child.proc.returncode != 0:
                raise RuntimeError(f"SIGTERM: the pipeline exited with {child.proc.returncode}:\n{child.log_tail(30)}")

    def restart(self, how: StopHow, *, timeout_s: float = 120.0) -> float:
        """Let it run ``run_s``, stop it ``how``, start it again at once; seconds until it processes again."""
        time.sleep(self.run_s)  # pacing, not synchronisation: the child is already processing
        self.stop(how)
        return self.start(timeout_s=timeout_s)

    def close(self) -> None:
        """Stop the instance if it runs (SIGTERM, then SIGKILL after a timeout)."""
        if self.child is not None and self.child.alive():
            self.child.stop(timeout_s=30)


def main(
    count: int = typer.Option(3, min=1, max=50, help="Restarts of each kind (kill -9 and SIGTERM)."),
    view: str = typer.Option("order-status", help="The view whose pipeline is restarted."),
    rate: float = typer.Option(300.0, min=10.0, help="Orders events per second produced while measuring."),
) -> None:
    """Measure ``count`` kill -9 restarts and ``count`` SIGTERM restarts and print the figures."""
    name = f"restart-times-{uuid.uuid4().hex[:8]}"
    base = RewindSettings()
    settings = RewindSettings(
        kafka_bootstrap_servers=base.bootstrap(), orders_topic=f"{name}.orders", dlq_topic=f"{name}.orders.dlq",
        view_topic_prefix=f"{name}.",
    )
    typer.echo(f"view {view}, topics {name}.*, {os.getloadavg()[0]:.1f} load average, {os.cpu_count()} cores")
    trickle = Trickle(settings, rate=rate, max_s=count * 2 * 30 + 120).start()
    figures: dict[StopHow, list[float]] = {"kill": [], "term": []}
    with tempfile.TemporaryDirectory(prefix="restart-times-") as tmp:
        timer = RestartTimer(settings, view, group=f"{name}-{view}", state_dir=Path(tmp) / "state", log_dir=Path(tmp) / "logs")
        try:
            typer.echo(f"first start: {timer.start():.1f} s to the first view record")  # its first output is the view's
            for i in range(count):
                for how, label in _HOWS:
                    seconds = timer.restart(how)
                    figures[how].append(seconds)
                    typer.echo(f"restart {i + 1} after {label}: {seconds:.1f} s")
        finally:
            timer.close()
            trickle.stop()
    if trickle.error is not None:
        typer.echo(f"the producer failed: {trickle.error}")
    for how, label in _HOWS:
        values = figures[how]
        typer.echo(f"{label}: median {statistics.median(values):.1f} s, max {max(values):.1f} s, all {' '.join(f'{v:.1f}' for v in values)}")
    typer.echo(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    typer.run(main)
