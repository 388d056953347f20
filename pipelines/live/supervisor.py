"""Runs `rewind run NAME` pipelines as child processes and tells when they have caught up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from pipelines.settings import RewindSettings

__all__ = [
    "PipelineChild", "terminate", "committed_offsets", "committed_total", "group_lag", "group_members_with_partitions", "default_group",
]


def default_group(view: str) -> str:
    """The consumer group `rewind run NAME` uses unless told otherwise."""
    return f"rewind-{view}"


def committed_offsets(bootstrap: str, group: str, topic: str, *, timeout_s: float = 30.0) -> dict[int, int]:
    """``group``'s committed next_offset per partition of ``topic`` (0 where none).

    Retries while the group coordinator is moving or loading (NOT_COORDINATOR,
    COORDINATOR_LOAD_IN_PROGRESS): both are transient, e.g. right after a broker start.
    """
    consumer = _group_consumer(bootstrap, group)
    try:
        return _committed(consumer, topic, timeout_s=timeout_s)
    finally:
        consumer.close()


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Sum over partitions of the offsets ``group`` has committed on ``topic`` (0 where none)."""
    return sum(committed_offsets(bootstrap, group, topic).values())


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` that ``group`` has not committed yet (high watermark - committed, summed)."""
    consumer = _group_consumer(bootstrap, group)
    try:
        committed = _committed(consumer, topic, timeout_s=30.0)
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] - offset for p, offset in committed.items())
    finally:
        consumer.close()


def _group_consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, "log_level": 0})


def _committed(consumer: Consumer, topic: str, *, timeout_s: float) -> dict[int, int]:
    """:func:`committed_offsets` through an open consumer of the group."""
    deadline = time.monotonic() + timeout_s
    partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    while True:
        try:
            committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
            return {tp.partition: max(tp.offset, 0) for tp in committed}
        except KafkaException as exc:
            if not exc.args[0].retriable() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def group_members_with_partitions(bootstrap: str, group: str, *, timeout_s: float = 10.0) -> int:
    """How many members of consumer group ``group`` currently hold at least one partition."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    description = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group].result(timeout=timeout_s)
    return sum(1 for member in description.members if member.assignment and member.assignment.topic_partitions)


def terminate(proc: subprocess.Popen[Any], *, timeout_s: float) -> int:
    """Stop a child: SIGTERM, wait up to ``timeout_s`` (then SIGKILL and wait); its exit code. A child that
    already exited is left as it is."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class PipelineChild:
    """One `rewind run` child process writing its log to a file."""

    view: str
    group: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, settings: RewindSettings, view: str, *, group: str, state_dir: Path, log_path: Path,
              extra_args: Sequence[str] = ()) -> PipelineChild:
        """Start `rewind run view` (plus ``extra_args``) with ``settings``' topics passed through the environment."""
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap(),
            "REWIND_ORDERS_TOPIC": settings.orders_topic,
            "REWIND_DLQ_TOPIC": settings.dlq_topic,
            "REWIND_VIEW_TOPIC_PREFIX": settings.view_topic_prefix,
            "REWIND_GUARANTEE": settings.guarantee,
            "REWIND_ENGINE": settings.engine,
            "REWIND_COMMIT_INTERVAL_S": str(settings.commit_interval_s),
            "REWIND_LIVE_ROW_CACHE_ROWS": str(settings.live_row_cache_rows),
        }
        # The child reads Confluent-framed records through the same registry, or through none.
        if settings.schema_registry_url:
            env["REWIND_SCHEMA_REGISTRY_URL"] = settings.schema_registry_url
        else:
            env.pop("REWIND_SCHEMA_REGISTRY_URL", None)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scripts.cli", "run", view, "--group", group, "--state-dir", str(state_dir), "--progress-interval-s", "5", *extra_args],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        return cls(view, group, proc, log_path)

    def alive(self) -> bool:
        """True while the child runs."""
        return self.proc.poll() is None

    def stop(self, *, timeout_s: float = 60.0) -> dict[str, int] | None:
        """SIGTERM, wait, and return the counters it printed (None if it printed none)."""
        terminate(self.proc, timeout_s=timeout_s)
        for line in reversed(self.log_path.read_text(errors="replace").splitlines()):
            if line.startswith("REWIND_STATS "):
                counters: dict[str, int] = json.loads(line.removeprefix("REWIND_STATS "))
                return counters
        return None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of its log, for error messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
