"""Helpers for integration tests: polling with deadlines, reading topics to their end, pipeline processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.dlq import headers_to_dict
from pipelines.live.supervisor import PipelineChild, committed_total, group_lag
from pipelines.readback import latest_by_key as latest_rows
from pipelines.readback import read_to_end as read_topic
from pipelines.settings import RewindSettings
from pipelines.topics import view_topic
from schemas.codec import EventCodec
from scripts.workload import Oracle
from scripts.workload.expected_views import late_revenue

__all__ = [
    "wait_until", "latest_rows", "read_topic", "revenue_with_late", "isolated_settings", "PipelineProcess", "group_caught_up", "committed_total",
]


def wait_until(condition: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Poll ``condition`` until it returns a truthy value (returned); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g}s waiting for {what}"
        time.sleep(interval_s)


def isolated_settings(bootstrap: str, name: str, tmp_path: Path, **overrides: Any) -> RewindSettings:
    """Settings whose every topic is unique to this test."""
    return RewindSettings(
        kafka_bootstrap_servers=bootstrap, orders_topic=f"{name}.orders", dlq_topic=f"{name}.orders.dlq",
        view_topic_prefix=f"{name}.", state_dir=tmp_path / "state", **overrides,
    )


#: The live engines (`rewind run NAME --engine ...`); every live test runs against each (conftest.live_engine).
LIVE_ENGINES = ("quix", "batch")


def for_engine(settings: RewindSettings, engine: str) -> RewindSettings:
    """``settings`` for pipelines of ``engine`` on the same orders topic: their own view topics and DLQ,
    so that both engines can fold one produced workload and each be checked on its own outputs."""
    return settings.model_copy(update={
        "engine": engine, "view_topic_prefix": f"{settings.view_topic_prefix}{engine}.", "dlq_topic": f"{settings.dlq_topic}.{engine}",
    })


class PipelineProcess(PipelineChild):
    """A `rewind run NAME` child with test assertions on how it ends."""

    @classmethod
    def start(cls, settings: RewindSettings, view: str, *, group: str, state_dir: Path, log_dir: Path,  # type: ignore[override]  # a log directory, not a file
              extra_args: tuple[str, ...] = ()) -> PipelineProcess:
        child = PipelineChild.start(settings, view, group=group, state_dir=state_dir,
                                    log_path=log_dir / f"{view}-{time.monotonic_ns()}.log", extra_args=extra_args)
        return cls(child.view, child.group, child.proc, child.log_path)

    def terminate(self) -> dict[str, int]:
        """SIGTERM; assert a clean exit with counters printed; return them."""
        stats = self.stop()
        assert self.proc.returncode == 0, f"pipeline exited with {self.proc.returncode}:\n{self.output_tail()}"
        assert stats is not None, f"no stats line in:\n{self.output_tail()}"
        return stats

    def kill9(self) -> None:
        """Crash it: SIGKILL, no chance to commit or clean up."""
        self.proc.kill()
        self.proc.wait(timeout=30)

    def output_tail(self) -> str:
        return self.log_tail(60)


def group_caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """True when ``group`` has committed every record of ``topic``."""
    return group_lag(bootstrap, group, topic) == 0


def revenue_with_late(settings: RewindSettings, oracle_path: Path) -> tuple[dict[str, int], int]:
    """Non-zero window revenue from view.revenue-hourly plus the revenue of the LateEvent dead letters
    (decoded raw events, priced by the oracle), and how many late letters there are."""
    topic = view_topic("revenue-hourly", prefix=settings.view_topic_prefix)
    revenue = {k: v["row"]["revenueMinor"] for k, v in latest_rows(settings.bootstrap(), topic).items()}
    late = [EventCodec().decode(m.value()) for m in read_topic(settings.bootstrap(), settings.dlq_topic)
            if headers_to_dict(m.headers()).get("rewind.reason.class") == "LateEvent"]
    with Oracle.open(oracle_path) as oracle:
        for key, amount in late_revenue(oracle, late).items():
            revenue[key] = revenue.get(key, 0) + amount
    return {k: v for k, v in revenue.items() if v}, len(late)
