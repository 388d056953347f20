"""Runs `rewind run NAME` pipelines as child processes and tells when they have caught up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from pipelines.settings import RewindSettings

__all__ = ["PipelineChild", "group_lag", "group_members_with_partitions", "default_group"]


def default_group(view: str) -> str:
    """The consumer group `rewind run NAME` uses unless told otherwise."""
    return f"rewind-{view}"


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` that ``group`` has not committed yet (high watermark - committed, summed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, "log_level": 0})
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        lag = 0
        for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10):
            high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def group_members_with_partitions(bootstrap: str, group: str, *, timeout_s: float = 10.0) -> int:
    """How many members of consumer group ``group`` currently hold at least one partition."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    description = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group].result(timeout=timeout_s)
    return sum(1 for member in description.members if member.assignment and member.assignment.topic_partitions)


@dataclass
class PipelineChild:
    """One `rewind run` child process writing its log to a file."""

    view: str
    group: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, settings: RewindSettings, view: str, *, group: str, state_dir: Path, log_path: Path) -> "PipelineChild":
        """Start `rewind run view` with ``settings``' topics passed through the environment."""
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap(),
            "REWIND_ORDERS_TOPIC": settings.orders_topic,
            "REWIND_DLQ_TOPIC": settings.dlq_topic,
            "REWIND_VIEW_TOPIC_PREFIX": settings.view_topic_prefix,
            "REWIND_GUARANTEE": settings.guarantee,
            "REWIND_COMMIT_INTERVAL_S": str(settings.commit_interval_s),
        }
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scripts.cli", "run", view, "--group", group, "--state-dir", str(state_dir), "--progress-interval-s", "5"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        return cls(view, group, proc, log_path)

    def alive(self) -> bool:
        """True while the child runs."""
        return self.proc.poll() is None

    def stop(self, *, timeout_s: float = 60.0) -> dict[str, int] | None:
        """SIGTERM, wait, and return the counters it printed (None if it printed none)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for line in reversed(self.log_path.read_text(errors="replace").splitlines()):
            if line.startswith("REWIND_STATS "):
                return json.loads(line.removeprefix("REWIND_STATS "))
        return None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of its log, for error messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
