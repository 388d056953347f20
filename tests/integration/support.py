"""Helpers for integration tests: polling with deadlines, reading topics to their end, pipeline processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from pipelines.settings import RewindSettings

ROOT = Path(__file__).resolve().parents[2]


def wait_until(condition: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Poll ``condition`` until it returns a truthy value (returned); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g}s waiting for {what}"
        time.sleep(interval_s)


def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 60.0) -> list[Message]:
    """Every committed record of ``topic`` up to the high watermarks seen at call time (read_committed)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"test-reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "isolation.level": "read_committed", "auto.offset.reset": "earliest",
    })
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            return []
        partitions = list(metadata.topics[topic].partitions)
        # The last stable offset bounds what read_committed can see; high watermark would include open transactions.
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        todo = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while todo:
            assert time.monotonic() < deadline, f"timed out reading {topic}; partitions left: {sorted(todo)}"
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(msg.error())
                out.append(msg)
            for p in list(todo):
                position = consumer.position([TopicPartition(topic, p)])[0].offset
                if position >= ends[p]:
                    todo.discard(p)
        return out
    finally:
        consumer.close()


def latest_rows(bootstrap: str, topic: str) -> dict[str, dict[str, Any]]:
    """The latest view record per key of a view topic (what compaction would keep)."""
    rows: dict[str, dict[str, Any]] = {}
    for msg in read_topic(bootstrap, topic):
        rows[msg.key().decode()] = json.loads(msg.value())
    return rows


def isolated_settings(bootstrap: str, name: str, tmp_path: Path) -> RewindSettings:
    """Settings whose every topic is unique to this test."""
    return RewindSettings(
        kafka_bootstrap_servers=bootstrap, orders_topic=f"{name}.orders", dlq_topic=f"{name}.orders.dlq",
        view_topic_prefix=f"{name}.", state_dir=tmp_path / "state",
    )


@dataclass
class PipelineProcess:
    """A `rewind run NAME` subprocess with the test's topics."""

    proc: subprocess.Popen[str]
    log_path: Path

    @classmethod
    def start(cls, settings: RewindSettings, view: str, *, group: str, state_dir: Path, log_dir: Path,
              guarantee: str = "exactly-once", extra: list[str] | None = None) -> "PipelineProcess":
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap(),
            "REWIND_ORDERS_TOPIC": settings.orders_topic,
            "REWIND_DLQ_TOPIC": settings.dlq_topic,
            "REWIND_VIEW_TOPIC_PREFIX": settings.view_topic_prefix,
            "REWIND_GUARANTEE": guarantee,
        }
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{view}-{uuid.uuid4().hex[:6]}.log"
        log = log_path.open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.cli", "run", view, "--group", group, "--state-dir", str(state_dir),
             "--progress-interval-s", "2", *(extra or [])],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )
        log.close()
        return cls(proc, log_path)

    def terminate(self, *, timeout_s: float = 60.0) -> dict[str, int]:
        """SIGTERM, wait for a clean exit, and return the REWIND_STATS counters it printed."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout_s)
        output = self.log_path.read_text()
        assert code == 0, f"pipeline exited with {code}:\n{output[-3000:]}"
        lines = [line for line in output.splitlines() if line.startswith("REWIND_STATS ")]
        assert lines, f"no stats line in:\n{output[-3000:]}"
        return json.loads(lines[-1].removeprefix("REWIND_STATS "))

    def kill9(self) -> None:
        """Crash it: SIGKILL, no chance to commit or clean up."""
        self.proc.kill()
        self.proc.wait(timeout=30)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output_tail(self) -> str:
        return self.log_path.read_text()[-3000:]


def group_caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """True when consumer group ``group`` has committed offsets at the high watermark of every partition of ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        for tp in committed:
            high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
            if high > 0 and tp.offset < high:
                return False
        return True
    finally:
        consumer.close()


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Sum over partitions of the offsets ``group`` has committed on ``topic`` (0 where none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        return sum(max(tp.offset, 0) for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10))
    finally:
        consumer.close()
